"""Keeping a file at or below a bits-per-pixel cap: `--bpp`, or the source stream's bpp for the default size.

The plan counts the stored bits per weight and per embedding value (`--weight-bits`,
`--embed-bits`); the file adds what that leaves out: per-channel quantization parameters,
float16 tensors, tensor headers and alignment, the container's index, and the video, provenance and
segment sections. `capped_config` plans a segment, measures the bytes its model sections take in a
real container (a randomly initialised model quantized and entropy-coded the same way), adds the
segment's share of SIDE_BYTES (video metadata, provenance, segment table) and SEGMENT_BYTES (its
provenance report), and searches the plan's target for the largest model under MARGIN x the cap; plans
come in size steps, so a file lands up to a step below the cap.

The random model's `hinerv` local grids, zeros at initialisation, are filled with Laplace values: a
trained model's grids are not zeros. With zeros, trained `hinerv` models (kernels 1, 3, 3, 25 epochs,
0.03-0.2 bpp, the shared clips) coded up to 13% above the prediction; with Laplace grids, most code
below it (RD benchmark files 2-18% under their cap) and a few still above (6 of 40, at most 0.03 bpp
or on car). What a trained model codes to is only known after the fit, so the cap is also kept there
by rate control: `model_byte_limit` is handed to `fit`, which widens the quantization step of a model
that codes above it (`quant.widen_to_fit`) and reports the quality of the widened model.
"""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
from collections.abc import Callable

import torch

from ..container import write_nvp
from ..inr.model import INRDecoder
from ..inr.plan import INRConfig
from ..inr.quant import QuantizedINR, quantize_inr
from .serialize import inr_sections

# Measured with plain zstd (entropy "none"): 859 bytes beside the model sections for one segment (a
# 92-character source name), 1,091 for two; with the built-in dictionary (entropy "rans"): 335 for one
# segment (a 26-character name). A little more here, so a cap is kept, not much more, since at 0.03 bpp a
# 160x120 clip's file is 7 KB.
SIDE_BYTES = {"rans": 320, "none": 768}
SEGMENT_BYTES = {"rans": 160, "none": 256}
ROUNDS = 10
MARGIN = 0.975


def model_bytes(config: INRConfig, weight_bits: int, embed_bits: int, entropy: str = "rans") -> int:
    """Bytes that `config`'s model sections take in an .nvp file (header and index included)."""
    return _model_bytes(json.dumps(config.to_dict(), sort_keys=True), weight_bits, embed_bits, entropy)


@functools.lru_cache(maxsize=64)
def _model_bytes(key: str, weight_bits: int, embed_bits: int, entropy: str) -> int:
    config = INRConfig.from_dict(json.loads(key))
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        decoder = INRDecoder(config)
        for name, p in decoder.named_parameters():
            if name.endswith("grid"):  # grids are zeros at init, not once trained: Laplace-like values
                p.copy_(torch.distributions.Laplace(0.0, 1.0).sample(p.shape))
        shape = config.embedding_shape()
        emb = torch.randn(*shape) if shape is not None else None
    q = quantize_inr(decoder, emb, weight_bits=weight_bits, embed_bits=embed_bits)
    return coded_bytes(config, q, entropy)


def coded_bytes(config: INRConfig, q: QuantizedINR, entropy: str = "rans") -> int:
    """Bytes that the quantized model `q` of `config` takes as model sections of an .nvp file."""
    with tempfile.TemporaryDirectory(prefix="nvcodec-size-") as d:
        path = os.path.join(d, "m.nvp")
        write_nvp(path, inr_sections(config, q, entropy=entropy))
        return os.path.getsize(path)


def side_bytes(config: INRConfig, frames_total: int, entropy: str = "rans") -> float:
    """The segment's share of the file's bytes outside its model sections (SIDE_BYTES, SEGMENT_BYTES)."""
    n = config.num_frames
    return SIDE_BYTES[entropy] * n / max(frames_total, n) + SEGMENT_BYTES[entropy]


def model_byte_limit(config: INRConfig, cap_bpp: float, frames_total: int, entropy: str = "rans") -> int:
    """The most bytes the segment's model sections may take for its file share to stay at `cap_bpp`
    (rate control's limit after the fit; at least 1)."""
    n = config.num_frames
    return max(1, int(cap_bpp * config.width * config.height * n / 8.0 - side_bytes(config, frames_total, entropy)))


def file_bpp(config: INRConfig, weight_bits: int, embed_bits: int, frames_total: int,
             entropy: str = "rans") -> float:
    """Predicted bits per pixel of the segment `config` plans, with its share of the metadata."""
    n = config.num_frames
    side = side_bytes(config, frames_total, entropy)
    return 8.0 * (model_bytes(config, weight_bits, embed_bits, entropy) + side) / (config.width * config.height * n)


def capped_config(plan: Callable[[float], INRConfig], cap_bpp: float, weight_bits: int, embed_bits: int,
                  frames_total: int, entropy: str = "rans") -> INRConfig:
    """The largest plan `plan(target)` whose predicted file stays at or below MARGIN x `cap_bpp`: `plan(cap)`
    when it fits, else a bisection of the target (in log scale, ROUNDS rounds, down to cap / 64); the
    smallest plan when none fits."""
    limit = MARGIN * cap_bpp

    def fits(c: INRConfig) -> bool:
        return file_bpp(c, weight_bits, embed_bits, frames_total, entropy) <= limit

    config = plan(cap_bpp)
    if fits(config):
        return config
    lo, hi = cap_bpp / 64.0, cap_bpp
    best = plan(lo)
    if not fits(best):
        return best
    for _ in range(ROUNDS):
        mid = math.sqrt(lo * hi)
        c = plan(mid)
        if fits(c):
            lo, best = mid, c
        else:
            hi = mid
    return best

"""Keeping a file at or below a bits-per-pixel cap: `--bpp`, or the source stream's bpp for the default size.

The plan counts the stored bits per weight and per embedding value (`--weight-bits`,
`--embed-bits`); the file adds what that leaves out: per-channel quantization parameters,
float16 tensors, tensor headers and alignment, the container's index, and the video, provenance and
segment sections. `capped_config` plans a segment, measures the bytes its model sections take in a
real container (a randomly initialised model quantized and entropy-coded the same way), adds the
segment's share of SIDE_BYTES (video metadata, provenance, segment table) and SEGMENT_BYTES (its
provenance report), and searches the plan's target for the largest model under MARGIN x the cap. A
trained model codes to within a few percent of the random one (dog 160x90, 96 frames, 6/5-bit `hinerv`
at 0.1 bpp: 17,667 bytes written for 17,390 predicted, +1.6%), hence the margin; plans come in
channel-width steps, so a file lands up to a step below the cap.
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
from ..inr.quant import quantize_inr
from .serialize import inr_sections

SIDE_BYTES = 1536
SEGMENT_BYTES = 320
ROUNDS = 10
MARGIN = 0.975


def model_bytes(config: INRConfig, weight_bits: int, embed_bits: int, entropy: str = "rans") -> int:
    """Bytes that `config`'s model sections take in an .nvp file (header and index included)."""
    return _model_bytes(json.dumps(config.to_dict(), sort_keys=True), weight_bits, embed_bits, entropy)


@functools.lru_cache(maxsize=64)
def _model_bytes(key: str, weight_bits: int, embed_bits: int, entropy: str) -> int:
    config = INRConfig.from_dict(json.loads(key))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        decoder = INRDecoder(config)
        shape = config.embedding_shape()
        emb = torch.randn(*shape) if shape is not None else None
    q = quantize_inr(decoder, emb, weight_bits=weight_bits, embed_bits=embed_bits)
    with tempfile.TemporaryDirectory(prefix="nvcodec-size-") as d:
        path = os.path.join(d, "m.nvp")
        write_nvp(path, inr_sections(config, q, entropy=entropy))
        return os.path.getsize(path)


def file_bpp(config: INRConfig, weight_bits: int, embed_bits: int, frames_total: int,
             entropy: str = "rans") -> float:
    """Predicted bits per pixel of the segment `config` plans, with its share of the metadata."""
    n = config.num_frames
    side = SIDE_BYTES * n / max(frames_total, n) + SEGMENT_BYTES
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

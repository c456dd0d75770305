"""Keeping a file at or below a bits-per-pixel cap: `--bpp`, or the source stream's bpp for the default size.

The plan counts the stored bits per weight and per embedding value (`--weight-bits`,
`--embed-bits`); the file adds what that leaves out: per-channel quantization parameters,
float16 tensors, tensor headers and alignment, the container's index, and the video, provenance and
segment sections. `capped_config` plans a segment, measures the bytes its model sections take in a
real container (a randomly initialised model quantized and entropy-coded the same way; its uniformly
spread weights compress worse than trained ones, so the measure errs high), adds the segment's share of
SIDE_BYTES (video metadata, provenance, segment table) and SEGMENT_BYTES (its provenance report), and
re-plans with a proportionally lower target until the file fits under the cap (at most ROUNDS rounds).
"""

from __future__ import annotations

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
ROUNDS = 5
SLACK = 0.99


def model_bytes(config: INRConfig, weight_bits: int, embed_bits: int, entropy: str = "rans") -> int:
    """Bytes that `config`'s model sections take in an .nvp file (header and index included)."""
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
    """The plan `plan(target_bpp)` whose file stays at or below `cap_bpp`: re-planned with a lower
    target while the measured size is above it; the last plan (the smallest `plan` gives, when the cap
    is below it) when ROUNDS do not get there."""
    target = cap_bpp
    config = plan(target)
    for _ in range(ROUNDS):
        bpp = file_bpp(config, weight_bits, embed_bits, frames_total, entropy)
        if bpp <= cap_bpp:
            break
        target *= SLACK * cap_bpp / bpp
        config = plan(target)
    return config

"""A capped encode (`--bpp`, or the source stream's bpp at the default size) keeps its file at or below
the cap: the plan's size measure, its search, and rate control after the fit."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import nvcodec
from conftest import ROOT, synthetic_frames, write_clip
from nvcodec.codec import encode as encode_mod
from nvcodec.codec import ratecap
from nvcodec.codec.encode import EncodeOptions, encode, source_bpp
from nvcodec.inr import INRDecoder, quant
from nvcodec.inr.plan import plan_config
from nvcodec.video import probe_video, read_frames

DOG = os.path.join(ROOT, "fixtures", "dog_320x180.mp4")


@pytest.mark.parametrize("kind, cap", [("hnerv", 0.1), ("nerv", 0.09)])
def test_capped_config_fits_under_the_cap(kind: str, cap: float) -> None:
    n = 32
    plain = plan_config(320, 180, n, kind=kind, source_bpp=cap)
    assert ratecap.file_bpp(plain, 8, 6, n) > cap  # what the plan alone gives: above the cap (issue 19)
    c = ratecap.capped_config(lambda s: plan_config(320, 180, n, kind=kind, source_bpp=s), cap, 8, 6, n)
    assert ratecap.file_bpp(c, 8, 6, n) <= cap
    assert c.num_params() < plain.num_params()


def test_default_size_encode_stays_at_or_below_the_source_bpp(tmp_path) -> None:
    info = probe_video(DOG)
    out = str(tmp_path / "dog.nvp")
    s = encode(DOG, out, EncodeOptions(psnr=None, epochs=1, device="cpu", frames=(0, 32)))
    assert s["bytes"] == os.path.getsize(out)
    assert s["bpp"] <= source_bpp(info), (s["bpp"], source_bpp(info))
    assert s["kbps"] <= s["source_kbps"]


def test_bpp_is_a_cap_on_the_file(tmp_path) -> None:
    """--bpp counts the file's bytes (quantization parameters, headers, metadata), not only the model's bits."""
    n, cap = 32, 0.12
    plain = plan_config(320, 180, n, kind="hinerv", bpp=cap)
    assert ratecap.file_bpp(plain, 8, 6, n) > cap  # the model's bits alone put the file above the target
    out = str(tmp_path / "dog.nvp")
    s = encode(DOG, out, EncodeOptions(bpp=cap, psnr=None, epochs=1, device="cpu", frames=(0, n)))
    assert s["bpp"] <= cap and s["target_bpp"] == cap and s["warnings"] == []
    assert s["bpp"] > 0.6 * cap  # at, or a little below, the cap: not a much smaller model


def test_bpp_below_the_smallest_model_warns(tmp_path) -> None:
    clip = write_clip(str(tmp_path / "c.mp4"), synthetic_frames(8, 40, 64))
    s = encode(clip, str(tmp_path / "c.nvp"), EncodeOptions(bpp=0.001, psnr=None, epochs=15, device="cpu"))
    assert s["bpp"] > 0.001
    assert len(s["warnings"]) == 1 and "above --bpp 0.001" in s["warnings"][0]


def test_cap_holds_where_plans_come_in_steps() -> None:
    """Plans grow in steps (for a narrow `hinerv`, one channel in one block): the plan for 0.1 bpp
    predicts a file above the margin, and the search still finds one under it, the largest that is
    (no plan for any target in between fits and is larger), one small step below the next."""
    n = 96

    def plan(b: float):
        return plan_config(160, 90, n, kind="hinerv", bpp=b, weight_bits=6, embed_bits=5)

    def fits(c) -> bool:
        return ratecap.file_bpp(c, 6, 5, n) <= 0.1 * ratecap.MARGIN

    assert not fits(plan(0.1))
    c = ratecap.capped_config(plan, 0.1, 6, 5, n)
    assert fits(c)
    sizes = {plan(t).num_params() for t in np.geomspace(0.05, 0.1, 80)}
    assert max(p for p in sizes if p <= c.num_params()) == c.num_params()
    assert all(not fits(plan(t)) for t in np.geomspace(0.05, 0.1, 80) if plan(t).num_params() > c.num_params())
    larger = min(p for p in sizes if p > c.num_params())
    assert larger < 1.2 * c.num_params()  # steps of a few percent, not a whole width in every block
    tiny = ratecap.capped_config(plan, 1e-4, 6, 5, n)  # nothing fits: the smallest plan
    assert tiny.channels == plan(1e-6).channels


def _random_hinerv():
    c = plan_config(64, 40, 9, kind="hinerv", params=6e3)
    torch.manual_seed(0)
    dec = INRDecoder(c)
    with torch.no_grad():
        for p in dec.parameters():
            p.normal_()
    return c, dec, torch.randn(*c.embedding_shape())


def test_widen_to_fit_finds_a_step_under_the_limit() -> None:
    c, dec, emb = _random_hinerv()

    def quantized(w: float):
        return quant.quantize_inr(dec, emb, weight_bits=6, embed_bits=5, widen=w)

    def size(q) -> int:
        return ratecap.coded_bytes(c, q)

    full = size(quantized(1.0))
    q, w = quant.widen_to_fit(quantized, size, full)
    assert w == 1.0 and size(q) == full  # fits: untouched
    limit = int(0.9 * full)
    q, w = quant.widen_to_fit(quantized, size, limit)
    assert 1.0 < w < quant.MAX_WIDEN and size(q) <= limit
    assert size(quantized(w / 1.1)) > limit  # not much coarser than needed
    q, w = quant.widen_to_fit(quantized, size, 1)  # nothing fits: the planned step, quality kept
    assert w == 1.0 and size(q) == full


def test_rate_control_keeps_the_limit_handed_to_the_fit(tmp_path, monkeypatch) -> None:
    """The model-bytes limit of a capped encode reaches the fit: with the limit cut by 20% (as if the
    trained model coded 20% above the random one the plan measures) the same fit is quantized with a
    wider step into a smaller file, whose decoded PSNR is the one reported; the uncut encode keeps its
    step."""
    n, cap = 32, 0.12
    opts = EncodeOptions(bpp=cap, psnr=None, epochs=1, device="cpu", frames=(0, n))
    free = encode(DOG, str(tmp_path / "a.nvp"), opts)
    real = encode_mod.model_byte_limit
    monkeypatch.setattr(encode_mod, "model_byte_limit", lambda *a: int(0.8 * real(*a)))
    tight = encode(DOG, str(tmp_path / "b.nvp"), opts)
    assert free["widen"] == [1.0] and tight["widen"][0] > 1.0
    assert tight["bytes"] < free["bytes"] and tight["bpp"] <= cap and tight["warnings"] == []
    ref, _ = read_frames(DOG, frames=(0, n))
    with nvcodec.open(str(tmp_path / "b.nvp")) as v:
        dec = np.concatenate([np.asarray(f) for f in v.iter_frames(None, batch_size=8)])
    mse = np.mean((dec.astype(np.float64) - ref.astype(np.float64)) ** 2)
    assert abs(10 * np.log10(255.0 ** 2 / mse) - tight["psnr"]) < 0.02  # the widened model's quality

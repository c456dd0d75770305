"""Fits that must not collapse (dark, bright, flat, low-contrast clips), the degenerate-fit check,
the one PSNR definition, the time budget and reproducible encodes."""

from __future__ import annotations

import importlib
import math
import os
import time

import numpy as np
import pytest
import torch

import nvcodec
import nvcodec.inr.model as model_mod
from conftest import synthetic_frames, write_clip
from nvcodec.codec.encode import EncodeOptions, encode
from nvcodec.codec.export import compare
from nvcodec.codec.info import describe
from nvcodec.container import NvpReader
from nvcodec.errors import EXIT_CODES, DegenerateFitError
from nvcodec.inr.budget import BudgetTooSmallError
from nvcodec.inr.metrics import frame_mse, pool_quality, psnr, quality_from_mse
from nvcodec.inr.plan import plan_config

fit_mod = importlib.import_module("nvcodec.inr.fit")
N, H, W = 6, 32, 48


def _variant(kind: str) -> torch.Tensor:
    base = torch.from_numpy(synthetic_frames(N, H, W)).float()
    if kind == "dark":
        x = 0.1 * base
    elif kind == "bright":
        x = 255 - 0.1 * (255 - base)
    elif kind == "low_contrast":
        x = 128 + 0.1 * (base - 128)
    elif kind == "flat":  # low texture: one smooth, faint ramp, a slow drift over time
        yy, xx = torch.meshgrid(torch.linspace(0, 1, H), torch.linspace(0, 1, W), indexing="ij")
        x = torch.stack([90 + 12 * xx + t for t in range(N)])[..., None].expand(N, H, W, 3) + torch.tensor([0, 5, 10])
        x = x + 6 * yy[None, :, :, None]
    else:
        raise ValueError(kind)
    return x.round().clamp(0, 255).to(torch.uint8).contiguous()


def _constant_psnr(frames: torch.Tensor) -> float:
    t = frames.float() / 255
    return quality_from_mse(frame_mse(t.mean((0, 1, 2), keepdim=True).expand_as(t), t))["psnr"]


@pytest.mark.parametrize("kind", ["dark", "bright", "low_contrast", "flat"])
def test_hard_content_does_not_decode_to_a_constant(kind: str) -> None:
    frames = _variant(kind)
    src_std = fit_mod.channel_std(frames)
    r = fit_mod.fit(frames, plan_config(W, H, N, params=8000), epochs=40, psnr_target=None, eval_every=None)
    assert max(r.output_std) > 0.3 * float(src_std.max()), (r.output_std, src_std)
    assert r.psnr > _constant_psnr(frames) + 3.0
    assert r.psnr_constant == pytest.approx(_constant_psnr(frames), abs=1e-3)


def _old_training(monkeypatch) -> None:
    """The 0.1.0 fitter: no mean-colour head init, no surrogate gradient at the saturated ends."""
    monkeypatch.setattr(model_mod, "OUT_LEAK", 0.0)
    monkeypatch.setattr(model_mod.INRDecoder, "init_output", lambda self, mean: None)


def test_degenerate_check_fires_on_a_collapsed_fit(monkeypatch) -> None:
    _old_training(monkeypatch)
    with pytest.raises(DegenerateFitError, match="constant frame"):
        fit_mod.fit(_variant("dark"), plan_config(W, H, N, params=8000), epochs=20, psnr_target=None,
                    eval_every=None)


def test_degenerate_encode_writes_nothing_and_exits_7(tmp_path, monkeypatch) -> None:
    _old_training(monkeypatch)
    clip = write_clip(str(tmp_path / "dark.mp4"), _variant("dark").numpy())
    out = tmp_path / "dark.nvp"
    with pytest.raises(DegenerateFitError) as e:
        encode(clip, str(out), EncodeOptions(psnr=None, epochs=20, params=8000, device="cpu"))
    assert e.value.exit_code == 7 and 7 in EXIT_CODES
    assert not out.exists()
    assert not os.path.exists(str(out) + ".ckpt") and "removed the checkpoint folder" in str(e.value)
    assert "give more epochs" not in str(e.value)  # 20 epochs were trained: the advice is seed/lr/size


def test_check_not_degenerate_rules(real_fit_margin) -> None:
    src = torch.tensor([0.1, 0.1, 0.1])
    constant = -10 * math.log10(0.01)  # 20 dB: the mean colour's MSE is the variance
    with pytest.raises(DegenerateFitError, match="collapsed"):
        fit_mod.check_not_degenerate(30.0, torch.zeros(3), src)
    with pytest.raises(DegenerateFitError, match="not clearly better than a constant"):
        fit_mod.check_not_degenerate(constant - 0.01, torch.full((3,), 0.05), src)
    # 0.25 dB above the mean colour (the flat 480x270 encode of issue 19) is not a usable fit
    with pytest.raises(DegenerateFitError, match="at least 3 dB more"):
        fit_mod.check_not_degenerate(constant + 0.25, torch.full((3,), 0.05), src)
    with pytest.raises(DegenerateFitError):
        fit_mod.check_not_degenerate(constant + fit_mod.MIN_GAIN_DB - 0.01, torch.full((3,), 0.05), src)
    fit_mod.check_not_degenerate(constant + fit_mod.MIN_GAIN_DB, torch.full((3,), 0.05), src)
    # a low-contrast clip: 45 dB is usable even when the mean colour alone gives 44
    faint = torch.full((3,), 10 ** (-44 / 20))
    fit_mod.check_not_degenerate(fit_mod.HIGH_PSNR, torch.full((3,), 0.005), faint)
    fit_mod.check_not_degenerate(99.0, torch.zeros(3), torch.zeros(3))  # a flat source may decode flat


def test_constant_video_encodes(tmp_path) -> None:
    frames = np.full((N, H, W, 3), (40, 90, 200), dtype=np.uint8)
    clip = write_clip(str(tmp_path / "flat.mp4"), frames)
    s = encode(clip, str(tmp_path / "flat.nvp"), EncodeOptions(psnr=None, epochs=5, params=6000, device="cpu"))
    assert s["psnr"] > 30.0


def test_psnr_pooled_and_per_frame_on_a_known_example() -> None:
    a = torch.zeros(2, 3, 4, 4)
    b = torch.stack([torch.full((3, 4, 4), 0.1), torch.full((3, 4, 4), 0.01)])  # MSE 1e-2 and 1e-4
    q = quality_from_mse(frame_mse(a, b))
    assert q["psnr"] == pytest.approx(10 * math.log10(1 / 0.00505))  # pooled: 22.97 dB
    assert q["psnr_frame_mean"] == pytest.approx(30.0)  # (20 + 40) / 2
    assert q["psnr_min"] == pytest.approx(20.0) and q["frames"] == 2
    assert float(psnr(a, b)) == pytest.approx(q["psnr"], abs=1e-4)
    assert psnr(a, b, per_frame=True).tolist() == pytest.approx([20.0, 40.0], abs=1e-4)
    # segments pool by MSE weighted by frames, never by averaging their PSNRs
    one = quality_from_mse([1e-2])
    three = quality_from_mse([1e-4] * 3)
    pooled = pool_quality([one, three])
    assert pooled["psnr"] == pytest.approx(10 * math.log10(1 / ((1e-2 + 3e-4) / 4)))
    assert pooled["psnr_frame_mean"] == pytest.approx((20 + 3 * 40) / 4)
    assert pooled == pytest.approx(quality_from_mse([1e-2, 1e-4, 1e-4, 1e-4]))
    assert quality_from_mse([0.0])["psnr"] == 100.0  # identical frames: capped, JSON-safe


def test_segmented_encode_info_and_compare_agree(tmp_path) -> None:
    frames = synthetic_frames(8, H, W)
    clip = write_clip(str(tmp_path / "c.mp4"), frames)
    out = str(tmp_path / "c.nvp")
    s = encode(clip, out, EncodeOptions(psnr=None, epochs=15, params=12000, device="cpu", segment_frames=3))
    assert s["segments"] == 3
    with nvcodec.open(out) as v:
        c = compare(v, clip, device="cpu")
    q = describe(out)["quality"]
    assert c["psnr"] == pytest.approx(s["psnr"], abs=1e-6) == pytest.approx(q["psnr"], abs=1e-6)
    assert c["psnr_frame_mean"] == pytest.approx(s["psnr_frame_mean"], abs=1e-6)
    assert c["psnr_min"] == pytest.approx(s["psnr_min"], abs=1e-6)
    assert c["psnr_frame_mean"] > c["psnr"]  # Jensen: unequal frames pool below their mean PSNR


def test_time_budget_is_kept_within_ten_percent() -> None:
    frames = torch.from_numpy(synthetic_frames(8, 64, 96))
    budget = 3.0
    t = time.monotonic()
    try:
        r = fit_mod.fit(frames, plan_config(96, 64, 8, params=3e4), time_budget=budget, psnr_target=None, eval_every=2)
    except BudgetTooSmallError as e:  # a busy machine: too slow for a usable fit in 3 s, said in time
        assert "raise the time budget to at least" in str(e)
    else:
        assert r.stopped_by == "time"
        assert r.seconds <= 1.1 * budget, r.seconds
    assert time.monotonic() - t <= 1.1 * budget + 0.5


def test_encode_time_budget_covers_the_whole_encode(tmp_path) -> None:
    clip = write_clip(str(tmp_path / "c.mp4"), synthetic_frames(8, 64, 96))
    budget = 4.0
    t = time.monotonic()
    try:
        s = encode(clip, str(tmp_path / "c.nvp"), EncodeOptions(psnr=None, time_budget=budget, params=3e4,
                                                               device="cpu", segment_frames=4))
    except BudgetTooSmallError as e:  # a busy machine: said within the budget, nothing left behind
        assert "raise --time-budget to at least" in str(e) and "removed the checkpoint folder" in str(e)
        assert not os.path.exists(str(tmp_path / "c.nvp.ckpt"))
    else:
        assert set(s["stopped_by"]) == {"time"}
        assert s["encode_seconds"] <= 1.1 * budget, s["encode_seconds"]
    assert time.monotonic() - t <= 1.1 * budget + 1.0


def test_epoch_plan_encodes_are_reproducible(tmp_path) -> None:
    clip = write_clip(str(tmp_path / "c.mp4"), synthetic_frames(6, H, W))
    opts = dict(psnr=None, epochs=6, params=6000, device="cpu", seed=3, time_budget=600.0)
    paths = [str(tmp_path / f"{i}.nvp") for i in range(2)]
    for p in paths:
        encode(clip, p, EncodeOptions(**opts))

    def model_bytes(path: str) -> dict[str, bytes]:
        with NvpReader(path) as r:
            return {s.name: r.read(s.name) for s in r.sections if s.name != "provenance"}

    a, b = (model_bytes(p) for p in paths)
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)


def test_info_shows_the_source_bit_rate(tmp_path) -> None:
    clip = write_clip(str(tmp_path / "c.mp4"), synthetic_frames(6, H, W))
    out = str(tmp_path / "c.nvp")
    s = encode(clip, out, EncodeOptions(psnr=None, epochs=2, params=6000, device="cpu"))
    v = describe(out)["video"]
    size = os.path.getsize(clip)
    assert v["source_kbps"] == pytest.approx(s["source_kbps"]) and v["source_kbps"] > 0
    # the stream's bit rate is close to the file's (a tiny mp4: headers weigh a little)
    assert v["source_kbps"] * 1000 * (6 / 25) / 8 <= size
    assert v["source_bpp"] == pytest.approx(v["source_kbps"] * 1000 / 25 / (W * H))

"""INR planning, models, fitting (incl. checkpoint/resume) and metrics."""

from __future__ import annotations

import importlib
import math
import os
import time

import pytest
import torch

from nvcodec.errors import FormatError, Interrupted, UsageError
from nvcodec.inr import INRConfig, INRDecoder, crop, fit, ms_ssim, plan_config, psnr, ssim
from nvcodec.inr.budget import BudgetTooSmallError
from nvcodec.inr.fit import lr_factor
from nvcodec.inr.plan import default_bpp
from nvcodec.inr.model import HNeRVEncoder, pad_frames



def synth_clip(n: int = 4, h: int = 32, w: int = 48) -> torch.Tensor:
    """Smooth gradients plus a moving square: uint8 (n, h, w, 3)."""
    ys = torch.linspace(0, 1, h)[:, None].expand(h, w)
    xs = torch.linspace(0, 1, w)[None, :].expand(h, w)
    out = []
    for t in range(n):
        img = torch.stack([0.5 + 0.4 * torch.sin(2 * math.pi * (xs + 0.1 * t)),
                           0.5 + 0.4 * torch.cos(2 * math.pi * (0.7 * ys + 0.05 * t)),
                           0.3 + 0.5 * xs * ys], -1)
        y0, x0 = 4 + 2 * t, 6 + 3 * t
        img[y0:y0 + 8, x0:x0 + 8] = torch.tensor([0.9, 0.1, 0.2])
        out.append(img)
    return (torch.stack(out) * 255).round().clamp(0, 255).to(torch.uint8)


# --- planning -------------------------------------------------------------------------------------

@pytest.mark.parametrize("w,h", [(640, 360), (1280, 720), (768, 432), (640, 272), (24, 40), (45, 27), (1, 1),
                                 (1920, 1080), (853, 479)])
def test_plan_padding(w: int, h: int) -> None:
    c = plan_config(w, h, 10)
    s = c.total_stride
    assert c.pad_width % s == 0 and c.pad_height % s == 0
    assert 0 <= c.pad_width - w < s and 0 <= c.pad_height - h < s
    assert (c.embed_height * s, c.embed_width * s) == (c.pad_height, c.pad_width)
    assert list(c.strides) == sorted(c.strides, reverse=True)
    assert INRConfig.from_dict(c.to_dict()) == c
    if min(w, h) >= 240:
        assert 5 <= c.num_blocks <= 6
        assert c.embed_height * c.embed_width <= 48
        assert c.pad_width * c.pad_height <= 1.15 * w * h


@pytest.mark.parametrize("kind", ["hnerv", "nerv"])
@pytest.mark.parametrize("w,h,n,target", [(640, 360, 16, 3e5), (1280, 720, 100, 1.5e6), (48, 32, 4, 2e4),
                                          (640, 272, 50, 8e5)])
def test_plan_params_target(kind: str, w: int, h: int, n: int, target: float) -> None:
    c = plan_config(w, h, n, kind=kind, params=target)
    assert abs(c.num_params() - target) <= 0.1 * target
    dec = INRDecoder(c)
    emb = c.embedding_values()
    assert sum(p.numel() for p in dec.parameters()) + emb == c.num_params()


def test_plan_bpp_and_defaults() -> None:
    c = plan_config(640, 360, 16, bpp=0.3)
    bits = c.decoder_params() * 8 + c.embedding_values() * 6
    assert abs(bits - 0.3 * 640 * 360 * 16) <= 0.1 * 0.3 * 640 * 360 * 16
    with pytest.raises(UsageError):
        plan_config(640, 360, 16, params=1e5, bpp=0.1)


def _bits(c: INRConfig) -> float:
    return c.decoder_params() * 8 + c.embedding_values() * 6


def test_default_size_follows_a_bpp_target_for_the_clip_length() -> None:
    px16 = 640 * 360 * 16
    # 16 frames: sqrt(128 / 16) x 0.1 bpp, not the old 300k-parameter floor.
    assert default_bpp(16) == pytest.approx(0.1 * math.sqrt(8))
    assert _bits(plan_config(640, 360, 16)) == pytest.approx(0.1 * math.sqrt(8) * px16, rel=0.15)
    assert plan_config(640, 360, 16).num_params() < 2e5
    # long clips: 0.1 bpp; very short ones at most MAX_DEFAULT_BPP
    assert default_bpp(128) == default_bpp(1000) == pytest.approx(0.1)
    assert default_bpp(1) == pytest.approx(0.4)
    # never above the source's own rate
    assert default_bpp(16, source_bpp=0.05) == pytest.approx(0.05)
    assert _bits(plan_config(640, 360, 16, source_bpp=0.05)) == pytest.approx(0.05 * px16, rel=0.15)
    assert default_bpp(16, source_bpp=5.0) == default_bpp(16)
    # but an explicit size is taken as asked
    assert plan_config(640, 360, 16, params=3e5, source_bpp=0.05).num_params() == pytest.approx(3e5, rel=0.1)
    # the floor keeps tiny clips workable without exceeding their raw size
    assert plan_config(48, 32, 6).num_params() == pytest.approx(1e4, rel=0.3)
    with pytest.raises(UsageError):
        plan_config(0, 360, 16)
    with pytest.raises(UsageError):
        plan_config(640, 360, 16, kind="siren")


@pytest.mark.parametrize("key,value", [("kind", "siren"), ("width", 0), ("width", 20000), ("strides", [2] * 20),
                                       ("channels", "abc"), ("pad_width", 41), ("embed_channels", -1),
                                       ("kernel_sizes", [2, 3, 3]), ("width", 1.5), ("num_frames", True),
                                       ("activation", 3), ("channels", [8, 8])])
def test_config_from_dict_rejects(key: str, value: object) -> None:
    d = plan_config(40, 24, 4).to_dict()
    d[key] = value
    with pytest.raises(FormatError):
        INRConfig.from_dict(d)


def test_config_from_dict_rejects_missing_and_non_map() -> None:
    d = plan_config(40, 24, 4).to_dict()
    del d["strides"]
    with pytest.raises(FormatError):
        INRConfig.from_dict(d)
    with pytest.raises(FormatError):
        INRConfig.from_dict([1, 2])


# --- models ---------------------------------------------------------------------------------------

def _decoder_and_input(kind: str, w: int = 48, h: int = 32, n: int = 3) -> tuple[INRDecoder, torch.Tensor]:
    torch.manual_seed(0)
    c = plan_config(w, h, n, kind=kind, params=2e4)
    dec = INRDecoder(c).eval()
    shape = c.embedding_shape()
    emb = torch.randn(*shape) if shape is not None else None
    return dec, dec.input_for(torch.arange(n), emb)


@pytest.mark.parametrize("kind", ["hnerv", "nerv", "hinerv"])
def test_features_match_forward_intermediates(kind: str) -> None:
    dec, x = _decoder_and_input(kind)
    captured: dict[int, torch.Tensor] = {}
    hooks = [b.register_forward_hook(lambda m, i, o, k=k: captured.__setitem__(k, o))
             for k, b in enumerate(dec.blocks)]
    with torch.no_grad():
        out = dec(x)
    for hk in hooks:
        hk.remove()
    c = dec.config
    assert out.shape == (x.shape[0], 3, c.pad_height, c.pad_width)
    assert 0 <= out.min() and out.max() <= 1
    with torch.no_grad():
        for k in range(dec.num_blocks):
            f = dec.features(x, k)
            assert torch.equal(f, captured[k])
            assert f.shape[1] == dec.block_channels(k)
            assert f.shape[-2:] == (c.pad_height // dec.block_stride(k), c.pad_width // dec.block_stride(k))
            for j in range(k, dec.num_blocks):
                assert torch.equal(dec.continue_features(f, k, j), captured[j])
        assert torch.equal(dec.continue_features(x, -1, 1), captured[1])
        assert torch.equal(dec.head_forward(captured[dec.num_blocks - 1]), out)
    with pytest.raises(UsageError):
        dec.features(x, dec.num_blocks)


def test_block_state_dict_roundtrip() -> None:
    dec, x = _decoder_and_input("nerv")
    other = INRDecoder(dec.config).eval()
    for k in range(dec.num_blocks):
        other.load_block_state_dict(k, dec.block_state_dict(k))
    other.load_head_state_dict(dec.head_state_dict())
    with torch.no_grad():
        assert torch.equal(other(x), dec(x))
    assert any(n.startswith("stem.") for n in dec.block_state_dict(0))
    assert not any(n.startswith("stem.") for n in dec.block_state_dict(1))


def test_odd_resolution_pads_and_crops_exactly() -> None:
    c = plan_config(45, 27, 2, params=2e4)
    assert (c.pad_width % c.total_stride, c.pad_height % c.total_stride) == (0, 0)
    frames = torch.rand(2, 3, 27, 45)
    padded = pad_frames(frames, c.pad_width, c.pad_height)
    assert padded.shape[-2:] == (c.pad_height, c.pad_width)
    assert torch.equal(crop(padded, 45, 27), frames)
    enc = HNeRVEncoder(c)
    emb = enc(padded)
    assert emb.shape == (2, c.embed_channels, c.embed_height, c.embed_width)
    out = INRDecoder(c)(emb)
    assert crop(out, 45, 27).shape == (2, 3, 27, 45)


def test_input_for_nerv_encoding() -> None:
    dec, x = _decoder_and_input("nerv", n=5)
    assert x.shape == (5, 2 * dec.config.pe_levels)
    assert torch.allclose(x[0, : dec.config.pe_levels], torch.zeros(dec.config.pe_levels))
    with pytest.raises(UsageError):
        _decoder_and_input("hnerv")[0].input_for(torch.arange(2), None)


# --- fitting --------------------------------------------------------------------------------------

def test_lr_schedule_shape() -> None:
    assert lr_factor(0.0) < lr_factor(0.05) < lr_factor(0.1) == pytest.approx(1.0)
    assert lr_factor(0.55) == pytest.approx(0.5)
    assert lr_factor(1.0) == pytest.approx(0.0)


@pytest.mark.parametrize("kind,floor", [("hnerv", 28.0), ("nerv", 26.0), ("hinerv", 28.0)])
def test_fit_beats_psnr_floor(kind: str, floor: float) -> None:
    frames = synth_clip()
    c = plan_config(48, 32, 4, kind=kind, params=2e4)
    events = []
    r = fit(frames, c, epochs=120, psnr_target=None, lr=1e-2, eval_every=40, progress=events.append)
    assert r.psnr > floor and r.psnr_min > floor - 2
    assert r.psnr <= r.psnr_float + 0.5
    assert 0.5 < r.ssim <= 1.0
    assert r.epochs == 120 and r.stopped_by == "epochs"
    assert [e.step for e in events] == list(range(1, 121)) and events[0].total == 120
    assert {"psnr", "loss", "eta"} <= set(events[-1].info)
    assert r.params == c.num_params()
    assert (r.embeddings is None) == (kind == "nerv")
    if r.embeddings is not None:
        assert tuple(r.embeddings.shape) == c.embedding_shape()
    assert r.dtype in ("bf16", "fp32") and r.device == "cpu"


def test_fit_stops_at_psnr_target_and_l1_ssim_loss() -> None:
    frames = synth_clip()
    c = plan_config(48, 32, 4, params=2e4)
    r = fit(frames, c, epochs=200, psnr_target=20.0, loss="l1+ssim", lr=1e-2, eval_every=5, amp=False)
    assert r.stopped_by == "psnr" and r.epochs < 200 and r.psnr >= 20.0
    assert r.dtype == "fp32"


def test_fit_time_budget() -> None:
    frames = synth_clip()
    c = plan_config(48, 32, 4, params=2e4)
    t = time.monotonic()
    try:
        r = fit(frames, c, time_budget=0.5, psnr_target=None)
    except BudgetTooSmallError as e:  # a busy machine: too slow to train in 0.5 s, said early
        assert "raise the time budget to at least" in str(e)
    else:
        assert r.stopped_by == "time" and r.seconds < 3.0
    assert time.monotonic() - t < 3.0


def _state(r) -> dict[str, torch.Tensor]:
    sd = {f"d.{k}": v for k, v in r.decoder.state_dict().items()}
    if r.encoder is not None:
        sd.update({f"e.{k}": v for k, v in r.encoder.state_dict().items()})
    return sd


def test_fit_seed_reproducible() -> None:
    frames = synth_clip()
    c = plan_config(48, 32, 4, params=2e4)
    a, b, d = (fit(frames, c, epochs=4, psnr_target=None, seed=s, eval_every=None) for s in (3, 3, 4))
    sa, sb, sd = _state(a), _state(b), _state(d)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sd[k]) for k in sa)
    assert a.psnr == b.psnr


def test_checkpoint_interrupt_and_resume(tmp_path) -> None:
    frames = synth_clip()
    c = plan_config(48, 32, 4, params=2e4)
    ckpt = str(tmp_path / "fit.pt")
    straight = fit(frames, c, epochs=8, psnr_target=None, eval_every=None)

    def interrupt(event) -> None:
        if event.step == 3:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        fit(frames, c, epochs=8, psnr_target=None, eval_every=None, checkpoint_path=ckpt, progress=interrupt)
    assert os.path.exists(ckpt)
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == 3
    events = []
    resumed = fit(frames, c, epochs=8, psnr_target=None, eval_every=None, checkpoint_path=ckpt, resume=True,
                  progress=events.append)
    assert [e.step for e in events] == [4, 5, 6, 7, 8]
    assert resumed.epochs == 8 and len(resumed.history) == 8
    ss, sr = _state(straight), _state(resumed)
    assert all(torch.equal(ss[k], sr[k]) for k in ss)

    again = fit(frames, c, epochs=8, psnr_target=None, checkpoint_path=ckpt, resume=True, eval_every=None)
    sa = _state(again)
    assert all(torch.equal(sa[k], sr[k]) for k in sa)
    other = plan_config(48, 32, 4, params=3e4)
    with pytest.raises(UsageError):
        fit(frames, other, epochs=8, checkpoint_path=ckpt, resume=True)


def test_interrupt_mid_epoch_resumes_exactly(tmp_path, monkeypatch) -> None:
    fit_mod = importlib.import_module("nvcodec.inr.fit")

    frames = synth_clip(n=5)
    c = plan_config(48, 32, 5, kind="nerv", params=2e4)
    ckpt = str(tmp_path / "mid.pt")
    straight = fit(frames, c, epochs=3, psnr_target=None, batch_size=2, eval_every=None)
    real_loss, calls = fit_mod._loss, []

    def flaky_loss(*a, **kw):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real_loss(*a, **kw)

    monkeypatch.setattr(fit_mod, "_loss", flaky_loss)
    with pytest.raises(Interrupted):
        fit(frames, c, epochs=3, psnr_target=None, batch_size=2, eval_every=None, checkpoint_path=ckpt)
    monkeypatch.setattr(fit_mod, "_loss", real_loss)
    state = torch.load(ckpt, weights_only=True)
    assert (state["epoch"], state["step"]) == (1, 1)
    resumed = fit(frames, c, epochs=3, psnr_target=None, batch_size=2, eval_every=None, checkpoint_path=ckpt,
                  resume=True)
    ss, sr = _state(straight), _state(resumed)
    assert all(torch.equal(ss[k], sr[k]) for k in ss)
    assert resumed.history[0]["loss"] == pytest.approx(straight.history[0]["loss"])


def test_fit_rejects_bad_input() -> None:
    c = plan_config(48, 32, 4, params=2e4)
    with pytest.raises(UsageError):
        fit(synth_clip().float(), c, epochs=1)
    with pytest.raises(UsageError):
        fit(synth_clip(n=3), c, epochs=1)
    with pytest.raises(UsageError):
        fit(synth_clip(), c, epochs=1, loss="l3")


# --- metrics --------------------------------------------------------------------------------------

def test_psnr_values_and_layouts() -> None:
    a = torch.full((2, 8, 8, 3), 100, dtype=torch.uint8)
    b = a.clone()
    b[1] += 10
    p = psnr(a, b, per_frame=True)
    assert p.shape == (2,) and math.isinf(p[0].item())
    assert p[1].item() == pytest.approx(10 * math.log10(255 ** 2 / 100), abs=1e-3)
    af, bf = a.permute(0, 3, 1, 2).float() / 255, b.permute(0, 3, 1, 2).float() / 255
    assert psnr(af, bf, per_frame=True)[1].item() == pytest.approx(p[1].item(), abs=1e-3)
    with pytest.raises(UsageError):
        psnr(a, b[:1])


def test_ssim_and_ms_ssim() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 96)
    noisy = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-5)
    assert ms_ssim(x, x).item() == pytest.approx(1.0, abs=1e-5)
    s, m = ssim(x, noisy), ms_ssim(x, noisy)
    assert 0 < s < 0.99 and 0 < m < 0.99
    worse = (x + 0.3 * torch.randn_like(x)).clamp(0, 1)
    assert ssim(x, worse) < s and ms_ssim(x, worse) < m
    tiny = torch.rand(1, 3, 8, 10)
    assert ms_ssim(tiny, tiny).item() == pytest.approx(1.0, abs=1e-5)
    assert ssim(tiny, tiny.flip(-1)).item() < 1.0
    assert ssim(x, noisy, per_frame=True).shape == (2,)
    y = x.clone().requires_grad_(True)
    ms_ssim(y, noisy).backward()
    assert torch.isfinite(y.grad).all()

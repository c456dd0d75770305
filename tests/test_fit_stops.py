"""PSNR-stopped fits: a check runs as soon as training says the target may be met, and
quantization-aware training starts before the stop instead of at a fixed share of the epoch plan."""

from __future__ import annotations

import importlib

import torch

from conftest import synthetic_frames
from nvcodec.inr.plan import plan_config

fit_mod = importlib.import_module("nvcodec.inr.fit")
N, H, W = 6, 32, 48
TARGET = 28.0
EPOCHS = 300


def _fit(epochs: int = EPOCHS, **kwargs):
    frames = torch.from_numpy(synthetic_frames(N, H, W))
    config = plan_config(W, H, N, kind="hinerv", params=8000)
    return fit_mod.fit(frames, config, epochs=epochs, seed=0, lr=0.02, weight_bits=6, embed_bits=5, **kwargs)


def test_the_target_is_checked_when_training_reaches_it_not_at_the_next_scheduled_check() -> None:
    r = _fit(psnr_target=TARGET, eval_every=None)
    assert r.stopped_by == "psnr" and r.epochs < EPOCHS
    assert r.psnr >= TARGET
    assert r.history[-1]["epoch"] == r.epochs
    # A check runs exactly after the epochs whose training PSNR, less the last check's gap, clears the target.
    gap = 0.0
    for e in r.history:
        assert ("psnr" in e) == (e["train_psnr"] - gap >= TARGET), e
        if "psnr" in e:
            gap = e["train_psnr"] - e["psnr"]


def test_no_target_no_extra_checks() -> None:
    r = _fit(60, psnr_target=None, eval_every=None, qat=0.3)
    assert r.stopped_by == "epochs" and r.epochs == 60
    assert [e["epoch"] for e in r.history if "psnr" in e] == [60]
    assert not any("qat_start" in e or "train_psnr" in e for e in r.history)


def test_qat_starts_before_a_psnr_stop() -> None:
    r = _fit(psnr_target=TARGET, eval_every=10, qat=0.3)
    assert r.stopped_by == "psnr" and r.epochs < EPOCHS * 0.7
    starts = [i for i, e in enumerate(r.history) if e.get("qat_start")]
    assert len(starts) == 1
    first = starts[0]
    lead = TARGET - fit_mod.QAT_LEAD_DB
    assert r.history[first]["train_psnr"] >= lead
    assert all(e["train_psnr"] < lead for e in r.history[:first])
    assert r.history[first]["epoch"] < r.epochs
    assert r.psnr >= TARGET


def test_a_diverged_loss_gives_no_training_psnr() -> None:
    assert fit_mod._loss_psnr(float("nan")) is None and fit_mod._loss_psnr(float("inf")) is None
    assert fit_mod._loss_psnr(0.0) == 100.0 and abs(fit_mod._loss_psnr(1e-3) - 30.0) < 1e-9

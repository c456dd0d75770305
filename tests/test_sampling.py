"""Frame sampling while fitting (`nvcodec.inr.sampling`): uniform epochs as before, loss-driven draws,
the sampler's checkpoint state, and the `--sampling` encode option."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import torch

from conftest import synthetic_frames, write_clip
from nvcodec.codec.encode import KIND_SAMPLING, EncodeOptions
from nvcodec.errors import Interrupted, UsageError
from nvcodec.inr import fit, plan_config
from nvcodec.inr.sampling import DECIDE_EPOCHS, LOSS_FLOOR, UNEVEN_CV, FrameSampler
from test_cli import assert_clean_error, nv

fit_mod = importlib.import_module("nvcodec.inr.fit")


def _seen_all(sampler: FrameSampler, losses: list[float]) -> None:
    sampler.record(torch.arange(len(losses)), torch.tensor(losses))


def test_uniform_epochs_are_the_permutations_fits_always_used() -> None:
    """`uniform` (every kind's order before sampling existed, and hnerv/nerv's default) keeps the exact
    seeded permutation, so those fits are unchanged; loss mode starts the same way."""
    for mode in ("uniform", "loss"):
        s = FrameSampler(12, mode, torch.device("cpu"))
        for seed, epoch in ((0, 0), (3, 5)):
            want = torch.randperm(12, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
            assert torch.equal(s.epoch_order(seed, epoch), want)
    s = FrameSampler(12, "uniform", torch.device("cpu"))
    _seen_all(s, [1.0] * 11 + [100.0])
    assert not s.tracks_loss and s.probabilities() is None


def test_loss_draws_favour_frames_with_a_high_latest_loss() -> None:
    s = FrameSampler(16, "loss", torch.device("cpu"))
    s.record(torch.tensor([0, 1]), torch.tensor([1.0, 1.0]))
    assert s.probabilities() is None and s.mean_loss() is None  # not every frame has a loss yet
    _seen_all(s, [1.0] * 15 + [100.0])
    p = s.probabilities()
    mean = (15 + 100) / 16
    assert float(p.sum()) == pytest.approx(1.0)
    assert float(p[15]) == pytest.approx((100 + LOSS_FLOOR * mean) / (115 + 16 * LOSS_FLOOR * mean))
    order = s.epoch_order(0, 1)
    assert order.shape == (16,) and order.dtype == torch.long
    assert int((order == 15).sum()) >= 8
    assert s.mean_loss() == pytest.approx(mean)
    s.record(torch.tensor([15]), torch.tensor([1.0]))  # latest visit replaces the loss
    assert torch.allclose(s.probabilities(), torch.full((16,), 1 / 16, dtype=torch.float64))


def test_a_frame_whose_loss_reached_zero_is_still_drawn_sometimes() -> None:
    s = FrameSampler(4, "loss", torch.device("cpu"))
    _seen_all(s, [0.0, 1.0, 1.0, 1.0])
    p = s.probabilities()
    assert float(p[0]) > 0.0 and float(p[0]) == pytest.approx(LOSS_FLOOR * 0.75 / (3 + 4 * LOSS_FLOOR * 0.75))
    zero = FrameSampler(3, "loss", torch.device("cpu"))
    _seen_all(zero, [0.0, 0.0, 0.0])
    assert zero.probabilities() is None  # nothing to go by: uniform


def test_sampler_state_round_trips_and_rejects_other_clips() -> None:
    s = FrameSampler(5, "loss", torch.device("cpu"))
    _seen_all(s, [1.0, 2.0, 3.0, 4.0, 5.0])
    t = FrameSampler(5, "loss", torch.device("cpu"))
    t.load_state_dict(s.state_dict())
    assert torch.equal(t.probabilities(), s.probabilities())
    with pytest.raises(ValueError):
        FrameSampler(6, "loss", torch.device("cpu")).load_state_dict(s.state_dict())
    with pytest.raises(ValueError):
        t.load_state_dict({"losses": "x"})
    with pytest.raises(ValueError):
        FrameSampler(5, "importance", torch.device("cpu"))


@pytest.mark.parametrize("loss", ["l2", "l1+ssim"])
def test_per_frame_losses_average_to_the_batch_loss(loss: str) -> None:
    g = torch.Generator().manual_seed(0)
    out, target = torch.rand(3, 3, 24, 32, generator=g), torch.rand(3, 3, 24, 32, generator=g)
    per_frame = fit_mod._frame_losses(out, target, loss)
    assert per_frame.shape == (3,)
    assert float(per_frame.mean()) == pytest.approx(float(fit_mod._loss(out, target, loss)), rel=1e-5)


def _uneven_clip() -> torch.Tensor:
    """8 flat grey frames, then 8 frames of a textured pattern with a moving square: the textured frames stay
    far harder to fit."""
    frames = np.full((16, 24, 32, 3), 128, dtype=np.uint8)
    frames[8:] = synthetic_frames(8, 24, 32)
    return torch.from_numpy(frames)


def test_a_loss_driven_fit_spends_its_steps_on_the_hard_frames(monkeypatch) -> None:
    orders: list[torch.Tensor] = []
    real = FrameSampler.epoch_order

    def spy(self, seed, epoch):
        orders.append(real(self, seed, epoch))
        return orders[-1]

    latest = torch.zeros(16)
    real_record = FrameSampler.record

    def record(self, idx, losses):
        latest[idx] = losses.detach().float()
        real_record(self, idx, losses)

    monkeypatch.setattr(FrameSampler, "epoch_order", spy)
    monkeypatch.setattr(FrameSampler, "record", record)
    frames = _uneven_clip()
    c = plan_config(32, 24, 16, kind="hinerv", params=5e3)
    r = fit(frames, c, epochs=4, psnr_target=None, eval_every=None, sampling="loss")
    assert len(orders) == 4 and sorted(orders[0].tolist()) == list(range(16))
    later = torch.cat(orders[1:])
    assert int((later >= 8).sum()) > 0.7 * later.numel()  # uniform epochs: half
    # the reported epoch loss is the mean of every frame's latest loss, not the mean of the hard draws
    assert r.history[-1]["loss"] == pytest.approx(float(latest.mean()), rel=1e-5)
    again = fit(frames, c, epochs=4, psnr_target=None, eval_every=None, sampling="loss")
    assert again.psnr == r.psnr
    with pytest.raises(UsageError):
        fit(frames, c, epochs=1, sampling="hard")


def test_a_loss_driven_fit_resumes_mid_epoch_exactly(tmp_path, monkeypatch) -> None:
    """The checkpoint keeps every frame's latest loss and the epoch's drawn order."""
    frames = torch.from_numpy(np.ascontiguousarray(synthetic_frames(6, 24, 32)))
    c = plan_config(32, 24, 6, kind="hinerv", params=5e3)
    ck = str(tmp_path / "fit.ckpt")
    straight = fit(frames, c, epochs=3, psnr_target=None, eval_every=None, sampling="loss")
    real, calls = fit_mod._frame_losses, []

    def flaky(*a, **kw):
        calls.append(1)
        if len(calls) == 10:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(fit_mod, "_frame_losses", flaky)
    with pytest.raises(Interrupted):
        fit(frames, c, epochs=3, psnr_target=None, eval_every=None, sampling="loss", checkpoint_path=ck)
    monkeypatch.setattr(fit_mod, "_frame_losses", real)
    state = torch.load(ck, weights_only=True)
    assert (state["epoch"], state["step"]) == (1, 3)
    assert state["sampler"]["epoch_order"].shape == (6,) and bool(state["sampler"]["seen"].all())
    resumed = fit(frames, c, epochs=3, psnr_target=None, eval_every=None, sampling="loss", checkpoint_path=ck,
                  resume=True)
    assert all(torch.equal(a, b) for a, b in zip(straight.decoder.state_dict().values(),
                                                 resumed.decoder.state_dict().values()))
    assert resumed.psnr == straight.psnr


def test_encode_options_take_the_kind_sampling_unless_given() -> None:
    assert KIND_SAMPLING == {"hnerv": "uniform", "nerv": "uniform", "hinerv": "auto"}
    assert EncodeOptions(kind="hinerv").resolved().sampling == "auto"
    assert EncodeOptions(kind="hnerv").resolved().sampling == "uniform"
    assert EncodeOptions(kind="hinerv", sampling="uniform").resolved().sampling == "uniform"
    with pytest.raises(UsageError, match="--sampling"):
        EncodeOptions(sampling="hard").validate()


def test_encode_records_the_sampling_and_refuses_a_bad_one(tmp_path) -> None:
    clip = write_clip(str(tmp_path / "c.mp4"), synthetic_frames(6, 32, 48))
    out = tmp_path / "o.nvp"
    rc, so, se = nv("encode", clip, str(out), "--kind", "hinerv", "--params", "5k", "--epochs", "2", "--psnr", "99",
                    "--sampling", "uniform", "--json")
    assert rc == 0, se
    rc, so, se = nv("info", str(out), "--json")
    assert rc == 0 and json.loads(so)["encode"]["settings"]["sampling"] == "uniform"
    rc, _, se = nv("encode", clip, str(tmp_path / "bad.nvp"), "--sampling", "hard")
    assert_clean_error(rc, se, 2)
    assert not (tmp_path / "bad.nvp").exists()


def test_auto_switches_to_loss_draws_only_where_frame_losses_vary_widely() -> None:
    uneven = FrameSampler(16, "auto", torch.device("cpu"))
    assert uneven.tracks_loss and not uneven.draws_by_loss
    _seen_all(uneven, [1.0] * 12 + [20.0] * 4)
    for epoch in range(DECIDE_EPOCHS):
        assert torch.equal(uneven.epoch_order(0, epoch),
                           torch.randperm(16, generator=torch.Generator().manual_seed(epoch)))
    assert not uneven.draws_by_loss
    assert uneven.spread() >= UNEVEN_CV
    uneven.epoch_order(0, DECIDE_EPOCHS)
    assert uneven.draws_by_loss and uneven.probabilities() is not None
    even = FrameSampler(16, "auto", torch.device("cpu"))
    _seen_all(even, [1.0 + 0.01 * i for i in range(16)])
    even.epoch_order(0, DECIDE_EPOCHS)
    assert not even.tracks_loss and not even.draws_by_loss
    restored = FrameSampler(16, "auto", torch.device("cpu"))
    restored.load_state_dict(uneven.state_dict())
    assert restored.draws_by_loss


def test_auto_on_an_even_clip_is_the_uniform_fit_exactly() -> None:
    """Measuring the frames' losses changes nothing until the sampler switches: an even clip's fit is
    bit-identical to a uniform one (so `hinerv`'s results on such clips stay what they were)."""
    frames = torch.from_numpy(np.ascontiguousarray(synthetic_frames(8, 24, 32)))
    c = plan_config(32, 24, 8, kind="hinerv", params=5e3)
    a = fit(frames, c, epochs=5, psnr_target=None, eval_every=None, sampling="uniform")
    b = fit(frames, c, epochs=5, psnr_target=None, eval_every=None, sampling="auto")
    assert all(torch.equal(x, y) for x, y in zip(a.decoder.state_dict().values(), b.decoder.state_dict().values()))
    assert a.psnr == b.psnr and [h["loss"] for h in a.history] == [h["loss"] for h in b.history]


def test_auto_switches_on_a_clip_with_uneven_frames(monkeypatch) -> None:
    decisions = []
    real = FrameSampler.epoch_order

    def spy(self, seed, epoch):
        order = real(self, seed, epoch)
        decisions.append(self.draws_by_loss)
        return order

    monkeypatch.setattr(FrameSampler, "epoch_order", spy)
    frames = _uneven_clip()
    c = plan_config(32, 24, 16, kind="hinerv", params=5e3)
    fit(frames, c, epochs=5, psnr_target=None, eval_every=None, sampling="auto")
    assert decisions == [False] * DECIDE_EPOCHS + [True] * (5 - DECIDE_EPOCHS)

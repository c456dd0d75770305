import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nvcodec.errors import FormatError, UsageError
from nvcodec.tasks.adapter import AdapterFit, CompositeLoss, MicroAdapter, fit_adapter, split_frames


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_forward_shapes_and_resize():
    a = MicroAdapter(6, 10, (14, 20))
    x = torch.randn(3, 6, 7, 9)
    y = a(x)
    assert y.shape == (3, 10, 14, 20)
    want = a.conv(F.interpolate(x, size=(14, 20), mode="bilinear", align_corners=False))
    torch.testing.assert_close(y, want)
    assert MicroAdapter(6, 10, None)(x).shape == (3, 10, 7, 9)
    with pytest.raises(UsageError):
        a(torch.randn(3, 5, 7, 9))


def test_resize_skipped_when_size_equal(monkeypatch):
    a = MicroAdapter(4, 5, (8, 8))
    x = torch.randn(2, 4, 8, 8)
    calls = []
    real = F.interpolate

    def spy(*args, **kwargs):
        calls.append(kwargs.get("size"))
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "interpolate", spy)
    torch.testing.assert_close(a(x), a.conv(x))
    assert calls == []
    a(torch.randn(2, 4, 4, 4))
    assert calls == [(8, 8)]


@pytest.mark.parametrize("ci,cj", [(1, 1), (16, 64), (64, 256), (3, 1024)])
def test_parameter_count(ci, cj):
    a = MicroAdapter(ci, cj, (4, 4))
    assert a.num_parameters() == ci * cj + cj
    assert sum(v.numel() for v in a.state_dict().values()) == ci * cj + cj


def test_bad_constructor_args():
    for args in [(0, 3, None), (3, 0, None), (3, 3, (0, 4)), (3, 3, "ab"), (True, 3, None)]:
        with pytest.raises(UsageError):
            MicroAdapter(*args)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_arrays_round_trip(dtype):
    a = MicroAdapter(5, 7, (6, 6))
    arrs = a.to_arrays(dtype)
    assert set(arrs) == {"conv.weight", "conv.bias"}
    assert all(v.dtype == np.dtype(dtype) for v in arrs.values())
    b = MicroAdapter.from_arrays(arrs, (6, 6))
    assert (b.in_channels, b.out_channels, b.out_size) == (5, 7, (6, 6))
    x = torch.randn(2, 5, 3, 3)
    tol = 0 if dtype == "float32" else 2e-3
    torch.testing.assert_close(b(x), a(x), rtol=tol, atol=tol)
    if dtype == "float32":
        for k, v in a.state_dict().items():
            assert torch.equal(b.state_dict()[k], v)
    with pytest.raises(UsageError):
        a.to_arrays("float64")


def test_from_arrays_rejects_bad_arrays():
    good = MicroAdapter(3, 4).to_arrays()
    with pytest.raises(FormatError):
        MicroAdapter.from_arrays({"conv.weight": good["conv.weight"]})
    with pytest.raises(FormatError):
        MicroAdapter.from_arrays({"conv.weight": good["conv.weight"], "conv.bias": np.zeros(5, np.float32)})
    with pytest.raises(FormatError):
        MicroAdapter.from_arrays({"conv.weight": np.zeros((4, 3, 3, 3), np.float32), "conv.bias": good["conv.bias"]})
    nan = good["conv.weight"].copy()
    nan[0, 0] = np.nan
    with pytest.raises(FormatError):
        MicroAdapter.from_arrays({"conv.weight": nan, "conv.bias": good["conv.bias"]})
    b = MicroAdapter.from_arrays({"conv.weight": good["conv.weight"][:, :, 0, 0], "conv.bias": good["conv.bias"]})
    assert b.num_parameters() == 16


def test_composite_loss_hand_computation():
    pred = torch.tensor([[[[1.0, 0.0]], [[2.0, 0.5]]]])  # (1, 2, 1, 2): positions (1,2) and (0,0.5)
    target = torch.tensor([[[[1.0, 3.0]], [[0.0, 0.5]]]])  # positions (1,0) and (3,0.5)
    diffs = np.array([0.0, -3.0, 2.0, 0.0])
    mse = np.mean(diffs**2)
    sl1 = np.mean([0.5 * d * d if abs(d) < 1 else abs(d) - 0.5 for d in diffs])
    cos1 = (1 * 1 + 2 * 0) / (math.hypot(1, 2) * 1.0)
    cos2 = (0 * 3 + 0.5 * 0.5) / (0.5 * math.hypot(3, 0.5))
    cosd = 1 - (cos1 + cos2) / 2
    loss = CompositeLoss()
    terms = loss.terms(pred, target)
    assert float(terms["mse"]) == pytest.approx(mse)
    assert float(terms["smooth_l1"]) == pytest.approx(sl1)
    assert float(terms["cosine"]) == pytest.approx(cosd)
    assert float(loss(pred, target)) == pytest.approx(1.0 * mse + 0.2 * cosd + 0.1 * sl1)
    custom = CompositeLoss(mse=0.5, cosine=0.0, smooth_l1=2.0)
    assert float(custom(pred, target)) == pytest.approx(0.5 * mse + 2.0 * sl1)
    assert float(loss(target, target)) == pytest.approx(0.0, abs=1e-6)


def test_composite_loss_bad_weights():
    for kw in [dict(mse=-1.0), dict(mse=0.0, cosine=0.0, smooth_l1=0.0), dict(cosine=float("nan"))]:
        with pytest.raises(UsageError):
            CompositeLoss(**kw)
    with pytest.raises(UsageError):
        CompositeLoss()(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 4))


def test_split_frames():
    train, val = split_frames(10, 0.2)
    assert val == [2, 7] and len(train) == 8 and not set(train) & set(val)
    assert split_frames(2, 0.2) == ([0], [1])
    assert len(split_frames(5, 0.0)[1]) == 1
    assert len(split_frames(3, 0.9)[1]) == 2
    for n in range(2, 60):
        tr, va = split_frames(n, 0.3)
        assert sorted(tr + va) == list(range(n)) and va
    with pytest.raises(UsageError):
        split_frames(1)
    with pytest.raises(UsageError):
        split_frames(10, 1.0)


def linear_problem(n=12, ci=5, cj=7, in_hw=(6, 8), out_hw=(9, 12), seed=0):
    g = gen(seed)
    x = torch.randn(n, ci, *in_hw, generator=g)
    w = torch.randn(cj, ci, 1, 1, generator=g)
    b = torch.randn(cj, generator=g)
    y = F.conv2d(F.interpolate(x, size=out_hw, mode="bilinear", align_corners=False), w, b)
    return x, y, w, b


def test_lstsq_init_recovers_exact_linear_map():
    x, y, w, b = linear_problem()
    fit = fit_adapter(x, y, out_size=(9, 12), epochs=0)
    assert isinstance(fit, AdapterFit)
    assert fit.epochs_run == 0 and fit.best_epoch == 0
    assert fit.val_metrics["rel_error"] < 1e-4
    assert fit.val_metrics["r2"] > 1 - 1e-8
    torch.testing.assert_close(fit.adapter.conv.weight, w, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fit.adapter.conv.bias, b, rtol=1e-4, atol=1e-4)
    trained = fit_adapter(x, y, out_size=(9, 12), epochs=3)
    assert trained.val_metrics["rel_error"] < 1e-4


def test_lstsq_subsampled_positions_still_recover():
    x, y, w, _ = linear_problem(n=6)
    fit = fit_adapter(x, y, epochs=0, max_positions=300)
    assert fit.val_metrics["rel_error"] < 1e-4
    torch.testing.assert_close(fit.adapter.conv.weight, w, rtol=1e-4, atol=1e-4)


def test_training_reduces_val_loss_from_random_init():
    x, y, _, _ = linear_problem(n=10, ci=4, cj=6, in_hw=(5, 5), out_hw=(5, 5), seed=1)
    events = []
    fit = fit_adapter(x, y, init="random", lr=0.1, epochs=15, patience=None, batch_size=4, progress=events.append)
    assert fit.epochs_run == 15 and len(fit.train_loss) == 15 and len(fit.val_loss) == 15
    assert fit.val_loss[-1] < 0.5 * fit.init_val_loss
    assert min(fit.val_loss) < fit.init_val_loss
    assert fit.train_loss[-1] < fit.train_loss[0]
    assert fit.steps == 15 * 2
    assert [h["loss"] for h in fit.val_history] == fit.val_loss
    assert fit.val_history[-1]["rel_error"] < fit.val_history[0]["rel_error"]
    assert [e.step for e in events] == list(range(1, 16))
    assert all(e.stage == "adapter" and e.total == 15 and "val_loss" in e.info for e in events)
    assert fit.val_metrics["loss"] == pytest.approx(min(fit.val_loss))
    assert fit.seconds > 0


def test_default_lr_is_small_but_lstsq_makes_it_enough():
    g = gen(2)
    x = torch.randn(10, 6, 4, 4, generator=g)
    y = torch.relu(F.conv2d(x, torch.randn(8, 6, 1, 1, generator=g))) + 0.1 * torch.randn(10, 8, 4, 4, generator=g)
    rnd = fit_adapter(x, y, init="random", epochs=5, patience=None)
    ls = fit_adapter(x, y, epochs=5, patience=None)
    assert ls.val_metrics["rel_error"] < rnd.val_metrics["rel_error"]
    assert ls.val_metrics["r2"] > 0.5


def test_early_stopping_triggers():
    g = gen(3)
    x = torch.randn(10, 3, 4, 4, generator=g)
    y = torch.randn(10, 5, 4, 4, generator=g)  # unrelated: nothing to learn beyond the mean
    fit = fit_adapter(x, y, lr=0.05, epochs=50, patience=2)
    assert fit.epochs_run < 50
    assert fit.epochs_run - fit.best_epoch == 2
    best = min([fit.init_val_loss] + fit.val_loss)
    assert fit.val_metrics["loss"] == pytest.approx(best)


def test_best_weights_restored_and_deterministic():
    x, y, _, _ = linear_problem(n=8, ci=3, cj=4, in_hw=(4, 4), out_hw=(4, 4), seed=4)
    y = y + 0.3 * torch.randn(y.shape, generator=gen(9))
    a = fit_adapter(x, y, init="random", lr=1e-2, epochs=6, seed=5)
    b = fit_adapter(x, y, init="random", lr=1e-2, epochs=6, seed=5)
    assert a.val_loss == b.val_loss
    for k, v in a.adapter.state_dict().items():
        assert torch.equal(b.adapter.state_dict()[k], v)
    with torch.no_grad():
        pred = a.adapter(x[a.val_indices])
    assert float(CompositeLoss()(pred, y[a.val_indices])) == pytest.approx(a.val_metrics["loss"], rel=1e-5)


def test_val_metrics_definitions():
    x, y, _, _ = linear_problem(n=10, ci=3, cj=4, in_hw=(4, 4), out_hw=(4, 4), seed=6)
    fit = fit_adapter(x, y + 0.5 * torch.randn(y.shape, generator=gen(1)), init="random", epochs=0)
    yt = (y + 0.5 * torch.randn(y.shape, generator=gen(1)))[fit.val_indices].double()
    with torch.no_grad():
        p = fit.adapter(x[fit.val_indices]).double()
    m = fit.val_metrics
    assert m["mse"] == pytest.approx(float(((p - yt) ** 2).mean()), rel=1e-6)
    assert m["rel_error"] == pytest.approx(float((p - yt).norm() / yt.norm()), rel=1e-6)
    ss_tot = float(((yt - yt.mean(dim=(0, 2, 3), keepdim=True)) ** 2).sum())
    assert m["r2"] == pytest.approx(1 - float(((p - yt) ** 2).sum()) / ss_tot, rel=1e-6)
    assert m["cosine"] == pytest.approx(float(F.cosine_similarity(p, yt, dim=1).mean()), rel=1e-5)


def test_fit_adapter_bad_args():
    x, y, _, _ = linear_problem(n=4)
    with pytest.raises(UsageError):
        fit_adapter(x, y[:3])
    with pytest.raises(UsageError):
        fit_adapter(x, y, out_size=(5, 5))
    with pytest.raises(UsageError):
        fit_adapter(x[:1], y[:1])
    with pytest.raises(UsageError):
        fit_adapter(x, y, init="zeros")
    with pytest.raises(UsageError):
        fit_adapter(x, y, lr=0.0)
    with pytest.raises(UsageError):
        fit_adapter(x, y, epochs=-1)
    with pytest.raises(UsageError):
        fit_adapter(x[0], y)
    with pytest.raises(UsageError):
        fit_adapter(x, y, device="nonsense")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError):
            fit_adapter(x, y, device="cuda")


def test_rejects_foreign_loss():
    x, y, _, _ = linear_problem(n=4)
    with pytest.raises(UsageError):
        fit_adapter(x, y, loss=torch.nn.MSELoss())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fit_adapter_on_cuda():
    x, y, w, b = linear_problem()
    fit = fit_adapter(x, y, epochs=2, device="cuda")
    assert fit.adapter.conv.weight.device.type == "cuda"
    assert fit.val_metrics["rel_error"] < 1e-4
    fit2 = fit_adapter(x.cuda(), y.cuda(), init="random", epochs=2, device="cuda")
    assert fit2.epochs_run == 2
    out = fit.adapter(x[:2].cuda())
    assert out.shape == (2, 7, 9, 12)
    assert MicroAdapter.from_arrays(fit.adapter.to_arrays()).num_parameters() == fit.adapter.num_parameters()

"""Adapter kinds: shapes, storage, closed-form starts, and distillation through a frozen tail."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nvcodec.errors import FormatError, UsageError
from nvcodec.tasks.adapter import (
    ADAPTER_KINDS,
    PATCH,
    MicroAdapter,
    TaskDistill,
    adapter_parameters,
    fit_adapter,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("kind", ADAPTER_KINDS)
def test_every_kind_shapes_counts_and_round_trip(kind):
    a = MicroAdapter(6, 10, (7, 9), kind=kind)
    with torch.no_grad():
        for p in a.parameters():
            p.copy_(torch.randn(p.shape, generator=gen(1)))
    x = torch.randn(2, 6, 20, 30, generator=gen(2))
    y = a(x)
    assert y.shape == (2, 10, 7, 9)
    assert a.num_parameters() == adapter_parameters(kind, 6, 10)
    b = MicroAdapter.from_arrays(a.to_arrays(), (7, 9), kind=kind)
    assert b.kind == kind and b.describe() == a.describe()
    torch.testing.assert_close(b(x), y)
    others = [k for k in ADAPTER_KINDS if adapter_parameters(k, 6, 10) != adapter_parameters(kind, 6, 10)]
    for other in others:
        try:
            wrong = MicroAdapter.from_arrays(a.to_arrays(), (7, 9), kind=other)
        except FormatError:
            continue
        assert wrong.in_channels != 6  # same arrays, other kind: the channel check at load time refuses it


def test_unknown_kind_and_foreign_arrays():
    with pytest.raises(UsageError):
        MicroAdapter(3, 4, kind="transformer")
    with pytest.raises(FormatError):
        MicroAdapter.from_arrays(MicroAdapter(3, 4).to_arrays(), kind="nope")
    arrays = MicroAdapter(3, 4, kind="bottleneck").to_arrays()
    arrays["fc1.weight"] = arrays["fc1.weight"][:, :2]
    with pytest.raises(FormatError):
        MicroAdapter.from_arrays(arrays, kind="bottleneck")
    arrays = MicroAdapter(3, 4, kind="dw3x3").to_arrays()
    arrays["extra"] = np.zeros(3, np.float32)
    with pytest.raises(FormatError):
        MicroAdapter.from_arrays(arrays, kind="dw3x3")


@pytest.mark.parametrize("kind", ["dw3x3", "bottleneck"])
def test_residual_kinds_start_as_the_least_squares_linear_map(kind):
    x = torch.randn(8, 5, 6, 6, generator=gen(3))
    y = F.conv2d(x, torch.randn(7, 5, 1, 1, generator=gen(4)))
    fit = fit_adapter(x, y, kind=kind, epochs=0)
    assert fit.val_metrics["rel_error"] < 1e-4
    lin = fit_adapter(x, y, epochs=0)
    torch.testing.assert_close(fit.adapter.conv.weight, lin.adapter.conv.weight)


def test_conv3x3_least_squares_recovers_a_3x3_map():
    x = torch.randn(10, 3, 8, 8, generator=gen(5))
    w, b = torch.randn(4, 3, 3, 3, generator=gen(6)), torch.randn(4, generator=gen(7))
    y = F.conv2d(x, w, b, padding=1)
    fit = fit_adapter(x, y, kind="conv3x3", epochs=0)
    torch.testing.assert_close(fit.adapter.conv.weight, w, rtol=1e-4, atol=1e-4)
    assert fit.val_metrics["r2"] > 1 - 1e-8
    assert fit_adapter(x, y, epochs=0).val_metrics["r2"] < 0.9


def test_patch_least_squares_recovers_a_patch_embedding():
    x = torch.randn(10, 3, 8 * PATCH, 6 * PATCH, generator=gen(8))
    w = torch.randn(5, 3, PATCH, PATCH, generator=gen(9))
    y = F.conv2d(x, w, stride=PATCH)
    fit = fit_adapter(x, y, kind="patch", epochs=0)
    assert fit.val_metrics["r2"] > 1 - 1e-8
    assert fit_adapter(x, y, epochs=0).val_metrics["r2"] < 0.9


def test_distillation_through_a_frozen_tail_lowers_the_task_loss():
    torch.manual_seed(0)
    x = torch.randn(16, 4, 5, 5, generator=gen(10))
    tail_net = torch.nn.Sequential(torch.nn.Conv2d(6, 8, 1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                   torch.nn.Flatten(), torch.nn.Linear(8, 3)).requires_grad_(False)
    y = torch.tanh(F.conv2d(x, torch.randn(6, 4, 1, 1, generator=gen(11)))) * 3
    teacher = tail_net(y)

    def kl(student, t):
        return F.kl_div(student.log_softmax(-1), t.log_softmax(-1), log_target=True, reduction="batchmean")

    task = TaskDistill(tail=tail_net, teacher=teacher, loss=kl, weight=5.0, score=lambda s, t: -float(kl(s, t)))
    fit = fit_adapter(x, y, kind="bottleneck", task=task, epochs=20, lr=1e-2, patience=None)
    assert "task_loss" in fit.val_metrics and "task_score" in fit.val_metrics
    assert fit.val_metrics["task_loss"] < fit.init_metrics["task_loss"]
    assert any(p.abs().sum() > 0 for p in fit.adapter.fc2.parameters())


def test_fit_from_a_given_adapter_keeps_its_kind_and_weights():
    x = torch.randn(6, 3, 4, 4, generator=gen(12))
    y = torch.randn(6, 5, 4, 4, generator=gen(13))
    start = fit_adapter(x, y, kind="bottleneck", epochs=0).adapter
    again = fit_adapter(x, y, init=start, epochs=0)
    assert again.adapter.kind == "bottleneck"
    for k, v in start.state_dict().items():
        assert torch.equal(again.adapter.state_dict()[k], v)
    with pytest.raises(UsageError):
        fit_adapter(x[:, :2], y, init=start)


@pytest.mark.parametrize("kind", ADAPTER_KINDS)
@pytest.mark.parametrize("bits", [None, 8])
def test_packed_adapter_reads_back_as_stored(kind, bits):
    from nvcodec.container import unpack_tensors

    a = MicroAdapter(6, 40, (7, 9), kind=kind)
    with torch.no_grad():
        for p in a.parameters():
            p.copy_(torch.randn(p.shape, generator=gen(3)))
    stored = a.stored(bits)
    bundle = unpack_tensors(a.pack({"kind": kind}, bits))
    assert bundle.meta == {"kind": kind, "bits": bits or 16}
    back = MicroAdapter.from_arrays({n: bundle.dequantized(n) for n in bundle.tensors}, (7, 9), kind=kind)
    x = torch.randn(2, 6, 20, 30, generator=gen(4))
    torch.testing.assert_close(back(x), stored(x), rtol=0, atol=0)
    if bits == 8:
        assert all(bundle.tensors[n].dtype == np.uint8 for n in bundle.tensors if bundle.tensors[n].ndim >= 2)
        big = MicroAdapter(64, 128, (7, 9), kind=kind)
        assert len(big.pack({}, 8)) < 0.65 * len(big.pack({}, None))
        w, ws = a.conv.weight.detach(), stored.conv.weight.detach()
        assert (w - ws).abs().max() <= (w.amax() - w.amin()) / 255

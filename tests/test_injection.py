"""The injected path with an identity adapter reproduces the full pixel path exactly."""

import pytest
import torch

from nvcodec.tasks.adapter import MicroAdapter
from nvcodec.tasks.registry import get_task
from nvcodec.tasks.weights import resolve_weights


@pytest.mark.parametrize("task", ["efficientnet_lite0", "resnet50", "detr"])
def test_identity_adapter_reproduces_full_forward(task):
    spec = get_task(task)
    torch.manual_seed(0)
    model = spec.build(resolve_weights(task, "random"), "cpu", tiny=True).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.inference_mode():
        full = model(x)
        for point in spec.injection_points:
            act = model.forward_to(x, point)
            c = act.shape[1]
            adapter = MicroAdapter(c, c, tuple(act.shape[-2:]))
            with torch.no_grad():
                adapter.conv.weight.copy_(torch.eye(c).reshape(c, c, 1, 1))
                adapter.conv.bias.zero_()
            out = model.forward_from(adapter(act), point)
            if isinstance(full, dict):
                for key in full:
                    assert torch.equal(out[key], full[key]), (point, key)
            else:
                assert torch.equal(out, full), point

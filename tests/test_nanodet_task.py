"""The ``nanodet`` task through the task registry and the CLI: tiny end to end, weights lookup, exit 5.

Needs the declaration API (`nvcodec.models.registry.declare`); skipped where it is absent.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("nvcodec.models.registry", reason="needs the task registry's declare() API (nvcodec.models.registry)")

from nvcodec.errors import WeightsError  # noqa: E402
from nvcodec.models import nanodet as nd  # noqa: E402
from nvcodec.models.registry import get_task, resolve_weights  # noqa: E402
from nvcodec.models.weights import WeightsSource  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def test_nanodet_is_declared():
    spec = get_task("nanodet")
    assert spec.output_type == "detection" and spec.injection_points == nd.POINTS
    assert spec.labels == nd.COCO80 and spec.default_options["threshold"] == nd.DEFAULT_THRESHOLD
    assert spec.geometry(180, 320).out_hw == (416, 416)
    assert spec.geometry((180, 320), tiny=True).out_hw == (64, 64)
    assert "box" in spec.to_dict()["output_schema"]["fields"]


def test_tiny_nanodet_task_end_to_end():
    spec = get_task("nanodet")
    torch.manual_seed(0)
    model = spec.build(WeightsSource("nanodet", "random"), "cpu", tiny=True)
    frames = torch.randint(0, 256, (2, 90, 120, 3), dtype=torch.uint8)
    g = spec.geometry((90, 120), tiny=True)
    x = spec.preprocess(frames, g)
    assert x.shape == (2, 3, 64, 64) and float(x.max()) <= 1.0
    with torch.no_grad():
        raw = model(x)
        resumed = model.forward_from(model.forward_to(x, "stage1"), "stage1")
    assert spec.fidelity(resumed, raw) == pytest.approx(1.0)
    dets = spec.postprocess(raw, g, threshold=0.0, max_detections=7)
    assert len(dets) == 2 and all(len(d) == 7 for d in dets)
    for d in dets[0]:
        x0, y0, x1, y1 = d["box"]
        assert 0 <= x0 <= x1 <= 120 and 0 <= y0 <= y1 <= 90 and d["label"] in nd.COCO80


def _empty_places(tmp_path: Path) -> dict[str, str]:
    return {nd.ENV_VAR: str(tmp_path / "env"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}


def test_resolve_weights_forms(tmp_path, monkeypatch):
    for k, v in _empty_places(tmp_path).items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsError) as err:
        resolve_weights("nanodet", None)
    assert err.value.exit_code == 5 and str(tmp_path / "env" / "nanodet.json") in str(err.value)
    with pytest.raises(WeightsError, match="no such file or folder"):
        resolve_weights("nanodet", str(tmp_path / "absent"))
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "nanodet.json").write_text("{}")
    assert resolve_weights("nanodet", str(tmp_path / "w")).path == tmp_path / "w" / "nanodet.json"
    assert resolve_weights("nanodet", "random").random


def _nv(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nvcodec_cli.main", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), **env}, timeout=300)


def test_cli_attach_without_weights_exits_5_listing_places(tmp_path):
    from conftest import synthetic_frames, write_clip

    clip = write_clip(str(tmp_path / "c.mp4"), synthetic_frames(4, 24, 40))
    nvp = tmp_path / "c.nvp"
    enc = _nv("encode", clip, str(nvp), "--params", "6k", "--epochs", "5", "--psnr", "99", "--device", "cpu",
              cwd=tmp_path, env={})
    assert enc.returncode == 0, enc.stderr
    before = nvp.read_bytes()
    proc = _nv("attach", str(nvp), "--task", "nanodet", "--source", clip, cwd=tmp_path, env=_empty_places(tmp_path))
    assert proc.returncode == 5, proc.stderr
    assert str(tmp_path / "xdg" / "nvcodec" / "human-models" / "nanodet.json") in proc.stderr
    assert str(tmp_path / "env" / "nanodet.json") in proc.stderr
    assert "fetch_human_models.sh" in proc.stderr and "Traceback" not in proc.stderr
    assert nvp.read_bytes() == before

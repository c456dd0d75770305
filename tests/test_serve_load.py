"""`benchmarks/serve_load.py` and its baseline service: the parts that need no shared clips.

The load generator refuses every host but 127.0.0.1, its workload is seeded and bounded, it skips
cleanly without the shared clips; the baseline service answers `infer`-shaped JSON from an H.264
file (a tiny clip made here, the installed EfficientNet-Lite0 weights) and refuses bad requests.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra")
pytest.importorskip("httpx", reason="needs the serve extra")

from fastapi.testclient import TestClient  # noqa: E402

from conftest import ROOT, synthetic_frames, write_clip  # noqa: E402


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "benchmarks", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, mod)
    spec.loader.exec_module(mod)
    return mod


serve_load = _load("serve_load")
serve_baseline = _load("serve_baseline")


@pytest.mark.parametrize("url", ["http://10.0.0.1:8000", "http://localhost:8000", "http://127.0.0.2:80",
                                 "https://127.0.0.1:8000", "http://example.com", "http://[::1]:8000"])
def test_load_generator_refuses_other_hosts(url):
    with pytest.raises(SystemExit, match="127.0.0.1 only"):
        serve_load.check_local(url)
    with pytest.raises(SystemExit):
        serve_load.drive(url, [{"video": "v.nvp", "tasks": ["t"], "frames": [0, 1]}], 1, 1.0)


def test_workload_is_seeded_and_in_range():
    videos = {"a.nvp": {"frames": 5}, "b.nvp": {"frames": 32}}
    w = serve_load.workload(videos, [["t"]], 200, seed=3)
    assert w == serve_load.workload(videos, [["t"]], 200, seed=3) and len(w) == 200
    for q in w:
        a, b = q["frames"]
        assert 0 <= a < b <= videos[q["video"]]["frames"] and b - a <= 4


def test_skips_without_the_shared_clips(tmp_path, capsys):
    assert serve_load.main(["--clips", str(tmp_path / "none"), "--work", str(tmp_path / "w")]) == 0
    assert "skipped" in capsys.readouterr().out
    assert not (tmp_path / "w").exists()


def test_baseline_service_answers_like_infer(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_clip(str(src / "clip.mp4"), synthetic_frames(4, 48, 64))
    client = TestClient(serve_baseline.create_app(serve_baseline.Baseline(src, "cpu")))
    r = client.post("/v1/infer", json={"video": "clip.nvp", "tasks": ["efficientnet_lite0"], "frames": [1, 3]})
    assert r.status_code == 200, r.text
    body = r.json()
    frames = body["tasks"]["efficientnet_lite0"]["frames"]
    assert [f["frame"] for f in frames] == [1, 2] and all(len(f["predictions"]) == 5 for f in frames)
    assert float(r.headers["server-timing"].split("dur=")[1]) > 0
    for bad, status in (({"video": "../clip.nvp", "tasks": ["efficientnet_lite0"]}, 404),
                        ({"video": "clip.nvp", "tasks": ["no_such_task"]}, 400),
                        ({"video": "clip.nvp", "tasks": ["efficientnet_lite0"], "frames": [3, 9]}, 400)):
        assert client.post("/v1/infer", json=bad).status_code == status
    assert client.post("/v1/infer", content=b"{not json").status_code == 400

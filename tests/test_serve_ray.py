"""`nvcodec serve --ray` (issue 22): the service as a Ray Serve deployment on a local Ray.

One local Ray (one CPU, no dashboard) and one deployment for the whole module; a request goes end
to end through Ray Serve's proxy and must answer what `nvcodec infer` answers in this process.
Skipped with a reason where Ray Serve is not installed or a local Ray cannot start here.
"""

from __future__ import annotations

import os
import shutil
import socket

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra")
httpx = pytest.importorskip("httpx", reason="needs the serve extra")
ray = pytest.importorskip("ray", reason="needs Ray: pip install 'nvcodec[ray]'")
pytest.importorskip("ray.serve", reason="needs Ray Serve: pip install 'nvcodec[ray]'")

from nvcodec.adapt.attach import attach  # noqa: E402
from nvcodec.errors import UsageError  # noqa: E402
from nvcodec.route.infer import infer  # noqa: E402
from nvcodec.serve.deployment import PROXY_READY_S, RayOptions, start  # noqa: E402
from nvcodec.serve.settings import ServeSettings  # noqa: E402
from nvcodec_cli.main import main  # noqa: E402

from conftest import encode_tiny  # noqa: E402

TASK = "resnet50"
RAY_START_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """LIBRARY with one tiny video, resnet50 attached on a tiny random backbone."""
    work = tmp_path_factory.mktemp("serve_ray")
    nvp = encode_tiny(work, frames=4)
    root = work / "lib"
    root.mkdir()
    shutil.copy(nvp, root / "v.nvp")
    attach(str(root / "v.nvp"), TASK, weights="random-tiny", top_k=0.2, epochs=1, device="cpu")
    return root


@pytest.fixture(scope="module")
def deployed(library):
    """The deployment on a local one-CPU Ray: its RayService."""
    if ray.is_initialized():
        pytest.skip("Ray is already initialised in this process")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", str(PROXY_READY_S))  # as `start` does
    try:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, object_store_memory=80 * 2 ** 20,
                 configure_logging=True, logging_level="warning")
    except Exception as exc:  # noqa: BLE001 - any failure to start Ray here is a reason to skip
        pytest.skip(f"a local Ray cannot start here: {' '.join(str(exc).split())[:200]}")
    try:
        svc = start(ServeSettings(library=str(library), port=_free_port(), device="cpu", batch_window_ms=0.0),
                    RayOptions(address="auto"))
    except BaseException:
        ray.shutdown()
        raise
    yield svc
    svc.stop()
    ray.shutdown()


def test_ray_serve_answers_like_infer(deployed, library):
    body = {"video": "v.nvp", "tasks": [TASK], "frames": [1, 3]}
    with httpx.Client(base_url=deployed.url, trust_env=False, timeout=RAY_START_S) as client:
        assert client.get("/healthz").json()["status"] == "ok"
        r = client.post("/v1/infer", json=body)
        assert r.status_code == 200, r.text
        got = r.json()
        bad = client.post("/v1/infer", json={**body, "video": "../v.nvp"})
        metrics = client.get("/metrics").text
    want = infer(str(library / "v.nvp"), [TASK], frames=(1, 3), device="cpu")
    assert got["frames"] == [1, 3]
    frames = got["tasks"][TASK]["frames"]
    assert [f["frame"] for f in frames] == [1, 2]
    for g, w in zip(frames, want["tasks"][TASK]["frames"]):
        assert [p["label"] for p in g["predictions"]] == [p["label"] for p in w["predictions"]]
        assert [p["score"] for p in g["predictions"]] == pytest.approx([p["score"] for p in w["predictions"]], abs=1e-4)
    assert 400 <= bad.status_code < 500 and "error" in bad.json()
    assert "nvcodec_requests_total 1.0" in metrics


def test_ray_options_checked():
    assert RayOptions("auto", 2, 0.5).checked().replicas == 2
    for bad in (RayOptions("off"), RayOptions("", 1), RayOptions("auto", 0), RayOptions("auto", True),
                RayOptions("auto", 1, -1.0), RayOptions("auto", 1, float("nan"))):
        with pytest.raises(UsageError):
            bad.checked()


@pytest.mark.parametrize("args, words", [
    (["--ray", "auto", "--replicas", "0"], "--replicas"),
    (["--ray", "auto", "--gpus-per-replica", "-1"], "--gpus-per-replica"),
    (["--ray", "auto", "--port", "0"], "fixed --port"),
    (["--replicas", "2"], "--ray"),
])
def test_cli_ray_options_refused_before_ray_starts(library, args, words, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", str(library), *args])
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert words in err and len(err.strip().splitlines()) == 1

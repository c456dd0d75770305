"""`nvcodec serve` (issue 22): the scheduler's sharing and reuse, the HTTP endpoints and every limit.

Offline and small: a 6-frame 24x40 library built with `benchmarks/attack.py`'s helpers, tiny random
backbones, hostile files from its attack list. The scheduler is tested without HTTP; the app with
Starlette's TestClient; signals, slow and vanishing clients against a real uvicorn subprocess.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi", reason="needs the serve extra")
pytest.importorskip("uvicorn", reason="needs the serve extra")

from click.testing import CliRunner  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

import nvcodec  # noqa: E402
from nvcodec.adapt.attach import attach  # noqa: E402
from nvcodec.codec.encode import EncodeOptions, encode  # noqa: E402
from nvcodec.video import write_y4m  # noqa: E402
from nvcodec.serve.app import create_app  # noqa: E402
from nvcodec.serve.batch import InferRequest  # noqa: E402
from nvcodec.serve.caches import LRUCache  # noqa: E402
from nvcodec.serve.errors import Abandoned, BadName, NotFound  # noqa: E402
from nvcodec.serve.library import Library  # noqa: E402
from nvcodec.serve.prefix import cached_prefix  # noqa: E402
from nvcodec.serve.scheduler import Scheduler  # noqa: E402
from nvcodec.serve.settings import ServeSettings, read_token  # noqa: E402
from nvcodec.serve.stats import Stats  # noqa: E402
from nvcodec.route.infer import Clock  # noqa: E402
from nvcodec.errors import UsageError  # noqa: E402

from conftest import ROOT  # noqa: E402

_spec = importlib.util.spec_from_file_location("attack", os.path.join(ROOT, "benchmarks", "attack.py"))
attack = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("attack", attack)
_spec.loader.exec_module(attack)

CPU = torch.device("cpu")
TASKS = ["resnet50", "efficientnet_lite0"]


@pytest.fixture(scope="module")
def lib(tmp_path_factory) -> Path:
    """LIBRARY (a 6-frame 24x40 clip as `benchmarks/attack.py` makes it, encoded as hnerv, whose seeded
    routes are these): good.nvp (resnet50 at INR layer 0, efficientnet_lite0 and the clip task i3d_r50 at layer 1), sub/plain.nvp (no task), damaged and hostile files, a
    link leaving LIBRARY, a non-.nvp file; `outside/` beside it."""
    work = tmp_path_factory.mktemp("serve")
    yy, xx = np.mgrid[0:24, 0:40]
    write_y4m(work / "clip.y4m", [np.stack([(xx * 6 + t * 9) % 256, (yy * 10) % 256, np.full_like(xx, 40 * t)], -1)
                                  .astype(np.uint8) for t in range(6)], 25)
    plain = work / "plain.nvp"
    encode(str(work / "clip.y4m"), str(plain), EncodeOptions(psnr=None, epochs=10, params=6000, device="cpu", seed=0,
                                                             kind="hnerv"))
    root = work / "lib"
    (root / "sub").mkdir(parents=True)
    shutil.copy(plain, root / "sub" / "plain.nvp")
    shutil.copy(plain, root / "good.nvp")
    for task, frames in (("resnet50", 4), ("efficientnet_lite0", 4), ("i3d_r50", 2)):
        attach(str(root / "good.nvp"), task, weights="random-tiny", top_k=1, epochs=1, sample_frames=frames,
               kinds=["linear"], device="cpu")
    good = attack.Good(plain, root / "good.nvp", attack.sections_of(root / "good.nvp"))
    cases = {c.name: c for c in attack.CASES}
    cases["routing_inr_layer_99"].build(good, root / "hostile_layer.nvp")
    cases["adapter_out_size_huge"].build(good, root / "hostile_adapter.nvp")
    damaged = bytearray((root / "good.nvp").read_bytes())
    block0 = next(s for s in good.sections if s.name == "block/0")
    at = damaged.index(block0.data) + len(block0.data) // 2  # the first block every route decodes
    damaged[at:at + 32] = bytes(b ^ 0xFF for b in damaged[at:at + 32])
    (root / "damaged.nvp").write_bytes(bytes(damaged))
    (root / "garbage.nvp").write_bytes(os.urandom(3000))
    (root / "notes.txt").write_text("not a video")
    outside = work / "outside"
    outside.mkdir()
    shutil.copy(good.plain, outside / "secret.nvp")
    (root / "link.nvp").symlink_to(outside / "secret.nvp")
    (root / "inner_link.nvp").symlink_to(root / "good.nvp")
    return root


def settings(lib: Path, **kw) -> ServeSettings:
    base = dict(library=str(lib), device="cpu", batch_window_ms=5.0, cache_mb=64.0)
    return ServeSettings(**{**base, **kw})


@pytest.fixture
def client(lib):
    with TestClient(create_app(settings(lib))) as c:
        yield c


def _without_timing(report: dict) -> dict:
    out = json.loads(json.dumps(report))
    out.pop("file", None)
    for t in out["tasks"].values():
        t.pop("timing_ms")
    if "sharing" in out:
        for k in ("shared_decode_ms", "separate_decode_ms"):
            out["sharing"].pop(k)
    return out


# --- names -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../outside/secret.nvp", "/etc/passwd.nvp", "sub/../good.nvp", "./good.nvp",
                                  "%2e%2e/outside/secret.nvp", "%252e%252e/x.nvp", "good.nvp\x00.txt", "sub//plain.nvp",
                                  "..\\outside\\secret.nvp", ".hidden.nvp", "notes.txt", "", "a" * 2000 + ".nvp",
                                  "C:/x.nvp", "sub/"])
def test_refused_names(lib, name):
    with pytest.raises(BadName):
        Library(str(lib)).resolve(name)


def test_links_leaving_the_library_and_missing_files_are_not_found(lib):
    library = Library(str(lib))
    for name in ("link.nvp", "missing.nvp", "sub"):
        with pytest.raises((NotFound, BadName)):
            library.resolve(name)
    assert library.resolve("inner_link.nvp") == os.path.realpath(lib / "good.nvp")
    names = library.videos()
    assert "good.nvp" in names and "sub/plain.nvp" in names and "inner_link.nvp" in names
    assert "link.nvp" not in names and "notes.txt" not in names


# --- the scheduler, no HTTP ------------------------------------------------------------------------

def test_infer_answers_the_json_of_the_cli(lib, client):
    from nvcodec_cli.main import app as cli

    r = CliRunner().invoke(cli, ["infer", str(lib / "good.nvp"), "--task", "resnet50,efficientnet_lite0", "--frames", "1:5",
                                 "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    want = json.loads(r.output)
    got = client.post("/v1/infer", json={"video": "good.nvp", "tasks": TASKS, "frames": [1, 5]})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["file"] == "good.nvp" and set(body["tasks"]["resnet50"]["timing_ms"]) == \
        set(want["tasks"]["resnet50"]["timing_ms"])
    assert body["sharing"]["separate_decode_ms"] is None
    assert _without_timing(body) == _without_timing(want)


@pytest.mark.parametrize("window,stride", [(None, None), (4, 1)])
def test_clip_task_windows_match_the_cli_and_are_shared_across_requests(lib, window, stride):
    from nvcodec_cli.main import app as cli

    args = ["--window", str(window), "--stride", str(stride)] if window else []
    r = CliRunner().invoke(cli, ["infer", str(lib / "good.nvp"), "--task", "i3d_r50,resnet50", "--frames", "0:6",
                                 "--device", "cpu", "--json", *args])
    assert r.exit_code == 0, r.output
    want = json.loads(r.output)
    sched = Scheduler(Library(str(lib)), device="cpu", batch_window_ms=300).start()
    try:
        a = sched.submit(InferRequest("good.nvp", ("i3d_r50", "resnet50"), (0, 6), window, stride))
        b = sched.submit(InferRequest("good.nvp", ("i3d_r50",), (1, 6), window, stride))
        got, other = a.future.result(60).report, b.future.result(60).report
        assert _without_timing(got) == _without_timing(want)
        assert got["tasks"]["i3d_r50"]["unit"] == "window" and got["tasks"]["i3d_r50"]["windows"]
        s = sched.snapshot()
        assert s["batches"] == 1 and s["decoded_blocks"] == 6 * 2  # both tasks, both requests: one prefix per frame
        alone = Scheduler(Library(str(lib)), device="cpu", batch_window_ms=0).start()
        try:
            assert _without_timing(alone.infer(InferRequest("good.nvp", ("i3d_r50",), (1, 6), window, stride),
                                               timeout=60).report) == _without_timing(other)
        finally:
            alone.close()
    finally:
        sched.close()


def test_two_tasks_in_concurrent_requests_decode_the_shared_prefix_once(lib):
    sched = Scheduler(Library(str(lib)), device="cpu", batch_window_ms=400, batch_size=4).start()
    try:
        a = sched.submit(InferRequest("good.nvp", ("resnet50",), (0, 6)))
        b = sched.submit(InferRequest("good.nvp", ("efficientnet_lite0",), (0, 6)))
        ra, rb = a.future.result(60).report, b.future.result(60).report
        s = sched.snapshot()
        layers = sorted({ra["tasks"]["resnet50"]["inr_layer"], rb["tasks"]["efficientnet_lite0"]["inr_layer"]})
        assert layers == [0, 1]
        assert s["batches"] == 1 and s["batch_sizes"][1] == 1  # one batch of two requests
        assert s["prefix_decodes"] == 2 * len(layers)  # frames 0..5 in batches of 4: two frame batches
        assert s["decoded_blocks"] == 6 * (layers[-1] + 1)  # a deeper layer continued from the shallower one
        assert s["result_cache_misses"] == 12 and s["result_cache_hits"] == 0
    finally:
        sched.close()


def test_repeated_request_is_answered_from_the_result_cache_and_backbones_load_once(lib):
    sched = Scheduler(Library(str(lib)), device="cpu", batch_window_ms=0).start()
    try:
        first = sched.infer(InferRequest("good.nvp", ("resnet50",), (0, 3)), timeout=60)
        s1 = sched.snapshot()
        again = sched.infer(InferRequest("good.nvp", ("resnet50",), (0, 3)), timeout=60)
        s2 = sched.snapshot()
        assert again.cached_units == again.units == 3 and first.cached_units == 0
        assert s2["result_cache_hits"] - s1["result_cache_hits"] == 3
        assert s2["decoded_blocks"] == s1["decoded_blocks"] and s2["prefix_decodes"] == s1["prefix_decodes"]
        assert _without_timing(again.report) == _without_timing(first.report)
        assert again.report["tasks"]["resnet50"]["timing_ms"]["total"] == 0.0
        # A wider range: frames 0..2 from the result cache, 3..5 computed; still one backbone, one adapter set.
        wider = sched.infer(InferRequest("good.nvp", ("resnet50",), (0, 6)), timeout=60)
        assert wider.cached_units == 3 and [f["frame"] for f in wider.report["tasks"]["resnet50"]["frames"]] == \
            list(range(6))
        s3 = sched.snapshot()
        assert s3["backbone_loads"] == 1 and s3["adapter_loads"] == 1
        assert s3["batches"] == 2  # the repeated request needed no batch at all
    finally:
        sched.close()


def test_prefix_cache_continues_a_deeper_layer_from_a_cached_shallower_one(lib):
    stats, cache = Stats(), LRUCache(1 << 26)
    key = Library(str(lib)).key("good.nvp")
    with nvcodec.open(lib / "good.nvp") as v:
        seg, deepest = v.segments[0], v.num_layers - 1
        source = cached_prefix(v, key, CPU, cache, stats)
        with torch.inference_mode():
            list(source(seg, [0, 1], [0], Clock(CPU)))
            assert stats.decoded_blocks == 2 * 1
            got = {k: f for k, f, _ in source(seg, [0, 1], [0, deepest], Clock(CPU))}
            assert stats.decoded_blocks == 2 * (deepest + 1)  # only blocks 1..deepest ran again
            assert stats.prefix_cache_hits == 2 and stats.prefix_decodes == 2
            dec, _ = v.decoder(seg, None, CPU)
            assert torch.allclose(got[deepest], dec.features(v.inputs(seg, [0, 1], CPU, None), deepest))
            list(source(seg, [0, 1], [deepest], Clock(CPU)))
            assert stats.decoded_blocks == 2 * (deepest + 1) and stats.prefix_decodes == 2


def test_work_nobody_waits_for_is_dropped(lib, monkeypatch):
    import nvcodec.serve.batch as batch_mod

    sched = Scheduler(Library(str(lib)), device="cpu", batch_window_ms=0, batch_size=1, cache_mb=0).start()
    try:
        calls = []
        real = batch_mod.cached_prefix

        def abandoning(*args):
            source = real(*args)

            def wrapped(seg, idx, layers, clock):
                calls.append(idx)
                job.abandon()  # the client goes away while its first frame is decoded
                yield from source(seg, idx, layers, clock)
            return wrapped

        monkeypatch.setattr(batch_mod, "cached_prefix", abandoning)
        job = sched.submit(InferRequest("good.nvp", ("resnet50",), (0, 6)))
        with pytest.raises(Exception) as info:
            job.future.result(60)
        assert isinstance(info.value, (Abandoned,)) or job.future.cancelled()
        assert calls == [[0]]  # frames 1..5 were never decoded
        assert sched.snapshot()["cancelled"] == 1
        # A job abandoned before its batch starts costs nothing at all.
        slow = Scheduler(Library(str(lib)), device="cpu", batch_window_ms=300).start()
        try:
            j = slow.submit(InferRequest("good.nvp", ("resnet50",), (0, 2)))
            j.abandon()
            time.sleep(0.6)
            s = slow.snapshot()
            assert s["cancelled"] == 1 and s["decoded_blocks"] == 0 and s["batches"] == 0
        finally:
            slow.close()
    finally:
        sched.close()


# --- HTTP ------------------------------------------------------------------------------------------

def _err(r, status: int, exit_code=...) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    e = r.json()["error"]
    assert e["status"] == status and "\n" not in e["message"] and e["message"]
    if exit_code is not ...:
        assert e["exit_code"] == exit_code
    return e


def test_videos_info_frames_health_metrics_openapi(client, lib):
    listed = {v["name"]: v for v in client.get("/v1/videos").json()["videos"]}
    assert listed["good.nvp"]["info"]["video"]["frames"] == 6
    assert listed["garbage.nvp"]["info"] is None and listed["garbage.nvp"]["error"]["status"] == 422
    _err(client.get("/v1/videos/garbage.nvp"), 422, 3)
    assert "link.nvp" not in listed
    info = client.get("/v1/videos/sub/plain.nvp").json()
    assert info["file"] == "sub/plain.nvp" and info["tasks"] == []
    png = client.get("/v1/videos/good.nvp/frames/2.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    with nvcodec.open(lib / "good.nvp") as v:
        from nvcodec.video.png import encode_png
        assert png.content == encode_png(v.frames([2])[0].numpy(), compress_level=1)
    _err(client.get("/v1/videos/good.nvp/frames/6.png"), 400, 2)
    assert client.get("/healthz").json()["status"] == "ok"
    schema = client.get("/openapi.json").json()
    assert {"/v1/infer", "/v1/videos", "/v1/videos/{name}", "/healthz", "/metrics"} <= set(schema["paths"])
    first = client.post("/v1/infer", json={"video": "good.nvp", "tasks": ["resnet50"], "frames": [0, 1]})
    again = client.post("/v1/infer", json={"video": "good.nvp", "tasks": ["resnet50"], "frames": [0, 1]})
    assert again.headers["x-nvcodec-cached-units"] == "1/1" and float(again.headers["x-nvcodec-server-ms"]) >= 0
    assert _without_timing(again.json()) == _without_timing(first.json())
    text = client.get("/metrics").text
    for name in ("nvcodec_requests_total", "nvcodec_prefix_decodes_total", "nvcodec_result_cache_hits_total",
                 "nvcodec_decoded_blocks_total", "nvcodec_batch_requests_bucket", "nvcodec_backbone_loads_total",
                 'nvcodec_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/v1/infer"'):
        assert name in text, name


@pytest.mark.parametrize("path", ["/v1/videos/..%2Foutside%2Fsecret.nvp", "/v1/videos/%2e%2e/outside/secret.nvp",
                                  "/v1/videos/%252e%252e%252foutside%252fsecret.nvp", "/v1/videos/%2Fetc%2Fpasswd",
                                  "/v1/videos/link.nvp", "/v1/videos/notes.txt", "/v1/videos/good.nvp%00.nvp",
                                  "/v1/videos/sub/..%2F..%2Foutside%2Fsecret.nvp", "/v1/videos/link.nvp/frames/0.png"])
def test_paths_outside_the_library_are_refused(client, path):
    r = client.get(path)
    assert r.status_code in (400, 404), (path, r.status_code)
    assert "secret" not in r.text or "error" in r.json()
    assert "video" not in r.json()


@pytest.mark.parametrize("body,status,code", [
    ({"video": "good.nvp", "tasks": ["no_such_task"]}, 400, 2),
    ({"video": "sub/plain.nvp", "tasks": ["resnet50"]}, 409, 6),
    ({"video": "good.nvp", "tasks": ["detr"]}, 409, 6),
    ({"video": "good.nvp", "tasks": ["resnet50"], "frames": [4, 99]}, 400, 2),
    ({"video": "good.nvp", "tasks": ["resnet50"], "frames": [3, 1]}, 400, 2),
    ({"video": "missing.nvp", "tasks": ["resnet50"]}, 404, 2),
    ({"video": "../outside/secret.nvp", "tasks": ["resnet50"]}, 400, 2),
    ({"video": "link.nvp", "tasks": ["resnet50"]}, 404, 2),
    ({"video": "good.nvp", "tasks": []}, 422, 2),
    ({"video": "good.nvp", "tasks": "resnet50"}, 422, 2),
    ({"video": "good.nvp", "tasks": ["resnet50"], "frames": [0, "2"]}, 422, 2),
    ({"video": "good.nvp", "tasks": ["resnet50"], "frames": [0, 1, 2]}, 422, 2),
    ({"video": "good.nvp", "tasks": ["resnet50"], "threshold": 2}, 422, 2),
    ({"video": "good.nvp", "tasks": ["resnet50"], "evil": 1}, 422, 2),
    ({"tasks": ["resnet50"]}, 422, 2),
    ({"video": "damaged.nvp", "tasks": ["resnet50"]}, 422, 3),
    ({"video": "garbage.nvp", "tasks": ["resnet50"]}, 422, 3),
    ({"video": "hostile_layer.nvp", "tasks": ["resnet50"]}, 422, 3),
    ({"video": "hostile_adapter.nvp", "tasks": ["resnet50"]}, 422, 3),
])
def test_infer_errors_are_json_with_the_infer_exit_code(client, body, status, code):
    _err(client.post("/v1/infer", json=body), status, code)
    ok = client.post("/v1/infer", json={"video": "good.nvp", "tasks": ["resnet50"], "frames": [0, 1]})
    assert ok.status_code == 200  # the service stays up and answers the next request


def test_malformed_and_oversized_bodies(lib):
    with TestClient(create_app(settings(lib, max_body=256, max_frames=4))) as c:
        e = _err(c.post("/v1/infer", content=b'{"video": "good.nvp", "tasks": [', headers={"content-type": "application/json"}), 400)
        assert "JSON" in e["message"]
        _err(c.post("/v1/infer", content=b"\xff\xfe", headers={"content-type": "application/json"}), 400)
        _err(c.post("/v1/infer", content=b"[]", headers={"content-type": "application/json"}), 422)
        big = json.dumps({"video": "good.nvp", "tasks": ["resnet50"] * 40}).encode()
        _err(c.post("/v1/infer", content=big, headers={"content-type": "application/json"}), 413)

        def chunks():  # no Content-Length: counted as it arrives
            yield b'{"video": "good.nvp", "tasks": ['
            for _ in range(40):
                yield b'"resnet50", '
            yield b'"resnet50"]}'
        _err(c.post("/v1/infer", content=chunks(), headers={"content-type": "application/json"}), 413)
        _err(c.post("/v1/infer", json={"video": "good.nvp", "tasks": ["resnet50"]}), 413, None)  # 6 frames > 4
        assert c.post("/v1/infer", json={"video": "good.nvp", "tasks": ["resnet50"], "frames": [0, 4]}).status_code == 200


def test_bearer_token(lib, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    with TestClient(create_app(settings(lib, token=read_token(str(token_file))))) as c:
        r = c.get("/v1/videos")
        _err(r, 401, None)
        assert r.headers["www-authenticate"].startswith("Bearer")
        _err(c.get("/v1/videos", headers={"authorization": "Bearer wrong"}), 401)
        _err(c.get("/metrics", headers={"authorization": "Basic s3cret-token"}), 401)
        _err(c.post("/v1/infer", json={"video": "good.nvp", "tasks": ["resnet50"]}), 401)
        assert c.get("/healthz").status_code == 200
        ok = c.get("/v1/videos/good.nvp", headers={"authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200
    token_file.write_text("\n")
    with pytest.raises(UsageError):
        read_token(str(token_file))


def test_concurrency_limit_and_request_timeout(lib):
    app = create_app(settings(lib, max_concurrent=1, batch_window_ms=1500, request_timeout=10))
    with TestClient(app) as c:
        service = app.state.service
        out = {}
        t = threading.Thread(target=lambda: out.setdefault(
            "r", c.post("/v1/infer", json={"video": "good.nvp", "tasks": ["resnet50"], "frames": [0, 1]})))
        t.start()
        deadline = time.monotonic() + 10
        while service.in_flight < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        r = c.post("/v1/infer", json={"video": "good.nvp", "tasks": ["resnet50"], "frames": [0, 1]})
        _err(r, 429, None)
        assert r.headers["retry-after"] == "1"
        assert c.get("/healthz").status_code == 200  # probes are not limited
        t.join(30)
        assert out["r"].status_code == 200
    app = create_app(settings(lib, batch_window_ms=800, request_timeout=0.2))
    with TestClient(app) as c:
        _err(c.post("/v1/infer", json={"video": "good.nvp", "tasks": ["resnet50"], "frames": [0, 1]}), 504, None)
        sched = app.state.service.scheduler
        deadline = time.monotonic() + 10
        while sched.snapshot()["cancelled"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        s = sched.snapshot()
        assert s["cancelled"] == 1 and s["decoded_blocks"] == 0 and s["batches"] == 0  # its work never ran


# --- a real server: slow and vanishing clients, SIGTERM ------------------------------------------------

def _start_server(lib: Path, *args: str) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "nvcodec_cli.main", "serve", str(lib), "--port", "0",
                             "--device", "cpu", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT)
    killer = threading.Timer(120, proc.kill)
    killer.start()
    try:
        line = proc.stderr.readline()
    finally:
        killer.cancel()
    assert "listening on http://127.0.0.1:" in line, line + proc.stderr.read()
    return proc, int(line.rsplit(":", 1)[1])


def _http(port: int, method: str, path: str, body: dict | None = None, timeout: float = 30) -> tuple[int, bytes]:
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"content-type": "application/json"} if body is not None else {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def _metric(port: int, name: str) -> float:
    text = _http(port, "GET", "/metrics")[1].decode()
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")))


@pytest.mark.slow
def test_server_drops_work_of_gone_clients_answers_slow_ones_408_and_drains_on_sigterm(lib):
    proc, port = _start_server(lib, "--batch-window-ms", "1000", "--request-timeout", "3")
    try:
        warm = _http(port, "POST", "/v1/infer", {"video": "good.nvp", "tasks": ["resnet50"], "frames": [4, 6]})
        assert warm[0] == 200, warm
        blocks, batches = _metric(port, "nvcodec_decoded_blocks_total"), _metric(port, "nvcodec_batches_total")
        body = json.dumps({"video": "good.nvp", "tasks": ["resnet50"], "frames": [0, 2]}).encode()
        head = (f"POST /v1/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n\r\n").encode()
        # A client that sends its request and goes away: its batch never runs.
        gone = socket.create_connection(("127.0.0.1", port))
        gone.sendall(head + body)
        time.sleep(0.3)
        gone.close()
        deadline = time.monotonic() + 10
        while _metric(port, "nvcodec_cancelled_total") < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _metric(port, "nvcodec_cancelled_total") == 1
        assert _metric(port, "nvcodec_decoded_blocks_total") == blocks and _metric(port, "nvcodec_batches_total") == batches
        # A client that stalls in its body gets 408 after --request-timeout; others are served meanwhile.
        slow = socket.create_connection(("127.0.0.1", port), timeout=10)
        slow.sendall(head + body[:10])
        assert _http(port, "GET", "/healthz")[0] == 200
        t0 = time.monotonic()
        reply = slow.makefile("rb").read1(4096).decode()
        while "\r\n\r\n" not in reply or len(reply.split("\r\n\r\n", 1)[1]) < int(
                reply.lower().split("content-length: ")[1].split("\r\n")[0]):
            reply += slow.recv(4096).decode()
        assert reply.startswith("HTTP/1.1 408") and '"status": 408' in reply and time.monotonic() - t0 < 6
        slow.close()
        # SIGTERM while a request waits in its batch window: it is answered, then the server exits 0.
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("r", _http(port, "POST", "/v1/infer", json.loads(body))))
        t.start()
        time.sleep(0.4)
        proc.send_signal(signal.SIGTERM)
        t.join(30)
        assert out["r"][0] == 200 and json.loads(out["r"][1])["tasks"]["resnet50"]["frames"][1]["frame"] == 1
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_refuses_bad_settings_and_a_missing_extra(lib, tmp_path, monkeypatch):
    from nvcodec_cli.main import main

    def run(*args):
        with pytest.raises(SystemExit) as e:
            main(["serve", str(lib), *args])
        return e.value.code

    assert run("--batch-window-ms", "-1") == 2
    assert run("--max-frames", "0") == 2
    assert run("--token-file", str(tmp_path / "missing")) == 2
    assert main.__module__ == "nvcodec_cli.main"
    import nvcodec.serve as serve_pkg

    monkeypatch.setattr(serve_pkg, "EXTRA_MODULES", ("fastapi", "no_such_module_for_nvcodec"))
    assert run() == 1


def test_cli_defaults_equal_the_settings_defaults():
    import dataclasses

    from nvcodec_cli.main import app as cli

    cli_defaults = {p.name: p.default for p in cli.commands["serve"].params}
    fields = {f.name: f.default for f in dataclasses.fields(ServeSettings)}
    for name in ("host", "port", "device", "max_frames", "max_body", "max_concurrent", "request_timeout",
                 "batch_window_ms", "cache_mb"):
        assert cli_defaults[name] == fields[name], name


def test_json_nested_past_the_parser_depth_is_a_json_error(client):
    r = client.post("/v1/infer", content=b"[" * 30000 + b"]" * 30000, headers={"content-type": "application/json"})
    _err(r, 400)
    assert client.get("/healthz").status_code == 200


def test_only_the_http_modules_import_the_serve_extra():
    import ast

    http = {"app", "middleware", "metrics", "server"}
    extra = {"fastapi", "starlette", "uvicorn", "prometheus_client", "pydantic", "httpx"}
    for path in sorted(Path(ROOT, "nvcodec", "serve").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level}
        if path.stem not in http:
            assert not names & extra, path.name


def test_a_changed_file_is_never_answered_from_its_older_version(lib, tmp_path):
    shutil.copy(lib / "good.nvp", tmp_path / "v.nvp")
    sched = Scheduler(Library(str(tmp_path)), device="cpu", batch_window_ms=0).start()
    try:
        req = InferRequest("v.nvp", ("resnet50",), (0, 2))
        assert sched.infer(req, timeout=60).cached_units == 0
        assert sched.infer(req, timeout=60).cached_units == 2
        st = os.stat(tmp_path / "v.nvp")
        os.utime(tmp_path / "v.nvp", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # as an append would
        assert sched.infer(req, timeout=60).cached_units == 0
    finally:
        sched.close()

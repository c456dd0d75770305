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

import pytest
import torch

pytest.importorskip("fastapi", reason="needs the serve extra")
pytest.importorskip("uvicorn", reason="needs the serve extra")

from click.testing import CliRunner  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

import nvcodec  # noqa: E402
from nvcodec.adapt.attach import attach  # noqa: E402
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
TIMING_KEYS = ("timing_ms",)


@pytest.fixture(scope="module")
def lib(tmp_path_factory) -> Path:
    """LIBRARY: good.nvp (resnet50 at INR layer 0, efficientnet_lite0 at layer 1), sub/plain.nvp (no task), damaged and hostile files, a
    link leaving LIBRARY, a non-.nvp file; `outside/` beside it."""
    work = tmp_path_factory.mktemp("serve")
    (work / "build").mkdir()
    good = attack.build_good(work / "build")
    root = work / "lib"
    (root / "sub").mkdir(parents=True)
    shutil.copy(good.attached, root / "good.nvp")
    attach(str(root / "good.nvp"), "efficientnet_lite0", weights="random-tiny", top_k=1, epochs=1, sample_frames=4,
           kinds=["linear"], device="cpu")
    shutil.copy(good.plain, root / "sub" / "plain.nvp")
    cases = {c.name: c for c in attack.CASES}
    cases["routing_inr_layer_99"].build(good, root / "hostile_layer.nvp")
    cases["adapter_out_size_huge"].build(good, root / "hostile_adapter.nvp")
    damaged = bytearray((root / "good.nvp").read_bytes())
    damaged[len(damaged) // 3: len(damaged) // 3 + 64] = bytes(64)
    (root / "damaged.nvp").write_bytes(bytes(damaged))
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
        assert s3["backbone_loads"] == 1 and s3["adapter_loads"] == 1 and s3["batches"] == 3
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

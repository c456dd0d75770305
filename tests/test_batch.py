"""`nvcodec batch` / `batch-infer`: in-process fallback, a real local Ray run, resume, failures, lists."""

import io
import json
import os
import subprocess
import sys

import pytest

from nvcodec.jobs import batch, batch_infer
from nvcodec.jobs import runner
from nvcodec.jobs.inputs import collect_inputs
from nvcodec.codec.encode import EncodeOptions, encode
from nvcodec.codec.info import describe
from nvcodec.container import verify_nvp
from nvcodec.errors import Interrupted, UsageError
from nvcodec.progress import ProgressEvent

from conftest import synthetic_frames, write_clip

FAST = dict(params=3000, epochs=2, psnr=None, device="cpu", seed=0)
TINY_ATTACH = {"weights": "random-tiny", "top_k": 1, "epochs": 1, "kinds": ["linear"], "sample_frames": 4}


def _clips(root):
    os.makedirs(root / "sub")
    write_clip(str(root / "a.mp4"), synthetic_frames(4, 24, 32, seed=1))
    write_clip(str(root / "sub" / "b.mp4"), synthetic_frames(4, 24, 32, seed=2))
    (root / "c.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(300))  # corrupt
    (root / "notes.txt").write_text("not a video")
    return root


def _one_clip(tmp_path, frames=4):
    src = tmp_path / "in"
    src.mkdir()
    return src, write_clip(str(src / "a.mp4"), synthetic_frames(frames, 24, 32, seed=1)), tmp_path / "out"


@pytest.fixture
def clips(tmp_path):
    return _clips(tmp_path / "in")


def _by_name(manifest):
    return {os.path.basename(r["input"]): r for r in manifest["jobs"]}


def _check_first_run(m, out):
    rows = _by_name(m)
    assert set(rows) == {"a.mp4", "b.mp4", "c.mp4"}
    for name in ("a.mp4", "b.mp4"):
        r = rows[name]
        assert r["status"] == "encoded", r
        assert verify_nvp(r["output"])["ok"]
        assert r["bytes"] == os.path.getsize(r["output"]) and r["bpp"] > 0 and r["psnr"] > 0
        assert r["encode_seconds"] > 0 and r["cpu_seconds"] > 0 and r["error"] is None
    assert rows["b.mp4"]["output"] == str(out / "sub" / "b.nvp")
    bad = rows["c.mp4"]
    assert bad["status"] == "failed" and bad["exit_code"] == 4 and "c.mp4" in bad["error"]
    assert not os.path.exists(bad["output"])
    s = m["summary"]
    assert (s["inputs"], s["encoded"], s["failed"], s["ok"], s["exit_code"]) == (3, 2, 1, 2, 4)
    on_disk = json.load(open(out / "manifest.json"))
    assert on_disk["summary"]["encoded"] == 2 and len(on_disk["jobs"]) == 3
    assert not [f for f in os.listdir(out) if f.startswith(".") or f.endswith(".ckpt")]


def _check_rerun_does_no_work(m, first):
    rows, before = _by_name(m), _by_name(first)
    for name in ("a.mp4", "b.mp4"):
        assert rows[name]["status"] == "skipped"
        assert rows[name]["bytes"] == before[name]["bytes"] and rows[name]["psnr"] == before[name]["psnr"]
    assert rows["c.mp4"]["status"] == "failed" and rows["c.mp4"]["exit_code"] == 4
    s = m["summary"]
    assert (s["encoded"], s["attached"], s["skipped"], s["failed"]) == (0, 0, 2, 1)
    assert s["videos_per_hour"] is None and s["cpu_seconds"] == 0


def test_in_process_fallback_without_ray(clips, tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "_import_ray", lambda: None)
    out = tmp_path / "out"
    events = []
    m = batch(str(clips), str(out), EncodeOptions(**FAST), ray="auto", progress=events.append)
    assert m["runner"]["kind"] == "sequential" and m["runner"]["note"] == runner.NO_RAY_NOTE
    assert any(runner.NO_RAY_NOTE in e.info.get("note", "") for e in events)
    last = [e for e in events if "done" in e.info][-1]
    assert (last.step, last.total, last.info["done"], last.info["failed"], last.info["running"]) == (3, 3, 2, 1, 0)
    _check_first_run(m, out)
    mtimes = {p: os.stat(p).st_mtime_ns for p in (str(out / "a.nvp"), str(out / "sub" / "b.nvp"))}

    import nvcodec.codec.encode as enc

    real, calls = enc.encode, []

    def counting(path, *a, **k):
        calls.append(os.path.basename(path))
        return real(path, *a, **k)

    monkeypatch.setattr(enc, "encode", counting)
    import nvcodec

    again = nvcodec.batch(str(clips), str(out), EncodeOptions(**FAST), ray="auto")
    assert calls == ["c.mp4"]  # only the failed input is tried again (and fails at its first read)
    _check_rerun_does_no_work(again, m)
    assert {p: os.stat(p).st_mtime_ns for p in mtimes} == mtimes


def test_local_ray_run(clips, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    m = batch(str(clips), str(out), EncodeOptions(**FAST), ray="local", workers=2)
    assert m["runner"]["kind"] == "ray" and m["runner"]["address"] == "local"
    _check_first_run(m, out)
    workers = {r["worker"] for r in m["jobs"]}
    assert all(w and int(w.rsplit(":", 1)[1]) != os.getpid() for w in workers)
    mtimes = {r["output"]: os.stat(r["output"]).st_mtime_ns for r in m["jobs"] if r["status"] == "encoded"}
    again = batch(str(clips), str(out), EncodeOptions(**FAST), ray="local", workers=2)
    assert again["runner"]["kind"] == "ray"
    _check_rerun_does_no_work(again, m)
    assert {p: os.stat(p).st_mtime_ns for p in mtimes} == mtimes


def test_interrupted_encode_resumes_from_its_checkpoint(tmp_path):
    src, clip, out = _one_clip(tmp_path)
    out.mkdir()
    opts = EncodeOptions(**{**FAST, "epochs": 3})

    def stop(event: ProgressEvent) -> None:
        if event.stage == "fit" and event.step >= 1:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        encode(clip, str(out / "a.nvp"), opts, progress=stop)
    assert os.path.isdir(out / "a.nvp.ckpt") and not os.path.exists(out / "a.nvp")
    m = batch(str(src), str(out), opts, ray="off")
    row = m["jobs"][0]
    assert row["status"] == "encoded" and row["resumed"] is True
    assert not os.path.exists(out / "a.nvp.ckpt")
    segs = describe(str(out / "a.nvp"))
    assert verify_nvp(str(out / "a.nvp"))["ok"] and segs["encode"]["settings"]["epochs"] == 3


def test_damaged_output_is_encoded_again(tmp_path):
    src, _, out = _one_clip(tmp_path)
    batch(str(src), str(out), EncodeOptions(**FAST), ray="off")
    data = (out / "a.nvp").read_bytes()
    (out / "a.nvp").write_bytes(data[: len(data) // 2])
    m = batch(str(src), str(out), EncodeOptions(**FAST), ray="off")
    row = m["jobs"][0]
    assert row["status"] == "encoded" and "damaged output" in row["replaced"]
    assert verify_nvp(str(out / "a.nvp"))["ok"]


def test_list_with_frame_ranges_and_png_folders(tmp_path):
    from nvcodec.video.png import write_png

    src, clip, out = _one_clip(tmp_path, frames=6)
    pngs = src / "shots"
    pngs.mkdir()
    for i, f in enumerate(synthetic_frames(3, 24, 32, seed=3)):
        write_png(pngs / f"f{i}.png", f)
    lst = tmp_path / "list.csv"
    lst.write_text(f"path,frames\n# a comment\n{clip},0:3\nin/a.mp4,3:6\nin/shots\n")
    items = collect_inputs(str(lst), str(out))
    assert [os.path.basename(i.output) for i in items] == ["a.0-3.nvp", "a.3-6.nvp", "shots.nvp"]
    assert items[1].frames == (3, 6) and items[2].frames is None
    folder_items = collect_inputs(str(src), str(out))
    assert sorted(os.path.basename(i.output) for i in folder_items) == ["a.nvp", "shots.nvp"]
    m = batch(str(lst), str(out), EncodeOptions(**FAST), ray="off")
    assert [r["status"] for r in m["jobs"]] == ["encoded"] * 3
    assert [describe(r["output"])["video"]["source_frames"] for r in m["jobs"]] == [[0, 3], [3, 6], [0, 3]]
    lst.write_text(f"{clip}\n{clip}\n")
    with pytest.raises(UsageError, match="both be written"):
        collect_inputs(str(lst), str(out))
    lst.write_text(f"{clip},0:3,extra\n")
    with pytest.raises(UsageError, match="row 1"):
        collect_inputs(str(lst), str(out))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no videos"):
        collect_inputs(str(tmp_path / "empty"), str(out))


def test_tasks_attach_then_batch_infer_jsonl(tmp_path):
    src, _, out = _one_clip(tmp_path)
    batch(str(src), str(out), EncodeOptions(**FAST), ray="off")
    m = batch(str(src), str(out), EncodeOptions(**FAST), tasks=["resnet50"], attach_options=TINY_ATTACH, ray="off")
    row = m["jobs"][0]
    assert row["status"] == "attached" and row["tasks"] == ["resnet50"]
    again = batch(str(src), str(out), EncodeOptions(**FAST), tasks=["resnet50"], attach_options=TINY_ATTACH, ray="off")
    assert again["jobs"][0]["status"] == "skipped"
    (out / "broken.nvp").write_bytes(b"NVP not really")
    r = batch_infer(str(out), ["resnet50"], weights="random-tiny", device="cpu", ray="off")
    lines = [json.loads(x) for x in open(r["output"])]
    good = [x for x in lines if x["file"].endswith("a.nvp")]
    assert [x["frame"] for x in good] == [0, 1, 2, 3]
    assert all(x["task"] == "resnet50" and x["weights_random"] and len(x["predictions"]) == 5 for x in good)
    bad = [x for x in lines if x["file"].endswith("broken.nvp")]
    assert len(bad) == 1 and bad[0]["exit_code"] == 3 and bad[0]["error"]
    assert r["summary"]["files"] == 2 and r["summary"]["ok"] == 1 and r["summary"]["exit_code"] == 3
    assert r["summary"]["lines"] == len(lines) == 5


def test_bad_arguments():
    with pytest.raises(UsageError, match="--workers"):
        runner.check_ray_options("auto", 0, 1.0, 0.0)
    with pytest.raises(UsageError, match="--cpus-per-job"):
        runner.check_ray_options("auto", None, 0.0, 0.0)
    with pytest.raises(UsageError, match="resumes by itself"):
        batch("x", "y", EncodeOptions(resume=True))


def test_progress_bar_shows_counts_on_a_terminal():
    from nvcodec_cli.progress import ProgressBar

    buf = io.StringIO()
    bar = ProgressBar(buf, enabled=True)
    bar(ProgressEvent("batch", 3, 3, {"done": 2, "failed": 1, "running": 0, "eta": 0.0}))
    assert "3/3" in buf.getvalue() and "done 2" in buf.getvalue() and "failed 1" in buf.getvalue()
    quiet = io.StringIO()
    ProgressBar(quiet)(ProgressEvent("batch", 1, 3, {"done": 1}))
    assert quiet.getvalue() == ""


def test_cli_batch_json_and_exit_code(clips, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "NVCODEC_DEBUG": ""}
    cmd = [sys.executable, "-m", "nvcodec_cli.main", "batch", str(clips), str(out), "--params", "3k", "--epochs", "2",
           "--psnr", "99", "--device", "cpu", "--ray", "off", "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 4, p.stderr
    m = json.loads(p.stdout)
    assert m["summary"]["encoded"] == 2 and m["summary"]["failed"] == 1
    assert "ran the jobs one after another" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run([sys.executable, "-m", "nvcodec_cli.main", "batch-infer", str(out), "--task", "resnet50",
                        "--ray", "off"], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 6, p.stderr
    assert "2 files: 0 ok, 2 failed" in p.stdout
    p = subprocess.run([sys.executable, "-m", "nvcodec_cli.main", "batch", str(tmp_path / "nope"), str(out)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 2 and p.stderr.strip().startswith("nvcodec: error:")


def test_ctrl_c_stops_the_batch_and_keeps_the_record(clips, tmp_path, monkeypatch):
    import nvcodec.codec.encode as enc

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(enc, "encode", interrupted)
    out = tmp_path / "out"
    with pytest.raises(Interrupted):
        batch(str(clips), str(out), EncodeOptions(**FAST), ray="off")
    m = json.load(open(out / "manifest.json"))
    assert [r["status"] for r in m["jobs"]] == ["interrupted", "pending", "pending"]
    assert m["jobs"][0]["exit_code"] == 130 and m["summary"]["exit_code"] == 130


def test_cuda_on_ray_needs_gpus_per_job(clips, tmp_path):
    pytest.importorskip("ray")
    with pytest.raises(UsageError, match="--gpus-per-job"):
        batch(str(clips), str(tmp_path / "out"), EncodeOptions(**{**FAST, "device": "cuda"}), ray="local")

"""The `nvcodec` command as a user meets it: exit codes, one-line errors, JSON on stdout."""

import json
import os

import subprocess
import sys

import pytest

from conftest import ROOT, synthetic_frames, write_clip

GOLDEN = os.path.join(ROOT, "fixtures", "golden-v1.nvp")
ENCODE_FAST = ["--params", "6k", "--epochs", "20", "--psnr", "99", "--device", "cpu", "--seed", "0"]


def nv(*args, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NVCODEC_DEBUG": ""}
    p = subprocess.run([sys.executable, "-m", "nvcodec_cli.main", *args], capture_output=True, text=True, cwd=cwd, env=env,
                       timeout=300)
    return p.returncode, p.stdout, p.stderr


def assert_clean_error(rc, err, code):
    assert rc == code, err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) >= 1
    assert lines[-1].startswith(("nvcodec: error:", "Error:", "nvcodec: interrupted"))


@pytest.fixture(scope="module")
def small_nvp(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    clip = write_clip(str(d / "c.mp4"), synthetic_frames(4, 24, 40))
    out = str(d / "c.nvp")
    rc, so, se = nv("encode", clip, out, *ENCODE_FAST, "--json")
    assert rc == 0, se
    return clip, out, json.loads(so)


def test_help_documents_exit_codes():
    rc, out, _ = nv("--help")
    assert rc == 0
    for code in ("0", "1", "2", "3", "4", "5", "6", "130"):
        assert f"  {code}" in out
    for cmd in ("encode", "info", "verify", "view", "tasks", "attach", "infer"):
        assert cmd in out


def test_encode_json_summary(small_nvp):
    _, out, s = small_nvp
    for key in ("output", "bytes", "bpp", "psnr", "psnr_min", "ssim", "params", "frames", "width", "height", "encode_seconds"):
        assert key in s
    assert s["bytes"] == os.path.getsize(out)


def test_info_json_schema(small_nvp):
    _, out, _ = small_nvp
    rc, so, se = nv("info", out, "--json")
    assert rc == 0, se
    r = json.loads(so)
    for key in ("format", "video", "model", "tasks", "sections"):
        assert key in r
    assert r["video"]["width"] == 40 and r["video"]["frames"] == 4
    assert r["model"]["blocks"] == len(r["model"]["strides"])
    assert r["video"]["bpp"] == pytest.approx(os.path.getsize(out) * 8 / (40 * 24 * 4))
    assert {s["name"] for s in r["sections"]} >= {"video", "model", "head", "embeddings", "provenance", "block/0"}
    rc, so, _ = nv("info", out)
    assert rc == 0 and "sections:" in so and "PSNR" in so


def test_verify_ok_and_damaged(small_nvp, tmp_path):
    _, out, _ = small_nvp
    rc, so, se = nv("verify", out)
    assert rc == 0, se
    bad = tmp_path / "bad.nvp"
    data = bytearray(open(out, "rb").read())
    data[200] ^= 0xFF
    bad.write_bytes(bytes(data))
    rc, so, se = nv("verify", str(bad))
    assert_clean_error(rc, se, 3)
    assert "section '" in se and "at bytes [" in se and "DAMAGED" in so
    rc, so, se = nv("verify", "--json", str(bad))
    assert_clean_error(rc, se, 3)
    report = json.loads(so)
    assert report["ok"] is False and report["problem_count"] >= 1
    assert all(p["message"] and (p.get("section") or p.get("region")) for p in report["problems"])
    rc, so, _ = nv("verify", "--json", out)
    assert rc == 0 and json.loads(so)["ok"] is True and json.loads(so)["problems"] == []


def test_not_an_nvp_file(tmp_path):
    p = tmp_path / "x.nvp"
    p.write_bytes(b"hello world, not a container" * 10)
    for cmd in ("info", "verify"):
        rc, _, se = nv(cmd, str(p))
        assert_clean_error(rc, se, 3)
    rc, _, se = nv("view", str(p), "--sheet", str(tmp_path / "s.png"))
    assert_clean_error(rc, se, 3)


def test_usage_errors(tmp_path, small_nvp):
    clip, out, _ = small_nvp
    rc, _, se = nv("info", str(tmp_path / "missing.nvp"))
    assert_clean_error(rc, se, 2)
    rc, _, se = nv("encode", clip, str(tmp_path / "o.nvp"), "--frames", "3:1")
    assert_clean_error(rc, se, 2)
    rc, _, se = nv("encode", clip, str(tmp_path / "o.nvp"), "--params", "1.5Q")
    assert_clean_error(rc, se, 2)
    rc, _, se = nv("view", out)
    assert_clean_error(rc, se, 2)
    rc, _, se = nv("view", out, "--frames", "0:99", "--sheet", str(tmp_path / "s.png"))
    assert_clean_error(rc, se, 2)
    rc, _, se = nv("bogus-command")
    assert rc == 2


def test_bad_video_input(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(os.urandom(1000))
    out = tmp_path / "o.nvp"
    rc, _, se = nv("encode", str(bad), str(out), *ENCODE_FAST)
    assert_clean_error(rc, se, 4)
    assert not out.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, se = nv("encode", str(empty), str(out), *ENCODE_FAST)
    assert_clean_error(rc, se, 4)


def test_view_outputs(small_nvp, tmp_path):
    clip, out, _ = small_nvp
    rc, so, se = nv("view", out, "-o", str(tmp_path / "v.mp4"), "--sheet", str(tmp_path / "s.png"), "--json")
    assert rc == 0, se
    assert os.path.getsize(tmp_path / "v.mp4") > 0 and os.path.getsize(tmp_path / "s.png") > 0
    rc, so, se = nv("view", out, "-o", str(tmp_path / "v.y4m"), "--frames", "1:3")
    assert rc == 0, se
    rc, so, se = nv("view", out, "-o", str(tmp_path / "pngs") + "/")
    assert rc == 0, se
    assert len(os.listdir(tmp_path / "pngs")) == 4
    rc, so, se = nv("view", out, "--compare", clip, "--sheet", str(tmp_path / "cmp.png"), "--json")
    assert rc == 0, se
    c = json.loads(so)["compare"]
    assert len(c["psnr_per_frame"]) == 4 and c["psnr"] > 15
    rc, so, se = nv("view", out, "--layer", "0", "--sheet", str(tmp_path / "l.png"))
    assert rc == 0, se
    rc, _, se = nv("view", out, "--layer", "99", "--sheet", str(tmp_path / "l2.png"))
    assert_clean_error(rc, se, 2)


def test_golden_file_info():
    if not os.path.exists(GOLDEN):
        pytest.skip("golden file not generated")
    rc, so, se = nv("verify", GOLDEN)
    assert rc == 0, se


def test_tasks_lists_both():
    rc, so, se = nv("tasks", "--json")
    assert rc == 0, se
    names = {t["name"] for t in json.loads(so)}
    assert {"resnet50", "detr"} <= names


def test_ctrl_c_during_encode_then_resume(tmp_path):
    import signal
    import time

    clip = write_clip(str(tmp_path / "c.mp4"), synthetic_frames(4, 24, 40))
    out = tmp_path / "c.nvp"
    args = [sys.executable, "-m", "nvcodec_cli.main", "encode", clip, str(out), "--params", "6k", "--epochs", "100000",
            "--psnr", "99", "--device", "cpu"]
    # A test run started in the background by a non-interactive shell ignores SIGINT, and so would the
    # encode it starts (an ignored signal stays ignored across exec): give the encode the default.
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "NVCODEC_DEBUG": ""},
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    ckpt = str(out) + ".ckpt"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (os.path.isdir(ckpt) and p.poll() is None):
        time.sleep(0.2)
    time.sleep(3)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert not out.exists() and os.path.isdir(ckpt)
    rc, so, se = nv("encode", clip, str(out), "--params", "6k", "--epochs", "3", "--psnr", "99", "--device", "cpu",
                    "--resume", "--json")
    assert rc == 0, se
    assert json.loads(so)["bytes"] == os.path.getsize(out) and not os.path.exists(ckpt)


def test_stream_and_frames_out_of_range_are_both_usage_errors(small_nvp, tmp_path):
    clip, out, _ = small_nvp
    for extra in (["--stream", "3"], ["--frames", "0:99"]):
        rc, _, se = nv("encode", clip, str(tmp_path / "x.nvp"), *ENCODE_FAST, *extra)
        assert_clean_error(rc, se, 2)
        assert not (tmp_path / "x.nvp").exists()
    rc, _, se = nv("view", out, "--compare", clip, "--stream", "2")
    assert_clean_error(rc, se, 2)


def test_view_compare_uses_the_stream_and_range_recorded_at_encode(tmp_path):
    from test_video_io import _two_video_streams

    _, b = _two_video_streams(tmp_path / "two.mkv")
    out = str(tmp_path / "s1.nvp")
    rc, _, se = nv("encode", str(tmp_path / "two.mkv"), out, "--stream", "1", "--frames", "1:3", *ENCODE_FAST)
    assert rc == 0, se
    rc, so, se = nv("view", out, "--compare", str(tmp_path / "two.mkv"), "--json")
    assert rc == 0, se
    report = json.loads(so)["compare"]
    assert report["frames"] == [0, 2] and report["psnr"] > 10


def test_encode_entropy_none_writes_a_format_1_0_file(small_nvp, tmp_path):
    """`--entropy none` stores raw bundles (no required feature) that decode to the same frames."""
    clip, out, _ = small_nvp
    raw = str(tmp_path / "raw.nvp")
    rc, _, se = nv("encode", clip, raw, *ENCODE_FAST, "--entropy", "none", "--json")
    assert rc == 0, se
    from nvcodec.container import NvpReader
    import nvcodec

    with NvpReader(raw) as r:
        assert r.required_features == []
        assert r.read_msgpack("provenance")["settings"]["entropy"] == "none"
    with NvpReader(out) as r:
        assert r.read_msgpack("provenance")["settings"]["entropy"] == "rans"
    with nvcodec.open(raw) as a, nvcodec.open(out) as b:
        assert (a.frames([0, 3]) == b.frames([0, 3])).all()
    rc, _, se = nv("encode", clip, str(tmp_path / "x.nvp"), *ENCODE_FAST, "--entropy", "zstd")
    assert_clean_error(rc, se, 2)

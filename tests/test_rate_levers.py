"""benchmarks/rate_levers.py: argument errors, and a tiny run whose variants share one model plan."""

import importlib.util
import json
import os

import pytest

from conftest import ROOT, synthetic_frames, write_clip

BENCH = os.path.join(ROOT, "benchmarks")


@pytest.fixture
def levers(monkeypatch):
    monkeypatch.syspath_prepend(BENCH)  # the script imports rd.py's helpers, as it does when run from there
    spec = importlib.util.spec_from_file_location("rate_levers_bench", os.path.join(BENCH, "rate_levers.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bad_arguments_exit_2_without_a_traceback(levers, tmp_path, capsys):
    clip = write_clip(str(tmp_path / "c.mp4"), synthetic_frames(4, 32, 32))
    for args in (["--variants", "nosuch"], ["--sizes", "x"], ["--sizes", "0"], ["--epochs", "0"],
                 ["--frames", "a:b"], ["--report-only"]):
        assert levers.main(["--clips", clip, "--out", str(tmp_path / "o"), *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err
    assert not os.path.exists(tmp_path / "o" / "rate_levers.json")


def test_tiny_run_same_plan_per_size_entropy_coding_keeps_the_frames(levers, tmp_path):
    clip = write_clip(str(tmp_path / "tiny.mp4"), synthetic_frames(6, 48, 64))
    out = tmp_path / "res"
    args = ["--clips", clip, "--frames", "0:6", "--scale", "1", "--epochs", "30", "--sizes", "1,3",
            "--variants", "ptq8-zstd,ptq8-rans,qat6", "--threads", "1", "--out", str(out)]
    assert levers.main(args) == 0
    data = json.loads((out / "rate_levers.json").read_text())
    (ckey, clip_rec), = data["clips"].items()
    pts = clip_rec["points"]
    assert sorted(pts) == sorted(f"{v}|{s}" for v in ("ptq8-zstd", "ptq8-rans", "qat6") for s in ("1", "3"))
    for s in ("1", "3"):
        zstd, rans, qat = pts[f"ptq8-zstd|{s}"], pts[f"ptq8-rans|{s}"], pts[f"qat6|{s}"]
        assert "error" not in zstd and "error" not in rans and "error" not in qat
        assert zstd["params"] == rans["params"] == qat["params"]  # one model plan per size
        assert rans["psnr"] == zstd["psnr"]  # the same fit, coded two ways
        assert qat["bpp"] < zstd["bpp"]  # 6/5 bits instead of 8/6
    assert pts["ptq8-zstd|3"]["params"] > pts["ptq8-zstd|1"]["params"]
    an = clip_rec["analysis"]
    assert an["ptq8-rans"]["vs_step"]["anchor"] == "ptq8-zstd"
    assert an["qat6"]["vs_baseline"]["anchor"] == "ptq8-zstd"
    md = (out / "RATE_LEVERS.md").read_text()
    assert ckey in md and "| qat6 |" in md

    assert levers.main(args + ["--resume"]) == 0  # every point is there: nothing is encoded again
    again = json.loads((out / "rate_levers.json").read_text())["clips"][ckey]["points"]
    assert {k: p["encode_seconds"] for k, p in again.items()} == {k: p["encode_seconds"] for k, p in pts.items()}
    md = (out / "RATE_LEVERS.md").read_text()
    (out / "RATE_LEVERS.md").unlink()
    assert levers.main(["--report-only", "--out", str(out)]) == 0
    assert (out / "RATE_LEVERS.md").read_text() == md

"""The rate-distortion benchmark's maths (BD-rate, CRF matching) and a tiny end-to-end run of benchmarks/rd.py."""

import importlib.util
import json
import math
import os

import pytest

from nvcodec.bench.bdrate import (bd_quality, bd_rate, msssim_db, pchip_eval, pchip_integral, quality_at_rate,
                                  rd_front, seconds_to_reach)
from nvcodec.bench.crf import match_bpp
from nvcodec.errors import UsageError

from conftest import ROOT, synthetic_frames, write_clip

RATES = [0.02, 0.04, 0.08, 0.16]
PSNR = [30.0, 33.1, 35.6, 37.4]


@pytest.mark.parametrize("factor", [0.8, 1.25, 0.5])
def test_bd_rate_of_a_curve_shifted_by_a_constant_rate_factor_is_that_factor(factor):
    r = bd_rate(RATES, PSNR, [x * factor for x in RATES], PSNR)
    assert r["bd_rate_pct"] == pytest.approx(100 * (factor - 1), abs=1e-9)
    assert r["overlap"] == [30.0, 37.4] and r["monotone"]


def test_bd_rate_is_antisymmetric_in_log_rate():
    test_r, test_q = [0.03, 0.05, 0.09, 0.2], [31.0, 33.5, 35.0, 38.0]
    ab = bd_rate(RATES, PSNR, test_r, test_q)["bd_rate_pct"]
    ba = bd_rate(test_r, test_q, RATES, PSNR)["bd_rate_pct"]
    assert (1 + ab / 100) * (1 + ba / 100) == pytest.approx(1.0, abs=1e-12)
    assert ab != pytest.approx(0.0, abs=1.0)


def test_bd_rate_matches_a_dense_numerical_integral():
    test_r, test_q = [0.025, 0.05, 0.07, 0.3], [29.0, 32.5, 36.0, 39.0]
    r = bd_rate(RATES, PSNR, test_r, test_q)
    lo, hi = r["overlap"]
    n = 20000
    qs = [lo + (hi - lo) * (i + 0.5) / n for i in range(n)]
    la = [pchip_eval(PSNR, [math.log(x) for x in RATES], q) for q in qs]
    lt = [pchip_eval(test_q, [math.log(x) for x in test_r], q) for q in qs]
    expected = 100 * (math.exp(sum(b - a for a, b in zip(la, lt)) / n) - 1)
    assert r["bd_rate_pct"] == pytest.approx(expected, rel=1e-6)


def test_pchip_integral_is_exact_for_a_line_and_the_interpolant_is_monotone():
    x, y = [0.0, 1.0, 3.0, 4.0], [1.0, 2.0, 4.0, 5.0]  # a line: PCHIP reproduces it
    assert pchip_integral(x, y, 0.5, 3.5) == pytest.approx(0.5 * (1.5 + 4.5) * 3.0)
    x, y = [0.0, 1.0, 2.0, 3.0], [0.0, 0.1, 5.0, 5.1]  # steps: no overshoot between knots
    vals = [pchip_eval(x, y, t / 100) for t in range(301)]
    assert all(b >= a - 1e-12 for a, b in zip(vals, vals[1:]))
    assert max(vals) <= 5.1 + 1e-12


def test_bd_rate_without_overlap_or_with_too_few_points_is_null_with_a_reason():
    r = bd_rate(RATES, PSNR, [0.5, 1.0], [40.0, 42.0])
    assert r["bd_rate_pct"] is None and "do not overlap" in r["reason"]
    r = bd_rate(RATES, PSNR, [0.05], [33.0])
    assert r["bd_rate_pct"] is None and "at least 2" in r["reason"]


def test_dominated_points_leave_the_curves():
    """A point another beats (no more rate, more quality) is not on the RD front: it changes no BD figure."""
    assert rd_front([0.07, 0.068, 0.16, 0.2, 0.1], [28.5, 28.7, 33.1, 32.0, 28.7]) == [(0.068, 28.7), (0.16, 33.1)]
    extra_r, extra_q = RATES + [0.041, 0.2], PSNR + [32.0, 37.0]  # both dominated
    test_r, test_q = [0.03, 0.05, 0.09, 0.2], [31.0, 33.5, 35.0, 38.0]
    clean = bd_rate(RATES, PSNR, test_r, test_q)
    noisy = bd_rate(extra_r, extra_q, test_r, test_q)
    assert noisy["bd_rate_pct"] == pytest.approx(clean["bd_rate_pct"], abs=1e-12)
    assert noisy["dominated"] == {"anchor": 2, "test": 0} and not noisy["monotone"]
    assert bd_quality(extra_r, extra_q, test_r, test_q)["bd_quality"] == pytest.approx(
        bd_quality(RATES, PSNR, test_r, test_q)["bd_quality"], abs=1e-12)
    assert quality_at_rate(extra_r, extra_q, 0.06) == pytest.approx(quality_at_rate(RATES, PSNR, 0.06))


def test_bd_quality_of_a_constant_db_shift_is_that_shift():
    r = bd_quality(RATES, PSNR, RATES, [q + 1.5 for q in PSNR])
    assert r["bd_quality"] == pytest.approx(1.5)
    assert bd_quality(RATES, PSNR, [1.0, 2.0], [40.0, 41.0])["bd_quality"] is None


def test_quality_at_rate_interpolates_inside_and_refuses_outside():
    assert quality_at_rate(RATES, PSNR, 0.04) == pytest.approx(33.1)
    mid = quality_at_rate(RATES, PSNR, 0.05)
    assert 33.1 < mid < 35.6
    assert quality_at_rate(RATES, PSNR, 0.01) is None and quality_at_rate(RATES, PSNR, 0.2) is None


def test_seconds_to_reach_and_msssim_db():
    trace = [{"seconds": 5.0, "psnr": 25.0}, {"seconds": 9.0, "psnr": 30.2}, {"seconds": 20.0, "psnr": 32.0}]
    assert seconds_to_reach(trace, 30.0) == 9.0
    assert seconds_to_reach(trace, 33.0) is None
    assert msssim_db(0.99) == pytest.approx(20.0)
    assert msssim_db(1.0) == 100.0


def _codec(scale=0.6, slope=0.11):
    calls = []

    def bpp_at(crf):
        calls.append(crf)
        return scale * math.exp(-slope * crf)

    return bpp_at, calls


def test_match_bpp_float_crf_lands_within_tolerance():
    bpp_at, calls = _codec()
    m = match_bpp(bpp_at, 0.05, 0.0, 51.0, tolerance=0.02)
    assert m["within_tolerance"] and abs(m["bpp"] / 0.05 - 1) <= 0.0201
    assert m["encodes"] == len(calls) <= 8
    assert m["crf"] == pytest.approx(math.log(0.6 / 0.05) / 0.11, abs=0.3)


def test_match_bpp_seeded_by_a_curve_needs_fewer_encodes():
    bpp_at, calls = _codec()
    known = {c: 0.6 * math.exp(-0.11 * c) for c in (20.0, 26.0, 32.0)}
    m = match_bpp(bpp_at, 0.033, 0.0, 51.0, tolerance=0.02, known=known)
    assert m["within_tolerance"] and m["encodes"] <= 2


def test_match_bpp_integer_crf_picks_the_closest_integer():
    bpp_at, _ = _codec(slope=0.3)  # coarse: one CRF step changes the rate by 35%
    m = match_bpp(bpp_at, 0.01, 1.0, 63.0, integer=True, tolerance=0.02)
    assert float(m["crf"]).is_integer()
    best = min(range(1, 64), key=lambda c: abs(math.log(0.6 * math.exp(-0.3 * c) / 0.01)))
    assert m["crf"] == best and not m["within_tolerance"]


def test_match_bpp_out_of_range_target_stops_at_the_range_end():
    bpp_at, _ = _codec()
    m = match_bpp(bpp_at, 5.0, 0.0, 51.0)  # more than CRF 0 gives
    assert m["crf"] == 0.0 and not m["within_tolerance"]


def _rd_module():
    spec = importlib.util.spec_from_file_location("rd_bench", os.path.join(ROOT, "benchmarks", "rd.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_rd_rejects_bad_arguments_with_exit_code_2(tmp_path, capsys):
    rd = _rd_module()
    clip = write_clip(str(tmp_path / "c.mp4"), synthetic_frames(4, 32, 32))
    for args in (["--kinds", "nosuch", "--epochs", "1"], ["--epochs", "1", "--codecs", "vp8"], ["--kinds", "hnerv"],
                 ["--epochs", "1", "--bpps", "x"], ["--epochs", "1", "--scale", "2"],
                 ["--epochs", "1", "--variant", "v=nosuch:weight_bits=5"], ["--epochs", "1", "--variant", "novalue"],
                 ["--epochs", "1", "--variant", "v=hinerv:bits=5"], ["--epochs", "1", "--variant", "v=hinerv:qat=x"],
                 ["--epochs", "1", "--variant", "hnerv=hinerv:weight_bits=5"],
                 ["--epochs", "1", "--variant", "v=hinerv:qat=0.3", "--variant", "v=hinerv:qat=0.5"]):
        assert rd.main([clip, "--out", str(tmp_path / "o"), *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err
    assert rd.main([clip, "--out", str(tmp_path / "o"), "--epochs", "1", "--frames", "0:99"]) == 2  # past the end
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    assert rd.main([str(bad), "--out", str(tmp_path / "o"), "--epochs", "1"]) == 4
    assert "Traceback" not in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o" / "rd.json")


def test_rd_end_to_end_tiny(tmp_path):
    rd = _rd_module()
    clip = write_clip(str(tmp_path / "tiny.mp4"), synthetic_frames(6, 48, 64))
    out = tmp_path / "res"
    args = [clip, "--frames", "0:6", "--kinds", "hnerv", "--codecs", "x264", "--bpps", "1,2,4", "--epochs", "2",
            "--crfs", "10,25,40", "--threads", "1", "--out", str(out)]
    assert rd.main(args) == 0
    data = json.loads((out / "rd.json").read_text())
    (ckey, clip_rec), = data["clips"].items()
    assert clip_rec["frames"] == [0, 6] and clip_rec["width"] == 64
    pts = clip_rec["nvcodec"]
    assert sorted(pts) == [f"hnerv|epochs=2|bpp={b}" for b in ("1", "2", "4")]
    for p in pts.values():
        assert p["epochs"] == 2 and p["bpp"] > 0 and 0 < p["psnr"] < 100 and 0 < p["ms_ssim"] <= 1
        assert p["trace"][-1]["final"] and p["encode_seconds"] > 0 and p["load_start"] is not None
        assert p["restarts"] == 0
    x264 = clip_rec["codecs"]["x264"]
    assert x264["available"] and x264["via"] == "pyav" and x264["preset"] == "medium"
    assert sum(1 for p in x264["points"].values() if p.get("curve")) == 3
    assert set(x264["matches"]) == set(pts)
    for key, m in x264["matches"].items():
        matched = x264["points"][f"crf={m['crf']:g}"]
        assert key in matched["matched_to"] and matched["psnr"] > 0
    row = data["analysis"]["clips"][ckey]["modes"]["epochs=2"]["hnerv"]
    bd = row["vs"]["x264"]["psnr"]
    assert bd["bd_rate_pct"] is not None or bd["reason"]
    assert "gap_x264" in row and set(row["seconds_to_psnr"]) == {"30", "33"}
    md = (out / "RD.md").read_text()
    assert "BD-rate" in md and "Published reference figures" in md and ckey in md

    stamp = {k: p["started"] for k, p in pts.items()}
    assert rd.main(args + ["--resume"]) == 0  # everything is there: nothing is encoded again
    again = json.loads((out / "rd.json").read_text())["clips"][ckey]["nvcodec"]
    assert {k: p["started"] for k, p in again.items()} == stamp
    stored = json.loads((out / "rd.json").read_text())  # a point re-run at another rate is matched again
    stored["clips"][ckey]["codecs"]["x264"]["matches"]["hnerv|epochs=2|bpp=1"]["target_bpp"] = 123.0
    (out / "rd.json").write_text(json.dumps(stored))
    assert rd.main(args + ["--resume"]) == 0
    rematched = json.loads((out / "rd.json").read_text())["clips"][ckey]
    assert rematched["codecs"]["x264"]["matches"]["hnerv|epochs=2|bpp=1"]["target_bpp"] == pts["hnerv|epochs=2|bpp=1"]["bpp"]
    holders = [q for q in rematched["codecs"]["x264"]["points"].values() if "hnerv|epochs=2|bpp=1" in q["matched_to"]]
    assert len(holders) == 1
    md = (out / "RD.md").read_text()
    (out / "RD.md").unlink()
    assert rd.main(["--report-only", "--out", str(out)]) == 0
    assert (out / "RD.md").read_text() == md


def test_rd_variant_is_its_own_curve_encoded_with_its_options(tmp_path):
    rd = _rd_module()
    assert rd.parse_variant("h54=hinerv:weight_bits=5,embed_bits=4,bit_alloc=false") == (
        "h54", "hinerv", {"weight_bits": 5, "embed_bits": 4, "bit_alloc": False})
    assert rd.parse_variant("nofine=hinerv:fine_grid=OFF") == ("nofine", "hinerv", {"fine_grid": "off"})
    with pytest.raises(UsageError):
        rd.parse_variant("v=hinerv:fine_grid=maybe")
    clip = write_clip(str(tmp_path / "tiny.mp4"), synthetic_frames(4, 32, 48))
    out = tmp_path / "res"
    assert rd.main([clip, "--kinds", "hinerv", "--variant", "h54=hinerv:weight_bits=5,embed_bits=4", "--codecs", "",
                    "--bpps", "2", "--epochs", "1", "--threads", "1", "--out", str(out)]) == 0
    data = json.loads((out / "rd.json").read_text())
    (ckey, c), = data["clips"].items()
    base, var = c["nvcodec"]["hinerv|epochs=1|bpp=2"], c["nvcodec"]["h54|epochs=1|bpp=2"]
    assert "base_kind" not in base and var["base_kind"] == "hinerv" and var["options"] == {"weight_bits": 5, "embed_bits": 4}
    assert var["psnr"] > 0 and var["bytes"] != base["bytes"]  # other bit depths: another file
    assert data["runs"][-1]["conditions"]["variants"] == {"h54": {"kind": "hinerv",
                                                                  "options": {"weight_bits": 5, "embed_bits": 4}}}
    assert "h54 (hinerv: weight_bits=5, embed_bits=4)" in (out / "RD.md").read_text()


def test_rd_bunny_only_runs_just_the_fixed_size_points(tmp_path):
    rd = _rd_module()
    clip = write_clip(str(tmp_path / "tiny_bunny.mp4"), synthetic_frames(4, 32, 48))
    out = tmp_path / "res"
    assert rd.main([clip, "--kinds", "hinerv", "--codecs", "", "--epochs", "1", "--bunny-params", "6k",
                    "--bunny-only", "--threads", "1", "--out", str(out)]) == 0
    data = json.loads((out / "rd.json").read_text())
    assert data["clips"] == {}
    (key, rec), = data["bunny"].items()
    assert key == "hinerv|params=6k|epochs=1|scale=1" and rec["psnr"] > 0 and rec["epochs"] == 1
    assert rd.main([clip, "--epochs", "1", "--bunny-only", "--out", str(out)]) == 2  # needs --bunny-params


def _synthetic_rd(factor):
    """One clip: hnerv and a new kind at `factor` x hnerv's rate for the same PSNR, x264 better than both."""
    def pt(kind, mode, bpp, psnr, trace):
        return {"kind": kind, "mode": mode, "target_bpp": bpp, "bpp": bpp, "psnr": psnr, "ms_ssim": 1 - 10 ** (-psnr / 20),
                "epochs": 10, "encode_seconds": 100.0, "trace": trace}
    nv = {}
    for mode in ("epochs=300", "time=600s"):
        for b, q in zip((0.03, 0.05, 0.1), (28.0, 30.5, 33.5)):
            nv[f"hnerv|{mode}|bpp={b:g}"] = pt("hnerv", mode, b, q, [{"seconds": 50.0, "psnr": q}])
            nv[f"newkind|{mode}|bpp={b:g}"] = pt("newkind", mode, b * factor, q, [{"seconds": 20.0, "psnr": q}])
    x264 = {f"crf={c}": {"crf": c, "bpp": b, "psnr": q, "ms_ssim": 1 - 10 ** (-q / 20), "curve": True, "matched_to": []}
            for c, b, q in ((38, 0.02, 31.0), (32, 0.04, 34.0), (26, 0.08, 37.0), (20, 0.16, 40.0))}
    x264["crf=32"]["matched_to"] = ["hnerv|epochs=300|bpp=0.05"]
    clip = {"clip": "c.mp4", "frames": [0, 96], "width": 64, "height": 48, "scale": 1.0, "source": "x",
            "nvcodec": nv, "codecs": {"x264": {"available": True, "via": "pyav", "preset": "medium", "points": x264}}}
    return {"schema": "nvcodec-rd/1", "clips": {"c|0:96|scale=1": clip}}


def test_rd_analysis_bd_vs_hnerv_gap_speed_losses_and_targets():
    from nvcodec.bench.rdreport import analyse, render_markdown

    data = _synthetic_rd(0.5)
    a = analyse(data)
    m = a["clips"]["c|0:96|scale=1"]["modes"]
    row = m["epochs=300"]["newkind"]
    assert row["vs"]["hnerv"]["psnr"]["bd_rate_pct"] == pytest.approx(-50.0, abs=1e-6)
    assert row["vs"]["x264"]["psnr"]["bd_rate_pct"] > 0  # x264 still better
    hn_gap = m["epochs=300"]["hnerv"]["gap_x264"]
    assert hn_gap["gap_db"] == pytest.approx(quality_at_rate([0.02, 0.04, 0.08, 0.16], [31, 34, 37, 40], 0.05) - 30.5)
    assert row["gap_x264"]["gap_db"] < hn_gap["gap_db"] and row["gap_x264"]["vs_hnerv_gap"] is not None
    assert row["seconds_to_psnr"]["30"]["fastest_s"] == 20.0 and row["seconds_to_psnr"]["33"]["fastest_s"] == 20.0
    assert m["epochs=300"]["hnerv"]["seconds_to_psnr"]["33"]["fastest_s"] == 50.0
    assert any("x264" in x and "30.50" in x for x in a["clips"]["c|0:96|scale=1"]["losses"])
    t = {(r["mode"], r["kind"]): r for r in a["targets"]}
    assert t[("epochs=300", "newkind")]["bd_met"] is True and t[("time=600s", "newkind")]["limit_pct"] == -25.0
    assert _synthetic_rd(0.7) and analyse(_synthetic_rd(0.7))["targets"][0]["bd_met"] is False  # -30% < 40%
    md = render_markdown(data, a)
    assert "-50.0%" in md and "newkind" in md
    runs = [{"started": f"2026-12-0{i}T00:00:00+00:00", "conditions": {"kinds": ["newkind"], "bpps": [0.05, 0.1],
             "modes": [mode], "scale": 0.25, "threads": i, "device": "cpu"}} for i, mode in ((1, "epochs=300"),
                                                                                           (2, "time=600s"))]
    md = render_markdown({**data, "runs": runs}, a)
    assert "## Runs" in md and "| 2026-12-01T00:00:00+00:00 | newkind | 0.05, 0.1 | epochs=300 | 0.25 | 1 | cpu |" in md
    assert "| 2026-12-02T00:00:00+00:00 | newkind | 0.05, 0.1 | time=600s | 0.25 | 2 | cpu |" in md


def test_the_gap_is_judged_at_hnervs_nearest_rate_when_it_does_not_reach_005():
    from nvcodec.bench.rdreport import analyse, render_markdown

    data = _synthetic_rd(0.5)
    c = data["clips"]["c|0:96|scale=1"]
    for key in [k for k in c["nvcodec"] if k.startswith("hnerv|")]:  # hnerv's plans start at 0.06 bpp
        c["nvcodec"][key]["bpp"] *= 2
    a = analyse(data)
    m = a["clips"]["c|0:96|scale=1"]["modes"]["epochs=300"]
    assert m["hnerv"]["gap_x264"]["gap_db"] is None and m["newkind"]["gap_x264"]["halved"] is None
    x264_at = quality_at_rate([0.02, 0.04, 0.08, 0.16], [31, 34, 37, 40], 0.06)
    hn, nk = m["hnerv"]["gap_x264_anchor_rate"], m["newkind"]["gap_x264_anchor_rate"]
    assert hn["bpp"] == pytest.approx(0.06) and hn["gap_db"] == pytest.approx(x264_at - 28.0)
    own = quality_at_rate([0.015, 0.025, 0.05], [28.0, 30.5, 33.5], 0.06)
    assert own is None and nk["gap_db"] is None and "do not span" in nk["reason"]  # newkind's top is 0.05
    for key in [k for k in c["nvcodec"] if k.startswith("newkind|")]:
        c["nvcodec"][key]["bpp"] *= 2  # now newkind spans 0.06 too: 28 dB at 0.03, 30.5 at 0.05, 33.5 at 0.1
    a = analyse(data)
    nk = a["clips"]["c|0:96|scale=1"]["modes"]["epochs=300"]["newkind"]["gap_x264_anchor_rate"]
    assert nk["gap_db"] == pytest.approx(x264_at - quality_at_rate([0.03, 0.05, 0.1], [28.0, 30.5, 33.5], 0.06))
    assert nk["halved"] is (nk["gap_db"] <= hn["gap_db"] / 2)
    t = {(r["mode"], r["kind"]): r for r in a["targets"]}[("epochs=300", "newkind")]
    assert t["gap_bpp"] == pytest.approx(0.06) and t["gap_halved"] is nk["halved"]
    assert t["anchor_gap_db"] == pytest.approx(hn["gap_db"])
    md = render_markdown(data, a)
    assert "(0.06)" in md and "hnerv's point nearest it, 0.0600 bpp" in md


def test_codec_route_and_the_ffmpeg_program_path(tmp_path):
    import shutil

    from nvcodec.bench.crf import codec_route, encode_cli, ffmpeg_cli_encoders
    from nvcodec.bench.paths import decode_codec_file
    from nvcodec.errors import UsageError

    assert codec_route("x264")["via"] == "pyav"
    with pytest.raises(UsageError):
        codec_route("vp8")
    if shutil.which("ffmpeg") is None or "libx264" not in ffmpeg_cli_encoders():
        pytest.skip("no ffmpeg program with libx264 here")
    frames = synthetic_frames(4, 32, 48)
    size = encode_cli(frames, str(tmp_path / "a.mp4"), 25.0, "libx264", crf=20, preset="medium", threads=1)
    assert size == os.path.getsize(tmp_path / "a.mp4") > 0
    assert decode_codec_file(str(tmp_path / "a.mp4"), 48, 32, 1).shape == (4, 32, 48, 3)
    with pytest.raises(UsageError, match="ffmpeg"):
        encode_cli(frames, str(tmp_path / "b.mp4"), 25.0, "nosuchencoder", crf=20)

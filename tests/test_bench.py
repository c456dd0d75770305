"""`nvcodec bench` end to end on a tiny clip with tiny models: schema, measured figures, FLOP counts."""

import importlib.util
import json
import math
import os

import pytest
import torch
from click.testing import CliRunner
from torch.utils.flop_counter import FlopCounterMode

import nvcodec
from nvcodec.bench.rate import parse_bpps, parse_codecs
from nvcodec.bench.report import render_report
from nvcodec.bench.run import BenchOptions, run_bench
from nvcodec.codec.encode import DEFAULT_KIND
from nvcodec.errors import UsageError, WeightsError
from nvcodec.codec.meta import read_routing
from nvcodec.tasks.runtime import build_runtime
from nvcodec_cli.bench import bench

from conftest import synthetic_frames, write_clip

TINY = dict(params=5e3, epochs=3, bpps=[], codecs=["x264"], weights="random-tiny", repeat=2, warmup=1,
            attach_epochs=2, random_access=2, device="cpu")
NULLABLE_GFLOPS = {"decode", "preprocess", "head"}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(str(tmp_path_factory.mktemp("bench") / "tiny.mp4"), synthetic_frames(6, 32, 48))


@pytest.fixture(scope="module")
def report(clip, tmp_path_factory):
    keep = str(tmp_path_factory.mktemp("kept"))
    events = []
    r = run_bench(clip, BenchOptions(tasks=["resnet50", "detr"], keep=keep, **TINY), progress=events.append)
    r["_events"] = [e.stage for e in events]
    return r


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def _check_latency(lat: dict, repeat: int) -> None:
    assert _positive(lat["total_ms"])
    assert len(lat["passes_ms"]) == repeat and all(_positive(v) for v in lat["passes_ms"])
    assert lat["stages_ms"] and all(_positive(v) for v in lat["stages_ms"].values())


def _check_gflops(g: dict, notes: dict) -> None:
    assert _positive(g["total"])
    for k, v in g.items():
        if v is None:
            assert k in NULLABLE_GFLOPS and k in notes
        else:
            assert _positive(v)
    counted = [v for k, v in g.items() if k != "total" and v is not None]
    assert g["total"] == pytest.approx(sum(counted))


def test_report_schema_and_measured_figures(report):
    json.dumps(report, allow_nan=False)
    assert report["schema"] == "nvcodec-bench/1"
    m = report["machine"]
    for key in ("cpu", "usable_cores", "torch", "torch_threads", "pyav", "ffmpeg", "libraries"):
        assert key in m
    c = report["conditions"]
    assert c["weights"] == {"resnet50": "random-tiny", "detr": "random-tiny"} and c["weights_random"] is True
    assert "random weights" in c["weights_note"]
    assert c["device"] == "cpu" and c["threads"] >= 1 and c["frames"] == [0, 6] and c["repeat"] == 2
    assert any(s.startswith("bench: ") for s in report["_events"]) and "fit" in report["_events"]

    (pt,) = report["rate_points"]
    nv, x264 = pt["nvcodec"], pt["codecs"]["x264"]
    for v in (nv["bpp"], nv["bytes"], nv["encode_seconds"], x264["bpp"], x264["bytes"], x264["encode_seconds"],
              nv["decode_speed"]["full"]["fps"], x264["decode_speed"]["fps"]):
        assert _positive(v)
    assert all(_positive(b["fps"]) for b in nv["decode_speed"]["blocks"])
    assert math.isfinite(nv["psnr"]) and 0 < nv["ms_ssim"] <= 1 and math.isfinite(x264["psnr"])
    assert set(pt["attach"]) == {"resnet50", "detr"} and all(_positive(a["seconds"]) for a in pt["attach"].values())

    for name, t in report["tasks"].items():
        assert t["weights_random"] and "random weights" in t["note"]
        assert t["adapter_params"] > 0 and t["adapter_bytes"] > 0
        paths = t["paths"]
        assert set(paths) == {"codec", "inr_pixels", "nvcodec"}
        for key, p in paths.items():
            _check_latency(p["latency_ms"], 2)
            _check_gflops(p["gflops"], p["gflops_notes"])
            assert p["agreement"]["fidelity"] <= 1.0 + 1e-6
        assert paths["codec"]["gflops"]["decode"] is None
        assert "null, not 0" in paths["codec"]["gflops_notes"]["decode"]
        assert _positive(paths["inr_pixels"]["gflops"]["decode"]) and _positive(paths["nvcodec"]["gflops"]["decode"])
        assert set(paths["nvcodec"]["latency_ms"]["stages_ms"]) == {"decode", "adapter", "backbone", "head"}
        red = t["reductions"]
        lat = {k: p["latency_ms"]["total_ms"] for k, p in paths.items()}
        assert red["latency_vs_codec_pct"] == pytest.approx(100 * (1 - lat["nvcodec"] / lat["codec"]))
        assert red["gflops_vs_inr_pixels_pct"] == pytest.approx(
            100 * (1 - paths["nvcodec"]["gflops"]["total"] / paths["inr_pixels"]["gflops"]["total"]))
        if t["output_type"] == "classification":
            assert 0 <= paths["nvcodec"]["agreement"]["top1_agreement"] <= 1
        ra = pt["rate_accuracy"][name]
        assert set(ra) == {"nvcodec", "inr_pixels", "x264"}

    mt = report["multi_task"]
    assert mt["tasks"] == ["resnet50", "detr"]
    _check_latency(mt["shared"]["latency_ms"], 2)
    _check_latency(mt["separate"]["latency_ms"], 2)
    assert mt["shared"]["gflops"]["decode"] <= mt["separate"]["gflops"]["total"]
    assert _positive(mt["codec"]["total_ms"]) and _positive(mt["inr_pixels"]["gflops"])

    ra = report["random_access"]
    assert len(ra["rows"]) == 2 and ra["x264_keyframes"] >= 1
    for row in ra["rows"]:
        assert all(_positive(row[k]) for k in ("nvcodec_ms", "nvcodec_cold_ms", "x264_ms"))
    assert isinstance(report["losses"], list) and all(isinstance(s, str) for s in report["losses"])
    assert os.path.isfile(nv["file"]) and os.path.isfile(x264["file"])


def _analytic_decoder_flops(cfg, upto: int, head: bool) -> int:
    """2 * MACs of the decoder convs for one frame: blocks 0..upto (conv before PixelShuffle; HiNeRV also its
    1x1 projection at the block's input size), optional RGB head."""
    h, w = cfg.embed_height, cfg.embed_width
    total = 0
    for k in range(upto + 1):
        s, ks = cfg.strides[k], cfg.kernel_sizes[k]
        total += 2 * cfg.block_in_channels(k) * ks * ks * cfg.channels[k] * s * s * h * w
        if cfg.kind == "hinerv":
            total += 2 * cfg.block_in_channels(k) * cfg.channels[k] * h * w
        h, w = h * s, w * s
    if head:
        total += 2 * cfg.channels[-1] * 3 * cfg.head_kernel ** 2 * h * w
    return total


def _flop_counter(fn, *args) -> int:
    mode = FlopCounterMode(display=False)
    with torch.inference_mode(), mode:
        fn(*args)
    return int(mode.get_total_flops())


def test_flops_match_an_independent_count(report):
    path = report["rate_points"][0]["nvcodec"]["file"]
    with nvcodec.open(path) as v:
        cfg = v.config(0)
        routing = read_routing(v.reader)["tasks"]
    assert cfg.kind == DEFAULT_KIND == "hinerv"
    c = report["conditions"]
    for name, t in report["tasks"].items():
        entry = routing[name]
        k, point = entry["inr_layer"], entry["injection_point"]
        assert (k, point) == (t["inr_layer"], t["injection_point"])
        rt = build_runtime(name, "random-tiny", torch.device("cpu"), c["width"], c["height"])
        oh, ow = entry["out_size"]
        act = torch.zeros(1, entry["out_channels"], oh, ow)
        pixels = torch.zeros(1, 3, *rt.geometry.out_hw)
        g = {key: p["gflops"] for key, p in t["paths"].items()}
        assert g["nvcodec"]["decode"] * 1e9 == pytest.approx(_analytic_decoder_flops(cfg, k, head=False), rel=1e-9)
        assert g["nvcodec"]["adapter"] * 1e9 == pytest.approx(2 * entry["in_channels"] * entry["out_channels"] * oh * ow,
                                                              rel=1e-9)
        assert g["nvcodec"]["backbone"] * 1e9 == pytest.approx(_flop_counter(rt.model.forward_from, act, point), rel=1e-9)
        full_backbone = _flop_counter(rt.model, pixels)
        assert g["codec"]["backbone"] * 1e9 == pytest.approx(full_backbone, rel=1e-9)
        assert g["inr_pixels"]["backbone"] * 1e9 == pytest.approx(full_backbone, rel=1e-9)
        assert g["inr_pixels"]["decode"] * 1e9 == pytest.approx(
            _analytic_decoder_flops(cfg, cfg.num_blocks - 1, head=True), rel=1e-9)
    mt = report["multi_task"]
    deepest = max(t["inr_layer"] for t in report["tasks"].values())
    assert mt["shared"]["gflops"]["decode"] * 1e9 == pytest.approx(_analytic_decoder_flops(cfg, deepest, head=False))


def test_text_report(report):
    text = render_report(report)
    for needle in ("Rate-distortion", "H.264 decode + backbone", "nvcodec partial decode + adapter + tail",
                   "Rate-accuracy", "Several tasks at once", "Random access", "Where nvcodec loses", "random weights"):
        assert needle in text


def test_cli_json(clip, tmp_path):
    args = [clip, "--task", "resnet50", "--params", "5k", "--epochs", "3", "--bpps", "none", "--codecs", "x264",
            "--weights", "random-tiny", "--repeat", "1", "--warmup", "0", "--attach-epochs", "1",
            "--random-access", "1", "--device", "cpu", "--json"]
    plots = importlib.util.find_spec("matplotlib") is not None
    if plots:
        args += ["--plot", str(tmp_path / "plots")]
    result = CliRunner().invoke(bench, args)
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    assert r["conditions"]["weights"] == {"resnet50": "random-tiny"} and r["multi_task"] is None
    for p in r["tasks"]["resnet50"]["paths"].values():
        _check_latency(p["latency_ms"], 1)
        assert _positive(p["gflops"]["total"])
    if plots:
        assert len(r["plots"]) == 3 and all(os.path.getsize(p) > 0 for p in r["plots"])


def test_no_silent_weights_fallback(clip, monkeypatch):
    monkeypatch.setenv("NVCODEC_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", "/nonexistent-nvcodec-test")
    monkeypatch.setenv("HF_HOME", "/nonexistent-nvcodec-test")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with pytest.raises(WeightsError):
        run_bench(clip, BenchOptions(tasks=["resnet50"], **{**TINY, "weights": None}))


def test_option_errors(clip):
    with pytest.raises(UsageError):
        run_bench(clip, BenchOptions(tasks=["nope"], **TINY))
    with pytest.raises(UsageError):
        run_bench(clip, BenchOptions(tasks=["resnet50"], **{**TINY, "repeat": 0}))
    with pytest.raises(UsageError):
        run_bench(clip, BenchOptions(tasks=["resnet50"], **{**TINY, "epochs": 0}))
    with pytest.raises(UsageError):
        parse_bpps("0.1,abc")
    with pytest.raises(UsageError):
        parse_codecs("x264,mpeg2")
    assert parse_bpps("0.1, 0.02,0.1") == [0.02, 0.1] and parse_bpps("none") == []
    assert parse_codecs("av1") == ["x264", "av1"]

"""Views of bench reports: the codec-issue and task-issue JSON, and the Markdown summary table.

    python -m nvcodec.bench.summary benchmarks/results     # prints the Markdown table of every bench_*.json
"""

from __future__ import annotations

import glob
import json
import os
import sys
from typing import Any

from ..errors import NvcodecError

CODEC_SCHEMA = "nvcodec-codec-bench/1"
TASK_SCHEMA = "nvcodec-task-bench/1"


def _conditions(r: dict) -> dict:
    keep = ("device", "threads", "frames", "frame_count", "width", "height", "fps", "encode", "codecs",
            "codec_preset", "codec_rate_control", "quality", "decode_speed", "bpp", "started", "wall_seconds",
            "weights", "weights_random", "weights_note", "repeat", "warmup", "sample_frames", "timing", "flops",
            "attach")
    return {k: r["conditions"][k] for k in keep if k in r["conditions"]}


def codec_view(r: dict, source: str) -> dict:
    """PSNR / MS-SSIM / bpp against encode time, full and per-block decode frames/s, codecs at the same bpp."""
    points = []
    for pt in sorted(r["rate_points"], key=lambda p: p["nvcodec"]["bpp"]):
        nv = pt["nvcodec"]
        points.append({
            "target": nv["target"],
            "nvcodec": {k: nv.get(k) for k in ("bpp", "bytes", "params", "psnr", "psnr_frame_mean", "psnr_min", "ms_ssim", "encode_seconds",
                                               "epochs", "stopped_by", "trace", "decode_speed")},
            "codecs": {k: {f: c.get(f) for f in ("label", "encoder", "available", "note", "bpp", "bytes", "psnr",
                                                 "psnr_frame_mean", "psnr_min", "ms_ssim", "encode_seconds", "rate_control", "crf",
                                                 "bitrate", "decode_speed")}
                       for k, c in pt["codecs"].items()},
        })
    return {"schema": CODEC_SCHEMA, "source": source, "clip": r["clip"], "machine": r["machine"],
            "conditions": _conditions(r), "points": points, "random_access": r.get("random_access"),
            "losses": [x for x in r.get("losses", []) if not x.startswith(("attach", "latency", "FLOPs", "rate-acc", "several"))]}


def task_view(r: dict, source: str) -> dict:
    """Per task and chosen pair: FLOPs and latency of the three paths, agreement, adapter size, attach time."""
    main = next(p for p in r["rate_points"] if p["main"])
    tasks = {}
    for name, t in r["tasks"].items():
        att = main["attach"].get(name, {})
        tasks[name] = {
            "chosen": {"inr_layer": t["inr_layer"], "injection_point": t["injection_point"]},
            "weights": t["weights"], "weights_random": t["weights_random"], "note": t.get("note"),
            "adapter_params": t["adapter_params"], "adapter_params_pct": t["adapter_params_pct"],
            "adapter_bytes": t["adapter_bytes"], "backbone_params": t["backbone_params"],
            "attach_seconds": att.get("seconds"), "attach_fidelity": att.get("fidelity"),
            "attach_trained_pairs": att.get("trained_pairs"), "attach_total_pairs": att.get("total_pairs"),
            "paths": {
                "adapter": _path(t["paths"]["nvcodec"]),
                "inr_full_decode": _path(t["paths"]["inr_pixels"]),
                "pyav_h264": _path(t["paths"]["codec"]),
            },
            "agreement_adapter_vs_inr_pixels": t["paths"]["nvcodec"].get("agreement_with_inr_pixels"),
            "reductions": t["reductions"],
        }
    return {"schema": TASK_SCHEMA, "source": source, "clip": r["clip"], "machine": r["machine"],
            "conditions": _conditions(r), "nvcodec_bpp": main["nvcodec"]["bpp"],
            "x264_bpp": main["codecs"].get("x264", {}).get("bpp"), "tasks": tasks, "multi_task": r.get("multi_task")}


def write_view(view: dict, out_dir: str, prefix: str) -> str:
    """Write a codec or task view as `{out_dir}/{prefix}_{clip}.json`; returns the path."""
    path = os.path.join(out_dir, f"{prefix}_{os.path.splitext(view['clip'])[0]}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(view, f, indent=2)
    return path


def write_views(name: str, view: Any, prefix: str, from_bench: list[str], clips: list[str],
                options: Any, out_dir: str) -> int:
    """The body of the benchmark scripts: views of existing bench reports, then fresh runs.

    `view(report, source) -> dict` picks the codec or task view; `options()` gives the
    `BenchOptions` of a fresh run. Prints each path written; returns the exit code.
    """
    from .run import run_bench

    os.makedirs(out_dir, exist_ok=True)
    try:
        for path in from_bench:
            with open(path, encoding="utf-8") as f:
                report = json.load(f)
            print(write_view(view(report, f"derived from {os.path.basename(path)} (same run)"), out_dir, prefix))
        for clip in clips:
            print(write_view(view(run_bench(clip, options()), f"measured by benchmarks/{name}.py"), out_dir, prefix))
    except NvcodecError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


def _path(p: dict) -> dict:
    lat = p["latency_ms"]
    return {"label": p["label"], "latency_ms": lat["total_ms"], "stages_ms": lat["stages_ms"], "gflops": p["gflops"],
            "gflops_notes": p.get("gflops_notes"), "agreement_with_original_pixels": p["agreement"]}


def _f(v: Any, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def _agree(a: dict | None) -> str:
    if not a:
        return "n/a"
    if "top1_agreement" in a:
        return f"{a['top1_agreement'] * 100:.0f}%"
    return f"fid {a['fidelity']:.3f}"


def markdown_summary(reports: list[dict]) -> str:
    """Markdown tables (rate-distortion; per-task latency/FLOPs/agreement) over several bench reports."""
    rd = ["| clip | frames | nvcodec bpp | nvcodec PSNR / MS-SSIM | x264 bpp | x264 PSNR / MS-SSIM | x265 PSNR / MS-SSIM "
          "| nvcodec encode s | x264 encode s |", "|---|---|---|---|---|---|---|---|---|"]
    task_rows = ["| clip | task | pair | H.264 path ms / GFLOPs | INR pixels ms / GFLOPs | nvcodec ms / GFLOPs "
                 "| latency cut vs H.264 / INR | GFLOPs cut vs INR | agreement nvcodec / INR / x264 | attach s |",
                 "|---|---|---|---|---|---|---|---|---|---|"]
    for r in reports:
        c = r["conditions"]
        for pt in sorted(r["rate_points"], key=lambda p: p["nvcodec"]["bpp"]):
            nv, x = pt["nvcodec"], pt["codecs"].get("x264", {})
            h = pt["codecs"].get("x265", {})
            x265 = f"{h['psnr']:.2f} / {h['ms_ssim']:.3f}" if h.get("available") else "n/a"
            rd.append(f"| {r['clip']} | {c['frames'][0]}:{c['frames'][1]} | {nv['bpp']:.4f} | {nv['psnr']:.2f} / "
                      f"{nv['ms_ssim']:.3f} | {_f(x.get('bpp'), '.4f')} | {_f(x.get('psnr'), '.2f')} / "
                      f"{_f(x.get('ms_ssim'), '.3f')} | {x265} | {nv['encode_seconds']:.0f} | "
                      f"{_f(x.get('encode_seconds'), '.2f')} |")
        main = next(p for p in r["rate_points"] if p["main"])
        for name, t in r["tasks"].items():
            p = t["paths"]
            red = t["reductions"]
            cells = [f"{p[k]['latency_ms']['total_ms']:.1f} / {p[k]['gflops']['total']:.2f}"
                     for k in ("codec", "inr_pixels", "nvcodec")]
            task_rows.append(
                f"| {r['clip']} | {name} | block {t['inr_layer']} -> {t['injection_point']} | {' | '.join(cells)} | "
                f"{_f(red['latency_vs_codec_pct'], '+.0f')}% / {_f(red['latency_vs_inr_pixels_pct'], '+.0f')}% | "
                f"{_f(red['gflops_vs_inr_pixels_pct'], '+.0f')}% | {_agree(p['nvcodec']['agreement'])} / "
                f"{_agree(p['inr_pixels']['agreement'])} / {_agree(p['codec']['agreement'])} | "
                f"{_f(main['attach'].get(name, {}).get('seconds'), '.0f')} |")
    multi = ["| clip | tasks (INR blocks) | nvcodec shared prefix ms / GFLOPs | nvcodec separately ms / GFLOPs "
             "| H.264 decode once + backbones* ms / GFLOPs | INR decode once + backbones* ms / GFLOPs |",
             "|---|---|---|---|---|---|"]
    for r in reports:
        mt = r.get("multi_task")
        if not mt:
            continue
        blocks = ", ".join(f"{t} ({k})" for t, k in mt["inr_layers"].items())
        multi.append(f"| {r['clip']} | {blocks} | {mt['shared']['latency_ms']['total_ms']:.1f} / "
                     f"{mt['shared']['gflops']['total']:.2f} | {mt['separate']['latency_ms']['total_ms']:.1f} / "
                     f"{mt['separate']['gflops']['total']:.2f} | {mt['codec']['total_ms']:.1f} / {mt['codec']['gflops']:.2f} "
                     f"| {mt['inr_pixels']['total_ms']:.1f} / {mt['inr_pixels']['gflops']:.2f} |")
    parts = ["Rate-distortion (PSNR dB / MS-SSIM against the original frames):", "", *rd, "",
             "Tasks at the main rate point (ms and GFLOPs per frame, batch 1; agreement = top-1 agreement "
             "with the backbone on the original frames, or detection fidelity):", "", *task_rows]
    if len(multi) > 2:
        parts += ["", "Several tasks per frame (* derived from the single-task stage medians, decode counted once; "
                  "H.264 GFLOPs count the backbones only):", "", *multi]
    return "\n".join(parts)


def markdown_conditions(reports: list[dict]) -> str:
    """Machine and run conditions of several bench reports, as a Markdown list and table."""
    if not reports:
        return "(no reports)"
    m = reports[0]["machine"]
    c = reports[0]["conditions"]
    lines = [
        f"* Machine: {m['cpu']}, {m['usable_cores']} usable cores, {m['memory_gib']} GiB; {m['os']}; "
        f"Python {m['python']}, torch {m['torch']} ({c['threads']} threads), PyAV {m['pyav']}, FFmpeg {m['ffmpeg']}; "
        f"device {c['device']}" + (f", GPU {m['gpu']['name']}" if m.get("gpu") else ", no GPU") + ".",
        f"* Weights: {c['weights_note']}.",
        "* Shared machine: other engineers' jobs ran at times; each report records the load average and an fp32 "
        "matmul speed probe at its start and end (table below). Timings from a run whose probe dropped are "
        "disturbed.",
        "",
        "| clip | frames | size | rate points (targets) | nvcodec encode | tasks | timed frames x passes "
        "| 1-min load start -> end | matmul GFLOP/s start -> end | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        c = r["conditions"]
        enc = c["encode"]
        stop = f"{enc['time_budget_s']:g} s budget" if enc.get("time_budget_s") else f"{enc['epochs']} epochs"
        targets = ", ".join(", ".join(f"{k} {v:g}" for k, v in p["nvcodec"]["target"].items())
                            for p in sorted(r["rate_points"], key=lambda p: p["nvcodec"]["bpp"]))
        probe = c.get("compute_probe") or {}
        ps = f"{probe['start']['gflops_per_s']:.0f} -> {probe['end']['gflops_per_s']:.0f}" if probe else "n/a"
        la = c.get("load_average_start") or ["n/a"]
        lb = c.get("load_average_end") or ["n/a"]
        lines.append(f"| {r['clip']} | {c['frames'][0]}:{c['frames'][1]} | {c['width']}x{c['height']} | {targets} | "
                     f"{enc['kind']}, {stop} | {', '.join(r['tasks']) or '-'} | {len(c['sample_frames'])} x "
                     f"{c['repeat']} (+{c['warmup']} warm-up) | {la[0]} -> {lb[0]} | {ps} | {c['wall_seconds']:.0f} |")
    return "\n".join(lines)


def markdown_losses(reports: list[dict]) -> str:
    """Every 'nvcodec loses' line of every report, grouped by clip."""
    out = []
    for r in reports:
        out.append(f"* **{r['clip']}**")
        out += [f"  * {x}" for x in r.get("losses", [])] or ["  * (none measured)"]
    return "\n".join(out)


def markdown_plots(reports: list[dict], prefix: str = "results/plots/") -> str:
    """Links to the PNG charts `nvcodec bench --plot` wrote for each report."""
    out = []
    for r in reports:
        stem = os.path.splitext(r["clip"])[0]
        names = ["rate_distortion"] + (["rate_accuracy", "latency"] if r.get("tasks") else [])
        out.append(f"* {r['clip']}: " + ", ".join(f"[{n.replace('_', '-')}]({prefix}{stem}_{n}.png)" for n in names))
    return "\n".join(out)


def load_reports(directory: str) -> list[dict]:
    """Every `bench_*.json` in `directory`, sorted by file name."""
    out = []
    for path in sorted(glob.glob(os.path.join(directory, "bench_*.json"))):
        with open(path, encoding="utf-8") as f:
            out.append(json.load(f))
    return out


if __name__ == "__main__":
    found = load_reports(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results")
    print("\n\n".join(["## Conditions", markdown_conditions(found), "## Results", markdown_summary(found),
                         "## Charts", markdown_plots(found, prefix="plots/"), "## Where nvcodec loses",
                         markdown_losses(found)]))

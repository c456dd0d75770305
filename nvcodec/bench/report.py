"""Terminal rendering of a `run_bench` report: paper-style tables, conditions and the cases nvcodec loses."""

from __future__ import annotations

from typing import Any

STAGE_ORDER = ("decode", "preprocess", "adapter", "backbone", "head")
PATH_NAMES = {"codec": "H.264 decode + backbone", "inr_pixels": "INR full decode + backbone",
              "nvcodec": "nvcodec partial decode + adapter + tail"}


def _table(rows: list[list[str]], header: list[str], right: set[int] | None = None) -> str:
    right = right if right is not None else set(range(1, len(header)))
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    sep = "  ".join("-" * w for w in widths)
    return "\n".join("  " + line.rstrip() for line in [fmt(header), sep, *(fmt(r) for r in rows)])


def _f(v: Any, spec: str = ".2f", none: str = "n/a") -> str:
    if v is None:
        return none
    return format(v, spec)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.1f}%"


def _agree(a: dict | None) -> str:
    if not a:
        return "n/a"
    if "top1_agreement" in a:
        return f"top-1 {a['top1_agreement'] * 100:.1f}%, KL {max(a['mean_kl'], 0.0):.3f}"
    if "bleu4" in a:
        return f"tokens {a['token_agreement'] * 100:.1f}%, BLEU-4 {a['bleu4']:.3f}"
    m = a.get("map50")
    return f"mAP50 {_f(m, '.3f')}, fid {a['fidelity']:.3f}"


def _stages(lat: dict) -> str:
    st = lat["stages_ms"]
    return " + ".join(f"{k} {st[k]:.2f}" for k in STAGE_ORDER if k in st)


def render_conditions(r: dict) -> list[str]:
    c = r["conditions"]
    m = r["machine"]
    a, b = c["frames"]
    weights = ", ".join(f"{k}: {v}" for k, v in c["weights"].items()) or "none (no tasks)"
    enc = c["encode"]
    stop = f"{enc['time_budget_s']:g} s budget" if enc.get("time_budget_s") else f"{enc['epochs']} epochs"
    gpu = f", GPU {m['gpu']['name']}" if m.get("gpu") else ""
    out = [
        f"nvcodec bench: {r['clip']} frames {a}:{b} ({c['width']}x{c['height']} @ {c['fps']:.3f} fps, {c['frame_count']} frames)",
        f"  machine: {m['cpu']} ({m['usable_cores']} usable cores{gpu}), torch {m['torch']}, "
        f"PyAV {m['pyav']} / FFmpeg {m.get('ffmpeg') or '?'}; device {c['device']}, {c['threads']} threads",
        f"  weights: {weights}; nvcodec encode: {enc['kind']}, {stop} per rate point; timing: median of "
        f"{c['repeat']} after {c['warmup']} warm-up, batch 1, {len(c['sample_frames'])} frames",
    ]
    probe = c.get("compute_probe")
    if probe:
        out.append(f"  compute probe (fp32 matmul): {probe['start']['gflops_per_s']:.0f} GFLOP/s at the start, "
                   f"{probe['end']['gflops_per_s']:.0f} at the end; load average {c.get('load_average_start', 'n/a')} -> "
                   f"{c.get('load_average_end')}")
    if c["weights_random"]:
        out.append("  NOTE: " + c["weights_note"])
    return out


def render_rate_distortion(r: dict) -> list[str]:
    codecs = [k for k in r["rate_points"][0]["codecs"]]
    header = ["point", "nvcodec bpp", "PSNR", "MS-SSIM", "enc s"]
    for k in codecs:
        header += [f"{k} bpp", "PSNR", "MS-SSIM", "enc s"]
    rows = []
    for pt in sorted(r["rate_points"], key=lambda p: p["nvcodec"]["bpp"]):
        nv = pt["nvcodec"]
        row = [pt["tag"] + (" *" if pt["main"] else ""), f"{nv['bpp']:.4f}", f"{nv['psnr']:.2f}",
               f"{nv['ms_ssim']:.4f}", f"{nv['encode_seconds']:.1f}"]
        for k in codecs:
            c = pt["codecs"][k]
            if c.get("available"):
                row += [f"{c['bpp']:.4f}", f"{c['psnr']:.2f}", f"{c['ms_ssim']:.4f}", f"{c['encode_seconds']:.2f}"]
            else:
                row += ["skipped", "", "", ""]
        rows.append(row)
    out = ["", "Rate-distortion (PSNR dB, MS-SSIM vs the original frames; codecs matched to the bpp nvcodec reached; "
           "* = main point):", _table(rows, header, right=set(range(1, len(header))))]
    notes = {c.get("note") for pt in r["rate_points"] for c in pt["codecs"].values() if c.get("note")}
    out += [f"  {n}" for n in sorted(notes)]
    return out


def render_task(name: str, t: dict) -> list[str]:
    rows = []
    for key in ("codec", "inr_pixels", "nvcodec"):
        p = t["paths"][key]
        lat = p["latency_ms"]
        rows.append([PATH_NAMES[key], f"{lat['total_ms']:.2f}", _f(p["gflops"]["total"], ".3f"),
                     _agree(p["agreement"]), _stages(lat)])
    red = t["reductions"]
    out = ["", f"Task {name} ({t['output_type']}): INR block {t['inr_layer']} -> {t['injection_point']}, adapter "
           f"{t['adapter_params']:,} params ({t['adapter_params_pct']:.3f}% of the backbone, {t['adapter_bytes']:,} bytes "
           f"in the file), weights {t['weights']}",
           _table(rows, ["path", "ms/frame", "GFLOPs", "agreement with original pixels", "stages (ms)"],
                  right={1, 2}),
           f"  nvcodec vs H.264 path: latency {_pct(red['latency_vs_codec_pct'])}, GFLOPs "
           f"{_pct(red['gflops_vs_codec_pct'])} (H.264 decode has no FLOP count: null)",
           f"  nvcodec vs INR pixels: latency {_pct(red['latency_vs_inr_pixels_pct'])}, GFLOPs "
           f"{_pct(red['gflops_vs_inr_pixels_pct'])}  (+ = reduction)",
           f"  nvcodec agreement with the INR pixel path: {_agree(t['paths']['nvcodec'].get('agreement_with_inr_pixels'))}"]
    if t.get("note"):
        out.append(f"  NOTE: {t['note']}")
    return out


def render_rate_accuracy(r: dict) -> list[str]:
    out = ["", "Rate-accuracy (agreement with the backbone on the original frames):"]
    rows = []
    for pt in sorted(r["rate_points"], key=lambda p: p["nvcodec"]["bpp"]):
        x = pt["codecs"].get("x264", {})
        for task, ra in pt.get("rate_accuracy", {}).items():
            rows.append([task, f"{pt['nvcodec']['bpp']:.4f}", _agree(ra.get("nvcodec")), _agree(ra.get("inr_pixels")),
                         _f(x.get("bpp"), ".4f"), _agree(ra.get("x264"))])
    out.append(_table(rows, ["task", "nvcodec bpp", "nvcodec path", "INR pixels", "x264 bpp", "x264 pixels"],
                      right={1, 4}))
    return out


def render_multi(mt: dict) -> list[str]:
    rows = [["nvcodec shared prefix", f"{mt['shared']['latency_ms']['total_ms']:.2f}", f"{mt['shared']['gflops']['total']:.3f}"],
            ["nvcodec separately", f"{mt['separate']['latency_ms']['total_ms']:.2f}", f"{mt['separate']['gflops']['total']:.3f}"],
            ["H.264 decode once + backbones*", f"{mt['codec']['total_ms']:.2f}", f"{mt['codec']['gflops']:.3f}"],
            ["INR decode once + backbones*", f"{mt['inr_pixels']['total_ms']:.2f}", f"{mt['inr_pixels']['gflops']:.3f}"]]
    red = mt["reductions"]
    return ["", f"Several tasks at once ({', '.join(mt['tasks'])}), per frame:",
            _table(rows, ["path", "ms/frame", "GFLOPs"]),
            f"  shared vs separate: latency {_pct(red['shared_vs_separate_latency_pct'])}, GFLOPs "
            f"{_pct(red['shared_vs_separate_gflops_pct'])}; shared vs H.264: latency {_pct(red['shared_vs_codec_latency_pct'])}",
            "  * derived from the single-task stage medians, decode counted once (H.264 GFLOPs: backbones only)"]


def render_random_access(ra: dict) -> list[str]:
    rows = [[str(x["frame"]), f"{x['nvcodec_ms']:.2f}", f"{x['nvcodec_cold_ms']:.2f}", f"{x['x264_ms']:.2f}"]
            for x in ra["rows"]]
    return ["", f"Random access (ms to fetch frame N; x264 file has {ra['x264_keyframes']} keyframe(s) "
            f"in {ra['frames']} frames):",
            _table(rows, ["frame", "nvcodec v[N]", "nvcodec open+load+decode", "x264 seek+decode"])]


def render_decode_speed(r: dict) -> list[str]:
    out = ["", "Decode speed (frames/s, whole clip):"]
    for pt in sorted(r["rate_points"], key=lambda p: p["nvcodec"]["bpp"]):
        nv = pt["nvcodec"].get("decode_speed")
        if not nv:
            continue
        blocks = ", ".join(f"{b['block']}: {b['fps']:.1f}" for b in nv["blocks"])
        codecs = ", ".join(f"{k} {c['decode_speed']['fps']:.1f}" for k, c in pt["codecs"].items()
                           if c.get("decode_speed"))
        out.append(f"  {pt['nvcodec']['bpp']:.4f} bpp: nvcodec full {nv['full']['fps']:.1f}, partial to block "
                   f"[{blocks}]; {codecs or 'no codec timed'}")
    return out


def render_report(r: dict) -> str:
    """The whole report as text for a terminal."""
    out = render_conditions(r)
    out += render_rate_distortion(r)
    for name, t in r["tasks"].items():
        out += render_task(name, t)
    if r["tasks"]:
        out += render_rate_accuracy(r)
    if r.get("multi_task"):
        out += render_multi(r["multi_task"])
    out += render_decode_speed(r)
    out += render_random_access(r["random_access"])
    out += ["", "Where nvcodec loses (measured above):"]
    out += [f"  - {x}" for x in r["losses"]] or ["  (nothing measured here)"]
    if r.get("plots"):
        out += ["", "Plots: " + ", ".join(r["plots"])]
    if r.get("kept_files"):
        out += [f"Encoded files kept in {r['kept_files']}"]
    return "\n".join(out)

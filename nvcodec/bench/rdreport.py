"""Analysis, Markdown and plots of the rate-distortion benchmark (`benchmarks/rd.py`, schema nvcodec-rd/1).

Everything here is computed from the JSON alone, so `rd.py --report-only` rebuilds it.
"""

from __future__ import annotations

import math
import os
from typing import Any

from .bdrate import bd_quality, bd_rate, msssim_db, quality_at_rate, seconds_to_reach

SCHEMA = "nvcodec-rd/1"
GAP_BPP = 0.05
SPEED_TARGETS = (30.0, 33.0)
ANCHOR_KIND = "hnerv"
TARGET_EPOCHS_BD = -40.0
TARGET_TIME_BD = -25.0

# Published reference figures (not measured here).
PUBLISHED = {
    "bunny": {
        "what": "Big Buck Bunny, 1280x720, 132 frames, video regression after 300 epochs, PSNR (dB) of the "
                "unquantized model",
        "source": "HNeRV: A Hybrid Neural Representation for Videos (Chen et al., CVPR 2023, arXiv:2304.02633), "
                  "table of video regression on Bunny at different model sizes; training commands: "
                  "github.com/haochen-rye/HNeRV README (HNeRV and NeRV baseline, --modelsize 1.5, -e 300) and "
                  "github.com/Xinjie-Q/Boosting-NeRV scripts/regression/bunny/{hnerv,nerv_boost}.sh "
                  "(sizes 0.77/1.525/3.05 for 0.75M/1.5M/3M, -e 300)",
        "psnr": {"nerv": {"0.75M": 28.46, "1.5M": 30.87, "3M": 33.21},
                 "hnerv": {"0.75M": 32.81, "1.5M": 35.57, "3M": 37.43}},
        "epochs": 300,
        "check": ("the 1.5M pair matches the paper's abstract (HNeRV +4.7 dB PSNR over NeRV: 35.57 - 30.87 = 4.70); "
                  "the stored copies reachable from this workplace hold only the abstract, so the 0.75M and 3M "
                  "values were transcribed from the paper's table without a second check here"),
    },
    "uvg": {
        "what": "UVG (7 videos, 1920x1080), PSNR (dB) at bpp, compression results",
        "source": "HiNeRV (Kwan et al., NeurIPS 2023) and HNeRV (CVPR 2023) as given in this project's issue 19",
        "points": {"hinerv": [[0.015, 34.80], [0.030, 36.24], [0.058, 37.51], [0.116, 38.72]],
                   "hnerv": [[0.0139, 32.77], [0.0498, 35.49]]},
    },
}


def _fmt(v: Any, digits: int = 2, suffix: str = "") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        return f"{v:.{digits}f}{suffix}"
    return f"{v}{suffix}"


def kind_order(kinds: list[str]) -> list[str]:
    """hnerv first, then the others in the order given."""
    return sorted(dict.fromkeys(kinds), key=lambda k: (k != ANCHOR_KIND, kinds.index(k)))


def _curve(points: list[dict], key: str) -> tuple[list[float], list[float]]:
    got = [p for p in points if p.get("bpp") and p.get(key) is not None]
    q = [msssim_db(p[key]) if key == "ms_ssim" else p[key] for p in got]
    return [p["bpp"] for p in got], q


def _bd_pair(anchor: list[dict], test: list[dict]) -> dict[str, Any]:
    out = {}
    for key, name in (("psnr", "psnr"), ("ms_ssim", "ms_ssim_db")):
        ra, qa = _curve(anchor, key)
        rt, qt = _curve(test, key)
        r = bd_rate(ra, qa, rt, qt)
        r["bd_quality"] = bd_quality(ra, qa, rt, qt)["bd_quality"]
        out[name] = r
    return out


def codec_points(clip: dict, short: str) -> list[dict]:
    """Every measured encode of codec `short` on a clip (RD-curve CRFs and matched points)."""
    c = clip.get("codecs", {}).get(short, {})
    return [p for p in c.get("points", {}).values() if p.get("psnr") is not None]


def _compare_gaps(m: dict[str, Any], key: str) -> None:
    """Each kind's gap (`m[kind][key]`) against the anchor's: the ratio and whether it is at most half."""
    base_gap = m.get(ANCHOR_KIND, {}).get(key, {}).get("gap_db")
    for kind, row in m.items():
        if kind == ANCHOR_KIND or key not in row:
            continue
        g = row[key]["gap_db"]
        row[key]["vs_hnerv_gap"] = None if g is None or base_gap is None or base_gap <= 0 else g / base_gap
        row[key]["halved"] = None if g is None or base_gap is None else bool(g <= base_gap / 2)


def _gaps_at_anchor_rate(m: dict[str, Any], x264: list[dict], points: list[dict]) -> None:
    """Where the anchor's points do not reach GAP_BPP: every kind's gap to x264 at the anchor's measured
    point nearest GAP_BPP (`gap_x264_anchor_rate`), so that "the gap halved" is still judged at one rate
    that both curves reach (a kind that does not span it gets None with the reason)."""
    anchor = [p for p in points if p["kind"] == ANCHOR_KIND and p.get("bpp")]
    near = min(anchor, key=lambda p: abs(math.log(p["bpp"] / GAP_BPP)))
    rate = near["bpp"]
    x264_at = quality_at_rate(*_curve(x264, "psnr"), rate)
    for kind, row in m.items():
        own = near["psnr"] if kind == ANCHOR_KIND else quality_at_rate(
            *_curve(sorted((p for p in points if p["kind"] == kind), key=lambda p: p["bpp"]), "psnr"), rate)
        why = None
        if own is None:
            why = f"{kind}'s points do not span {rate:.4f} bpp"
        elif x264_at is None:
            why = f"x264's points do not span {rate:.4f} bpp"
        row["gap_x264_anchor_rate"] = {"bpp": rate, "x264_psnr": x264_at, "psnr": own, "reason": why,
                                       "gap_db": None if own is None or x264_at is None else x264_at - own}
    _compare_gaps(m, "gap_x264_anchor_rate")


def analyse_clip(clip: dict) -> dict[str, Any]:
    """BD-rates, gaps at GAP_BPP, time to SPEED_TARGETS and losses of one clip's points."""
    nv = [p for p in clip.get("nvcodec", {}).values() if p.get("psnr") is not None]
    modes = sorted({p["mode"] for p in nv})
    kinds = kind_order([p["kind"] for p in nv])
    codecs = [s for s, c in clip.get("codecs", {}).items() if c.get("available")]
    out: dict[str, Any] = {"modes": {}}
    x264 = codec_points(clip, "x264")
    x264_at = quality_at_rate(*_curve(x264, "psnr"), GAP_BPP) if x264 else None
    for mode in modes:
        m: dict[str, Any] = {}
        for kind in kinds:
            pts = sorted((p for p in nv if p["mode"] == mode and p["kind"] == kind), key=lambda p: p["bpp"])
            if not pts:
                continue
            row: dict[str, Any] = {"points": len(pts), "vs": {}}
            for short in codecs:
                row["vs"][short] = _bd_pair(codec_points(clip, short), pts)
            anchor = [p for p in nv if p["mode"] == mode and p["kind"] == ANCHOR_KIND]
            if kind != ANCHOR_KIND:
                row["vs"][ANCHOR_KIND] = (_bd_pair(anchor, pts) if anchor else
                                          {"psnr": {"bd_rate_pct": None, "reason": f"no {ANCHOR_KIND} points in this mode"}})
            own = quality_at_rate(*_curve(pts, "psnr"), GAP_BPP)
            gap = None if own is None or x264_at is None else x264_at - own
            why = None
            if own is None:
                why = f"{kind}'s points do not span {GAP_BPP} bpp"
            elif x264_at is None:
                why = f"x264's points do not span {GAP_BPP} bpp"
            row["gap_x264"] = {"bpp": GAP_BPP, "x264_psnr": x264_at, "psnr": own, "gap_db": gap, "reason": why}
            speed = {}
            for target in SPEED_TARGETS:
                per = [seconds_to_reach(p.get("trace", []), target) for p in pts]
                reached = [s for s in per if s is not None]
                speed[f"{target:g}"] = {"fastest_s": min(reached) if reached else None,
                                        "per_point_s": per, "per_point_bpp": [p["bpp"] for p in pts]}
            row["seconds_to_psnr"] = speed
            row["encode_seconds"] = [p.get("encode_seconds") for p in pts]
            row["epochs"] = [p.get("epochs") for p in pts]
            m[kind] = row
        _compare_gaps(m, "gap_x264")
        anchor_row = m.get(ANCHOR_KIND)
        if anchor_row is not None and anchor_row["gap_x264"]["psnr"] is None and x264:
            _gaps_at_anchor_rate(m, x264, [p for p in nv if p["mode"] == mode])
        out["modes"][mode] = m
    out["losses"] = losses(clip)
    return out


def losses(clip: dict, slack: float = 0.05) -> list[str]:
    """Every nvcodec point that a codec beats (PSNR or MS-SSIM) at the bpp matched to it, where the codec's
    bpp is at most `slack` above the point's (a codec point of much more rate proves nothing)."""
    out = []
    for key, p in sorted(clip.get("nvcodec", {}).items()):
        if p.get("psnr") is None:
            continue
        for short, c in clip.get("codecs", {}).items():
            for cp in c.get("points", {}).values():
                if key not in cp.get("matched_to", []) or cp.get("psnr") is None or cp["bpp"] > p["bpp"] * (1 + slack):
                    continue
                if cp["psnr"] > p["psnr"] or cp["ms_ssim"] > p["ms_ssim"]:
                    out.append(f"{p['kind']} ({p['mode']}, target {p['target_bpp']:g}, {p['bpp']:.4f} bpp): {short} at {cp['bpp']:.4f} bpp has "
                               f"PSNR {cp['psnr']:.2f} vs {p['psnr']:.2f} dB ({cp['psnr'] - p['psnr']:+.2f}), "
                               f"MS-SSIM {cp['ms_ssim']:.4f} vs {p['ms_ssim']:.4f}")
    return out


def targets(data: dict, analysis: dict) -> list[dict[str, Any]]:
    """The issue's targets for every kind other than hnerv, per clip: BD vs hnerv (epochs, time), gap halved."""
    rows = []
    for ckey, a in analysis["clips"].items():
        for mode, m in a["modes"].items():
            limit = TARGET_EPOCHS_BD if mode.startswith("epochs") else TARGET_TIME_BD
            for kind, row in m.items():
                if kind == ANCHOR_KIND:
                    continue
                bd = row["vs"].get(ANCHOR_KIND, {}).get("psnr", {}).get("bd_rate_pct")
                rows.append({"clip": ckey, "mode": mode, "kind": kind, "bd_vs_hnerv_pct": bd, "limit_pct": limit,
                             "bd_met": None if bd is None else bool(bd <= limit),
                             "gap_db": row["gap_x264"]["gap_db"], "gap_halved": row["gap_x264"].get("halved"),
                             "gap_bpp": GAP_BPP,
                             "anchor_gap_db": m.get(ANCHOR_KIND, {}).get("gap_x264", {}).get("gap_db")})
                alt = row.get("gap_x264_anchor_rate")
                if row["gap_x264"].get("halved") is None and alt is not None:
                    rows[-1].update(gap_db=alt["gap_db"], gap_halved=alt.get("halved"), gap_bpp=alt["bpp"],
                                    anchor_gap_db=m[ANCHOR_KIND]["gap_x264_anchor_rate"]["gap_db"])
    return rows


def analyse(data: dict) -> dict[str, Any]:
    """The whole analysis of an rd.json."""
    out: dict[str, Any] = {"clips": {k: analyse_clip(c) for k, c in data.get("clips", {}).items()}}
    out["targets"] = targets(data, out)
    return out


def _points_table(clip: dict, a: dict) -> list[str]:
    lines = ["| kind | mode | target bpp | bpp | PSNR dB | MS-SSIM | epochs | encode s (CPU s) | s to 30 dB | s to 33 dB | "
             "load 1-min start -> end | code |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    pts = sorted(clip.get("nvcodec", {}).values(),
                 key=lambda p: (p.get("mode", ""), kind_order([p["kind"], ANCHOR_KIND]).index(p["kind"]), p["target_bpp"]))
    for p in pts:
        if p.get("psnr") is None:
            lines.append(f"| {p['kind']} | {p['mode']} | {p['target_bpp']:g} | failed: {p.get('error', '?')} ||||||||| ")
            continue
        t30, t33 = (seconds_to_reach(p.get("trace", []), t) for t in SPEED_TARGETS)
        la, lb = (p.get("load_start") or [None])[0], (p.get("load_end") or [None])[0]
        lines.append(f"| {p['kind']} | {p['mode']} | {p['target_bpp']:g} | {p['bpp']:.4f} | {p['psnr']:.2f} | "
                     f"{p['ms_ssim']:.4f} | {p.get('epochs')} | {_fmt(p.get('encode_seconds'), 1)} ({_fmt(p.get('cpu_seconds'), 0)}) | "
                     f"{_fmt(t30, 0)} | "
                     f"{_fmt(t33, 0)} | {_fmt(la)} -> {_fmt(lb)} | {_code(p)} |")
    return lines


def _code(p: dict) -> str:
    """Which nvcodec source encoded a point (`git describe`, plus the OpenMP wait policy when set)."""
    code = p.get("code")
    if not code:
        return "not recorded"
    policy = p.get("omp_wait_policy")
    return f"{code}" + (f", OMP {policy.lower()}" if policy and policy != "default" else "")


def _codec_table(clip: dict) -> list[str]:
    lines = ["| codec | via | preset | role | CRF | bpp | PSNR dB | MS-SSIM | encode s |", "|---|---|---|---|---|---|---|---|---|"]
    for short, c in clip.get("codecs", {}).items():
        if not c.get("available"):
            lines.append(f"| {short} | {c.get('note', 'unavailable')} ||||||||")
            continue
        for p in sorted(c.get("points", {}).values(), key=lambda p: p["bpp"]):
            role = "curve" if p.get("curve") else ""
            if p.get("matched_to"):
                role = (role + ", " if role else "") + f"matched x{len(p['matched_to'])}"
            lines.append(f"| {short} | {c.get('via')} | {c.get('preset')} | {role} | {p['crf']:g} | {p['bpp']:.4f} | "
                         f"{_fmt(p.get('psnr'))} | {_fmt(p.get('ms_ssim'), 4)} | {_fmt(p.get('encode_seconds'), 2)} |")
    return lines


def _bd_cell(r: dict | None) -> str:
    if not r:
        return "n/a"
    if r.get("bd_rate_pct") is None:
        return f"null ({r.get('reason')})"
    return f"{r['bd_rate_pct']:+.1f}%"


def _clip_section(ckey: str, clip: dict, a: dict) -> list[str]:
    lines = [f"### {ckey}", "",
             f"{clip.get('clip')} frames {clip['frames'][0]}:{clip['frames'][1]} ({clip['frames'][1] - clip['frames'][0]}), "
             f"{clip['width']}x{clip['height']} (scale {clip.get('scale', 1):g}), encoded from {clip.get('source')}.", ""]
    lines += ["nvcodec points:", ""] + _points_table(clip, a) + [""]
    lines += ["Conventional codecs (all encodes measured; `curve` = the codec's own RD curve, `matched` = CRF found "
              "for an nvcodec point's bpp):", ""] + _codec_table(clip) + [""]
    codecs = [s for s, c in clip.get("codecs", {}).items() if c.get("available")]
    cols = codecs + [ANCHOR_KIND]
    lines += ["BD-rate (PSNR / MS-SSIM in dB; negative: the kind needs less rate for the same quality):", "",
              "| mode | kind | " + " | ".join(f"vs {c}" for c in cols) + " |", "|---|---|" + "---|" * len(cols)]
    for mode, m in a["modes"].items():
        for kind, row in m.items():
            cells = []
            for c in cols:
                r = row["vs"].get(c)
                cells.append("-" if r is None else f"{_bd_cell(r.get('psnr'))} / {_bd_cell(r.get('ms_ssim_db'))}")
            lines.append(f"| {mode} | {kind} | " + " | ".join(cells) + " |")
    lines += ["", f"Gap to x264 medium at {GAP_BPP} bpp (x264's PSNR minus the kind's, both interpolated over their "
              "measured points; positive: x264 is better) and time to reach PSNR (fastest point):", "",
              "| mode | kind | x264 dB | kind dB | gap dB | gap / hnerv's gap | halved | s to 30 dB | s to 33 dB |",
              "|---|---|---|---|---|---|---|---|---|"]
    for mode, m in a["modes"].items():
        for kind, row in m.items():
            g = row["gap_x264"]
            gap = _fmt(g["gap_db"]) if g["gap_db"] is not None else f"null ({g['reason']})"
            s = row["seconds_to_psnr"]
            lines.append(f"| {mode} | {kind} | {_fmt(g['x264_psnr'])} | {_fmt(g['psnr'])} | {gap} | "
                         f"{_fmt(g.get('vs_hnerv_gap'))} | {_fmt(g.get('halved'))} | {_fmt(s['30']['fastest_s'], 0)} | "
                         f"{_fmt(s['33']['fastest_s'], 0)} |")
    for mode, m in a["modes"].items():
        alt = m.get(ANCHOR_KIND, {}).get("gap_x264_anchor_rate")
        if alt is None:
            continue
        parts = []
        for kind, row in m.items():
            g = row["gap_x264_anchor_rate"]
            gap = f"{_fmt(g['gap_db'])} dB" if g["gap_db"] is not None else f"n/a ({g['reason']})"
            parts.append(f"{kind} {gap}" + (f" (halved: {_fmt(g.get('halved'))})" if kind != ANCHOR_KIND else ""))
        lines += ["", f"{mode}: {ANCHOR_KIND}'s points do not reach {GAP_BPP} bpp; gap to x264 ({_fmt(alt['x264_psnr'])} "
                  f"dB) at {ANCHOR_KIND}'s point nearest it, {alt['bpp']:.4f} bpp: " + "; ".join(parts) + "."]
    lines += ["", "Where nvcodec loses (a codec at the bpp matched to the point is better):", ""]
    lines += [f"- {x}" for x in a["losses"]] or ["- nowhere among the matched points"]
    return lines + [""]


def _runs_section(runs: list[dict]) -> list[str]:
    """One row per run of rd.py that wrote into this JSON (its start and conditions)."""
    if not runs:
        return []
    lines = ["## Runs", "", "| started | kinds | bpps | modes | scale | threads | device |", "|---|---|---|---|---|---|---|"]
    for r in runs:
        c = r.get("conditions", {})
        variants = c.get("variants") or {}
        kinds = [k if k not in variants else
                 f"{k} ({variants[k]['kind']}: {', '.join(f'{o}={v}' for o, v in variants[k]['options'].items())})"
                 for k in c.get("kinds", [])]
        lines.append(f"| {r.get('started', '?')} | {', '.join(kinds)} | "
                     f"{', '.join(f'{b:g}' for b in c.get('bpps', []))} | {', '.join(c.get('modes', []))} | "
                     f"{c.get('scale', 1):g} | {c.get('threads')} | {c.get('device')} |")
    return lines + [""]


def render_markdown(data: dict, analysis: dict, plots: list[str] | None = None, plot_note: str | None = None) -> str:
    """RD.md: conditions, published figures, Bunny at fixed params, targets, then one section per clip."""
    c = data.get("conditions", {})
    mach = data.get("machine", {})
    lines = ["# Rate-distortion benchmark", "",
             f"Generated by `benchmarks/rd.py` (schema {data.get('schema')}); every number below is in `rd.json`. "
             f"Last command: `{data.get('command', '?')}`.", "",
             "## Conditions", "",
             "Of the last run; every run that wrote points is listed under *Runs*, and every point records its "
             "own code, threads and load.", "",
             f"* Machine: {mach.get('cpu')}, {mach.get('usable_cores')} usable cores, torch {mach.get('torch')} "
             f"({c.get('threads')} threads), device {c.get('device')}; PyAV {mach.get('pyav')}.",
             f"* Kinds: {', '.join(c.get('kinds', []))}; target bpps: {', '.join(f'{b:g}' for b in c.get('bpps', []))}; "
             f"modes: {', '.join(c.get('modes', []))} (a fixed epoch plan; a fixed wall-clock budget per encode on "
             f"this CPU with these threads).",
             f"* Frames: {c.get('frames_rule')}; scale {c.get('scale', 1):g}.",
             "* bpp = file bytes x 8 / (W x H x frames), container included (.nvp file; mp4/mkv file). PSNR: "
             "nvcodec's pooled RGB PSNR (nvcodec.inr.metrics) against the PyAV rgb24 frames of the source; MS-SSIM: "
             "mean over frames. Codecs: yuv420p, CRF rate control; matched points by CRF search to within "
             f"{c.get('match_tolerance', 0.02) * 100:g}% of the nvcodec point's bpp where the CRF grid allows.",
             "* BD-rate: Bjontegaard, log-rate over quality by piecewise-cubic (PCHIP) interpolation, integrated over "
             "the overlapping quality range (nvcodec.bench.bdrate); null with the reason when ranges do not overlap. "
             "Each curve keeps only its RD front: a point that another point of the same kind and mode beats (no "
             "more rate, more quality) is left out of BD-rates and of the gap to x264 (the JSON counts them under "
             "`dominated`); every point stays in the tables.",
             "* Time to 30 / 33 dB: the first dequantized-PSNR check of the fit (every 10 epochs, and the final "
             "quantized model) at or above the level, in seconds since the encode started (clip reading included).",
             ""]
    if plot_note:
        lines += [f"Plots: {plot_note}", ""]
    elif plots:
        lines += ["Plots: " + ", ".join(f"`{os.path.relpath(p, data.get('out_dir', '.'))}`" for p in plots), ""]
    pub = PUBLISHED["bunny"]
    lines += ["## Published reference figures (not measured here)", "",
              f"Bunny: {pub['what']}. Source: {pub['source']}. Check: {pub['check']}.", "",
              "| kind | 0.75M | 1.5M | 3M |", "|---|---|---|---|"]
    for kind, v in pub["psnr"].items():
        lines.append(f"| {kind} | {v['0.75M']} | {v['1.5M']} | {v['3M']} |")
    uvg = PUBLISHED["uvg"]
    lines += ["", f"UVG: {uvg['what']}; {uvg['source']}.", ""]
    for kind, pts in uvg["points"].items():
        lines.append(f"* {kind}: " + ", ".join(f"{q:.2f} dB @ {b:g} bpp" for b, q in pts))
    lines += ["", "## Bunny at fixed parameters beside the published figure", ""]
    bunny = data.get("bunny", {})
    if not bunny:
        lines += ["Not run (`--bunny-params`).", ""]
    else:
        lines += ["| kind | params | epochs (published: 300) | frames | size | PSNR dB (quantized .nvp) | published PSNR dB | "
                  "bpp | encode s | device |", "|---|---|---|---|---|---|---|---|---|---|"]
        for p in bunny.values():
            label = p.get("params_label")
            ref = pub["psnr"].get(p["kind"], {}).get(label)
            if p.get("psnr") is None:
                lines.append(f"| {p['kind']} | {label} | failed: {p.get('error')} ||||||||")
                continue
            lines.append(f"| {p['kind']} | {label} ({p.get('params')}) | {p.get('epochs')} | {p.get('frames')} | "
                         f"{p.get('width')}x{p.get('height')} | {p['psnr']:.2f} | {_fmt(ref)} | {p['bpp']:.4f} | "
                         f"{_fmt(p.get('encode_seconds'), 0)} | {p.get('device')} |")
        lines += ["", "The published figures are for 300 epochs on a GPU, from the lossless PNG frames and before "
                  "quantization; the rows here got the epochs shown, from the H.264-decoded clip, and report the "
                  "quantized .nvp's PSNR (the kind's stored bits: hnerv 8/6, hinerv 6/5 with QAT).", ""]
    lines += _runs_section(data.get("runs", []))
    lines += ["## Targets (issue 19)", "",
              f"BD-rate vs {ANCHOR_KIND} <= {TARGET_EPOCHS_BD:g}% at equal epochs and <= {TARGET_TIME_BD:g}% at equal "
              f"time on every clip; the gap to x264 medium at {GAP_BPP} bpp at least halved against {ANCHOR_KIND}'s gap "
              "in the same run.", ""]
    if analysis["targets"]:
        lines += ["| clip | mode | kind | BD vs hnerv | limit | met | gap to x264 dB (at bpp) | hnerv's gap dB | "
                  "gap halved |", "|---|---|---|---|---|---|---|---|---|"]
        for t in analysis["targets"]:
            at = f"{_fmt(t['gap_db'])} ({t['gap_bpp']:.3g})"
            lines.append(f"| {t['clip']} | {t['mode']} | {t['kind']} | {_fmt(t['bd_vs_hnerv_pct'], 1, '%')} | "
                         f"{t['limit_pct']:g}% | {_fmt(t['bd_met'])} | {at} | {_fmt(t.get('anchor_gap_db'))} | "
                         f"{_fmt(t['gap_halved'])} |")
        lines += ["", f"Where {ANCHOR_KIND}'s smallest plan lands above {GAP_BPP} bpp, the gaps are compared at "
                  f"{ANCHOR_KIND}'s measured point nearest {GAP_BPP} bpp (the rate in brackets; x264 and the kind "
                  "interpolated there), a rate both curves reach, instead of extrapolating."]
    else:
        lines.append(f"No kind other than {ANCHOR_KIND} in this run: nothing to check.")
    lines += ["", "## Per clip", ""]
    for ckey, clip in data.get("clips", {}).items():
        lines += _clip_section(ckey, clip, analysis["clips"][ckey])
    return "\n".join(lines).rstrip() + "\n"


def write_plots(data: dict, directory: str, prefix: str = "rd") -> tuple[list[str], str | None]:
    """<prefix>_<clip>.png per clip (PSNR and MS-SSIM against bpp); ([], note) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], "skipped: matplotlib is not installed (pip install 'nvcodec[plot]')"
    os.makedirs(directory, exist_ok=True)
    out = []
    for ckey, clip in data.get("clips", {}).items():
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        nv = [p for p in clip.get("nvcodec", {}).values() if p.get("psnr") is not None]
        for ax, key, label in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "ms_ssim", "MS-SSIM")):
            for mode in sorted({p["mode"] for p in nv}):
                for kind in kind_order([p["kind"] for p in nv]):
                    pts = sorted((p for p in nv if p["mode"] == mode and p["kind"] == kind), key=lambda p: p["bpp"])
                    if pts:
                        ax.plot([p["bpp"] for p in pts], [p[key] for p in pts], "o-" if mode.startswith("epochs") else "o:",
                                label=f"{kind} ({mode})")
            for short, c in clip.get("codecs", {}).items():
                pts = sorted(codec_points(clip, short), key=lambda p: p["bpp"])
                if pts:
                    ax.plot([p["bpp"] for p in pts], [p[key] for p in pts], "s--", label=f"{short} ({c.get('preset')})",
                            markersize=4)
            ax.set_xscale("log")
            ax.set_xlabel("bits per pixel (log)")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3, which="both")
        axes[0].legend(fontsize=7)
        fig.suptitle(f"{ckey}: {clip['width']}x{clip['height']}, frames {clip['frames'][0]}:{clip['frames'][1]}",
                     fontsize=9)
        fig.tight_layout()
        path = os.path.join(directory, f"{prefix}_{ckey.split('|')[0]}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        out.append(path)
    return out, None

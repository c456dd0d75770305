"""What each rate lever buys, in bpp at equal PSNR: bit depth, entropy coding, QAT, pruning, bit allocation.

    python benchmarks/rate_levers.py --clips /work/shared/clips/torchcodec_dog_eating_854132.mp4 \
        --scale 0.25 --epochs 25 --threads 1 --out benchmarks/results --resume
    python benchmarks/rate_levers.py --report-only --out benchmarks/results

Per clip (frames 0:96 at `--scale`, the same PNG-folder source and measurement as `rd.py`), one model size
per `--sizes` entry: the parameter count of the default kind's plan for that bpp at 6-bit weights and
5-bit embeddings. Every variant encodes that same plan (`--params`, so no rate cap and no rate control
change the model) for a fixed epoch count and seed, and the file is decoded and measured against the
frames. Variants, in the order the levers were added:

    ptq8-zstd    8-bit weights, 6-bit embeddings, post-training quantization, zstd only (`--entropy none`)
    ptq8-rans    the same with rANS-coded tensors (`--entropy rans`)
    ptq6-rans    6 / 5 bits, post-training
    qat6         6 / 5 bits, the last 30% of training quantization-aware, one bit depth for every tensor
    qat6-prune   qat6 with `--prune 0.25`
    qat6-alloc   qat6 with `--bit-alloc` (today's default for `hinerv`, chosen by this benchmark)
    qat5         5 / 4 bits, quantization-aware
    qat6-alloc-60   qat6-alloc with the last 60% of training quantization-aware
    qat6-alloc-all  qat6-alloc quantization-aware from the first step (bits allocated then, before
                    Adam has gradient statistics, so every tensor gets 6 bits)

A curve per variant (its sizes' bpp and PSNR); the BD-rate of each variant against the one before it in
the chain ptq8-zstd -> ptq8-rans -> ptq6-rans -> qat6 (one lever each), of qat6-prune, qat6-alloc and
qat5 against qat6, of the QAT shares against qat6-alloc, and of every variant against ptq8-zstd. Writes rate_levers.json (rewritten after
every point; `--resume` skips points in it) and RATE_LEVERS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from datetime import datetime, timezone
from typing import Any

import torch

from nvcodec.bench.bdrate import bd_rate
from nvcodec.bench.machine import cpu_model, describe_machine, load_average
from nvcodec.codec.encode import EncodeOptions, encode
from nvcodec.codec.frames import parse_range
from nvcodec.errors import NvcodecError, UsageError
from nvcodec.inr.plan import plan_config
from nvcodec.video import probe_video
from rd import clip_frames, clip_key, code_version, find_clips, measure, prepare_clip

SCHEMA = "nvcodec-rate-levers/1"
VARIANTS: dict[str, dict[str, Any]] = {
    "ptq8-zstd": {"weight_bits": 8, "embed_bits": 6, "qat": 0.0, "bit_alloc": False, "entropy": "none"},
    "ptq8-rans": {"weight_bits": 8, "embed_bits": 6, "qat": 0.0, "bit_alloc": False},
    "ptq6-rans": {"weight_bits": 6, "embed_bits": 5, "qat": 0.0, "bit_alloc": False},
    "qat6": {"weight_bits": 6, "embed_bits": 5, "qat": 0.3, "bit_alloc": False},
    "qat6-prune": {"weight_bits": 6, "embed_bits": 5, "qat": 0.3, "bit_alloc": False, "prune": 0.25},
    "qat6-alloc": {"weight_bits": 6, "embed_bits": 5, "qat": 0.3, "bit_alloc": True},
    "qat5": {"weight_bits": 5, "embed_bits": 4, "qat": 0.3, "bit_alloc": False},
    "qat6-alloc-60": {"weight_bits": 6, "embed_bits": 5, "qat": 0.6, "bit_alloc": True},
    "qat6-alloc-all": {"weight_bits": 6, "embed_bits": 5, "qat": 1.0, "bit_alloc": True},
}
STEPS = {"ptq8-rans": "ptq8-zstd", "ptq6-rans": "ptq8-rans", "qat6": "ptq6-rans", "qat6-prune": "qat6",
         "qat6-alloc": "qat6", "qat5": "qat6", "qat6-alloc-60": "qat6-alloc", "qat6-alloc-all": "qat6-alloc"}
BASELINE = "ptq8-zstd"
KIND = "hinerv"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", nargs="*", default=[], help="clip files or folders (default: the shared clips)")
    ap.add_argument("--scale", type=float, default=0.25, help="downscale factor (default 0.25)")
    ap.add_argument("--frames", default="0:96", help="frame range (default 0:96)")
    ap.add_argument("--sizes", default="0.05,0.1,0.2", help="model sizes as plan bpp at 6/5 bits")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="variants to run (default: all)")
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--report-only", action="store_true")
    a = ap.parse_args(argv)
    a.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        a.size_list = [float(x) for x in a.sizes.split(",") if x]
    except ValueError:
        raise UsageError(f"--sizes must be numbers, got {a.sizes!r}") from None
    a.variant_list = [v for v in a.variants.split(",") if v]
    unknown = [v for v in a.variant_list if v not in VARIANTS]
    if unknown or not a.variant_list:
        raise UsageError(f"--variants must name some of {', '.join(VARIANTS)}")
    if not a.size_list or any(not 0 < s <= 4 for s in a.size_list):
        raise UsageError("--sizes must be bpp values in (0, 4]")
    if a.epochs < 1 or not 0 < a.scale <= 1 or (a.threads is not None and a.threads < 1):
        raise UsageError("--epochs and --threads must be at least 1, --scale in (0, 1]")
    a.frame_range = parse_range(a.frames)
    return a


def encode_point(clip: dict, variant: str, params: int, a: argparse.Namespace, workdir: str) -> dict[str, Any]:
    """Encode the clip's plan of `params` parameters with `variant`'s options; measure the decoded file."""
    path = os.path.join(workdir, "point.nvp")
    opts = EncodeOptions(kind=KIND, params=params, psnr=None, epochs=a.epochs, seed=a.seed, threads=a.threads,
                         frames=clip["src_frames"], **VARIANTS[variant])
    rec: dict[str, Any] = {"variant": variant, "params_target": params, "options": VARIANTS[variant],
                           "code": code_version(), "load_start": load_average()}
    t0 = time.perf_counter()
    try:
        summary = encode(clip["src"], path, opts, overwrite=True)
    except NvcodecError as exc:
        rec.update(error=f"{type(exc).__name__}: {exc}", load_end=load_average())
        return rec
    import nvcodec

    with nvcodec.open(path) as v:
        q = measure(v.iter_frames(None, batch_size=8), clip["ref"])
    n, h, w = clip["ref"].shape[:3]
    size = os.path.getsize(path)
    rec.update(bytes=size, bpp=size * 8 / (w * h * n), **q, params=summary["params"],
               epochs=int(sum(summary["epochs"])), encode_seconds=time.perf_counter() - t0, load_end=load_average())
    os.remove(path)
    return rec


def analyse(clip: dict[str, Any]) -> dict[str, Any]:
    """Per variant: BD-rate (PSNR) against the previous lever in the chain and against the baseline."""
    curves: dict[str, tuple[list[float], list[float]]] = {}
    for rec in clip["points"].values():
        if "bpp" in rec:
            r, q = curves.setdefault(rec["variant"], ([], []))
            r.append(rec["bpp"])
            q.append(rec["psnr"])
    points = {k: p for k, p in clip["points"].items() if "bpp" in p}
    out: dict[str, Any] = {}
    for v in VARIANTS:
        if v not in curves:
            continue
        row: dict[str, Any] = {"per_size": {}}
        anchor = STEPS.get(v)
        for key, p in points.items():
            a = points.get(f"{anchor}|{key.split('|')[1]}")
            if p["variant"] == v and a is not None:
                row["per_size"][key.split("|")[1]] = {"anchor": anchor, "bpp_pct": 100.0 * (p["bpp"] / a["bpp"] - 1.0),
                                                      "psnr_db": p["psnr"] - a["psnr"]}
        for label, anchor in (("vs_step", STEPS.get(v)), ("vs_baseline", BASELINE if v != BASELINE else None)):
            if anchor is None or anchor not in curves:
                continue
            bd = bd_rate(*curves[anchor], *curves[v])
            row[label] = {"anchor": anchor, "bd_rate_pct": bd["bd_rate_pct"], "reason": bd["reason"]}
        out[v] = row
    return out


def _pct(row: dict[str, Any], key: str) -> str:
    if key not in row:
        return "-"
    x = row[key]
    if x["bd_rate_pct"] is not None:
        return f"{x['bd_rate_pct']:+.1f}% (vs {x['anchor']})"
    return "n/a (fewer than 2 points on an RD front)" if "points" in (x["reason"] or "") else "n/a (no overlap)"


def render(data: dict[str, Any]) -> str:
    """RATE_LEVERS.md from the JSON."""
    m = data.get("machine", {})
    lines = ["# What each rate lever buys (bpp at equal PSNR)", "",
             f"Command: `{data.get('command', '')}`. Code: {sorted({p.get('code') for c in data['clips'].values() for p in c['points'].values()})}.",
             f"Machine: {m.get('cpu')}, {m.get('logical_cores')} logical cores, torch {m.get('torch')}; "
             f"load at the start of each point in the JSON (`load_start`).",
             *([data["note"]] if data.get("note") else []),
             "",
             f"Kind `{KIND}`; each clip's model sizes are the plans for the listed bpp at 6/5 bits, encoded by every "
             "variant with `--params` (the same model, no rate cap), a fixed epoch count, seed 0; bpp counts the "
             "whole file; PSNR is decoded from the file (pooled over the clip). BD-rate (PSNR, piecewise-cubic, over "
             "the PSNR range both curves cover): negative = fewer bits at equal PSNR. The variants are described in "
             "`benchmarks/rate_levers.py`.", ""]
    for ckey, clip in data["clips"].items():
        lines += [f"## {ckey}", "", clip.get("note", ""), ""]
        sizes = sorted({p["size"] for p in clip["points"].values()})
        head = "| variant | " + " | ".join(f"size {s:g}: bpp / dB" for s in sizes) + " | BD-rate vs step | vs baseline |"
        lines += [head, "|---" * (len(sizes) + 3) + "|"]
        an = clip.get("analysis", {})
        for v in VARIANTS:
            cells = []
            for s in sizes:
                p = clip["points"].get(f"{v}|{s:g}")
                if p is None:
                    cells.append("-")
                elif "error" in p:
                    cells.append("error")
                else:
                    cells.append(f"{p['bpp']:.4f} / {p['psnr']:.2f}")
            if all(c == "-" for c in cells):
                continue
            row = an.get(v, {})
            lines.append(f"| {v} | " + " | ".join(cells) + f" | {_pct(row, 'vs_step')} | {_pct(row, 'vs_baseline')} |")
        lines += ["", "The same model, each lever against the one before it (bpp change / PSNR change, per size):", "",
                  "| variant | against | " + " | ".join(f"size {s:g}" for s in sizes) + " |",
                  "|---" * (len(sizes) + 2) + "|"]
        for v in VARIANTS:
            per = an.get(v, {}).get("per_size", {})
            if not per:
                continue
            cells = [f"{per[f'{s:g}']['bpp_pct']:+.1f}% / {per[f'{s:g}']['psnr_db']:+.2f} dB" if f"{s:g}" in per else "-"
                     for s in sizes]
            lines.append(f"| {v} | {STEPS[v]} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def save(path: str, data: dict[str, Any]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, default=float)
        f.write("\n")
    os.replace(tmp, path)


def report(a: argparse.Namespace, data: dict[str, Any]) -> None:
    for clip in data["clips"].values():
        clip["analysis"] = analyse(clip)
    save(os.path.join(a.out, "rate_levers.json"), data)
    with open(os.path.join(a.out, "RATE_LEVERS.md"), "w", encoding="utf-8") as f:
        f.write(render(data))


def run(a: argparse.Namespace) -> int:
    json_path = os.path.join(a.out, "rate_levers.json")
    data: dict[str, Any] = {}
    if (a.resume or a.report_only) and os.path.exists(json_path):
        with open(json_path, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("schema") != SCHEMA:
            raise UsageError(f"{json_path} is not a {SCHEMA} file")
    elif a.report_only:
        raise UsageError(f"--report-only: {json_path} does not exist")
    if a.report_only:
        report(a, data)
        return 0
    if a.threads:
        torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    data.setdefault("schema", SCHEMA)
    data["command"] = "python benchmarks/rate_levers.py " + " ".join(shlex.quote(x) for x in a.argv)
    data["machine"] = {**describe_machine("cpu"), "cpu": cpu_model()}
    data.setdefault("clips", {})
    for path in find_clips(a.clips):
        frames = clip_frames(path, probe_video(path).frames, a.frame_range)
        ckey = clip_key(path, frames, a.scale)
        with tempfile.TemporaryDirectory(prefix="nvcodec_levers_") as workdir:
            clip = prepare_clip(path, frames, a.scale, workdir)
            n, h, w = clip["ref"].shape[:3]
            entry = data["clips"].setdefault(ckey, {"points": {}})
            entry["note"] = (f"{os.path.basename(path)} frames {frames[0]}:{frames[1]} ({n}), {w}x{h}, "
                             f"{a.epochs} epochs, {a.threads or torch.get_num_threads()} thread(s).")
            for size in a.size_list:
                params = plan_config(w, h, n, kind=KIND, bpp=size, weight_bits=6, embed_bits=5).num_params()
                for v in a.variant_list:
                    key = f"{v}|{size:g}"
                    if a.resume and "bpp" in entry["points"].get(key, {}):
                        continue
                    rec = encode_point(clip, v, params, a, workdir)
                    rec["size"] = size
                    entry["points"][key] = rec
                    print(json.dumps({"clip": ckey, "point": key, **{k: rec.get(k) for k in
                                      ("bpp", "psnr", "encode_seconds", "error")}}), flush=True)
                    report(a, data)
    report(a, data)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(parse_args(argv))
    except NvcodecError as exc:  # UsageError included: exit 2
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())

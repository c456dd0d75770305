"""Fidelity of the task path on a real network: every (INR block, injection point) pair x adapter kind.

    python benchmarks/fidelity.py ../shared/clips/*.mp4 ../shared/clips/*.mkv --frames 48 --nvp-dir /tmp/fid
    python benchmarks/fidelity.py --summary            # rebuild FIDELITY.md from the committed JSON
    python benchmarks/fidelity.py --product ../shared/clips [CLIP ...]   # the product path again (after attach changes)
    python benchmarks/fidelity.py --detection CLIP ... --det-tasks nanodet   # COCO detection mAP per clip
    python benchmarks/fidelity.py --montage CLIP ...   # Lite0/1/2 on a montage of the clips
    python benchmarks/fidelity.py --tasks-summary      # rebuild FIDELITY_DET.md

`--detection`, `--montage` and `--tasks-summary` are described in `benchmarks/fidelity_tasks.py`
(results: RESULTS/fidelity_det_<clip>.json, RESULTS/fidelity_montage.json, RESULTS/FIDELITY_DET.md).

Per clip (frames 0..N-1, encoded once with `nvcodec encode` and cached in --nvp-dir):

* the sample, split, teacher and scores are exactly `nvcodec attach`'s (`prepare`, `score_pairs`,
  `train_candidate`): the teacher is the pixel path on the INR-decoded sample frames;
* for every pair and every adapter kind within the 1% parameter budget: held-out R^2 of the
  activation, and over all N frames (and over the frames outside the attach sample) top-1
  agreement, top-5 overlap and KL against (a) the pixel path on INR-decoded frames and (b) the
  same network on the original frames; GFLOPs and latency per frame (batch 1, median of 5);
* the share of frames a constant label gets right, for (a) and (b);
* Spearman correlation between each selection score (CKA, lstsq) and the measured fidelity;
* the product path: `attach` with its defaults (teacher = INR) and with ``--source`` (teacher =
  original frames), each evaluated over all N frames, plus their attach time;
* the pixel path (INR full decode + preprocessing + full backbone) and the H.264 pipeline (PyAV
  decode of the clip itself + preprocessing + full backbone): GFLOPs and latency per frame.

Results: RESULTS/fidelity_<clip>.json and RESULTS/FIDELITY.md. Real weights only
(efficientnet_lite0 from its pip package); latency is CPU wall time, with a matmul probe at the
start and end of each clip to show contention.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import sys
import time
from typing import Any

import av
import numpy as np
import torch

import nvcodec
from nvcodec.bench.machine import compute_probe, describe_machine
from nvcodec.bench.timing import time_call
from nvcodec.codec.encode import EncodeOptions, encode
from nvcodec.route.adapter import ADAPTER_KINDS
from nvcodec.models.agreement import classification_agreement
from nvcodec.adapt.attach import (
    _features,
    attach,
    kinds_within_budget,
    prepare,
    score_pairs,
    source_frames,
    train_candidate,
)
from nvcodec.route.flops import count_flops
from nvcodec.route.infer import infer
from nvcodec.route.runtime import inr_to_geometry

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
TASK = "efficientnet_lite0"


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman rank correlation (average ranks for ties); None for fewer than 3 pairs or no spread."""
    if len(a) < 3:
        return None

    def ranks(x: list[float]) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        order = np.argsort(x, kind="mergesort")
        r = np.empty(len(x))
        i = 0
        while i < len(x):
            j = i
            while j + 1 < len(x) and x[order[j + 1]] == x[order[i]]:
                j += 1
            r[order[i:j + 1]] = (i + j) / 2.0
            i = j + 1
        return r

    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def _agree(logits: torch.Tensor, ref: torch.Tensor, idx: list[int] | None = None) -> dict[str, float]:
    if idx is not None:
        if not idx:
            return {}
        logits, ref = logits[idx], ref[idx]
    return classification_agreement(logits, ref)


def _encode(clip: str, n: int, nvp_dir: str, budget: float) -> tuple[str, dict]:
    name = os.path.splitext(os.path.basename(clip))[0]
    out = os.path.join(nvp_dir, f"{name}_{n}.nvp")
    meta = out + ".json"
    if os.path.exists(out) and os.path.exists(meta):
        with open(meta) as f:
            return out, json.load(f)
    summary = encode(clip, out, EncodeOptions(frames=(0, n), time_budget=budget, psnr=60.0, device="cpu"),
                     overwrite=True)
    with open(meta, "w") as f:
        json.dump(summary, f, default=str)
    return out, summary


def _h264_ms(clip: str, n: int, rt: Any) -> dict[str, float]:
    """PyAV decode of the clip itself (sequential, amortised per frame) + preprocess + backbone, batch 1."""
    t = time.perf_counter()
    frames = []
    with av.open(clip) as c:
        for i, fr in enumerate(c.decode(video=0)):
            if i >= n:
                break
            frames.append(fr.to_ndarray(format="rgb24"))
    decode = (time.perf_counter() - t) * 1000 / len(frames)
    one = torch.from_numpy(frames[len(frames) // 2])[None]
    pre = time_call(lambda: rt.pixel_input(one), repeat=5, warmup=1, device="cpu")["median_ms"]
    x = rt.pixel_input(one)
    with torch.inference_mode():
        net = time_call(lambda: rt.model(x), repeat=5, warmup=2, device="cpu")["median_ms"]
    return {"decode": decode, "preprocess": pre, "backbone": net, "total": decode + pre + net}


@torch.inference_mode()
def _pixel_path(video: Any, rt: Any) -> tuple[dict[str, float], dict[str, float]]:
    """INR full decode + preprocess + backbone for one frame: (ms, GFLOPs)."""
    seg = video.segments[0]
    dec, _ = video.decoder(seg, None, torch.device("cpu"))
    x_in = video.inputs(seg, [seg.start], torch.device("cpu"), None)
    frame = video.frames([seg.start])
    x = rt.pixel_input(frame)
    _, f_dec = count_flops(dec, x_in)
    _, f_net = count_flops(rt.model, x)
    ms_dec = time_call(lambda: video.frames([seg.start]), repeat=5, warmup=1, device="cpu")["median_ms"]
    ms_pre = time_call(lambda: rt.pixel_input(frame), repeat=5, warmup=1, device="cpu")["median_ms"]
    ms_net = time_call(lambda: rt.model(x), repeat=5, warmup=2, device="cpu")["median_ms"]
    return ({"decode": ms_dec, "preprocess": ms_pre, "backbone": ms_net, "total": ms_dec + ms_pre + ms_net},
            {"decode": f_dec / 1e9, "backbone": f_net / 1e9, "total": (f_dec + f_net) / 1e9})


@torch.inference_mode()
def _adapter_ms(video: Any, rt: Any, layer: int, point: str, adapter: torch.nn.Module) -> float:
    """Partial decode to `layer` + adapter + backbone tail for one frame, median of 5 (ms)."""
    m, cfg, seg = video.metadata, video.config(0), video.segments[0]
    dec, _ = video.decoder(seg, layer, torch.device("cpu"))
    x_in = video.inputs(seg, [seg.start], torch.device("cpu"), layer)

    def run() -> Any:
        f = dec.features(x_in, layer)
        a = adapter(inr_to_geometry(f.float(), rt.geometry, m.width, m.height, cfg.pad_width, cfg.pad_height))
        return rt.model.forward_from(a, point)

    return time_call(run, repeat=5, warmup=1, device="cpu")["median_ms"]


def _product_path(nvp: str, clip: str, n: int, work: str, source: bool) -> dict[str, Any]:
    """`nvcodec attach` with its defaults (optionally --source) on a copy, then `infer` over all frames."""
    path = os.path.join(work, f"attach_{'source' if source else 'inr'}.nvp")
    shutil.copy(nvp, path)
    report = attach(path, TASK, device="cpu", source=clip if source else None)
    res = infer(path, [TASK], frames=(0, n), compare_pixels=True, source=clip, device="cpu", batch_size=1)
    t = res["tasks"][TASK]
    return {"attach": {k: report[k] for k in ("chosen", "fidelity", "adapter_params", "adapter_params_pct",
                                               "gflops", "seconds", "trained_adapters", "total_pairs", "teacher")},
            "vs_pixel_path": t["agreement"], "vs_original": t["agreement_source"],
            "pixel_path_vs_original": t["pixel_agreement_source"], "gflops": t["gflops"],
            "timing_ms": t["timing_ms"], "pixel_timing_ms": t["pixel_timing_ms"], "file": path}


def _tuned(product: dict[str, Any], clip: str, n: int, epochs: int) -> dict[str, Any]:
    """`nvcodec tune --source` on a copy of the product file (teacher: source), then `infer` over all frames."""
    from nvcodec.adapt.tune import tune

    path = product["file"].replace(".nvp", "_tuned.nvp")
    shutil.copy(product["file"], path)
    r = tune(path, TASK, source=clip, epochs=epochs, device="cpu")
    res = infer(path, [TASK], frames=(0, n), compare_pixels=True, source=clip, device="cpu", batch_size=1)
    t = res["tasks"][TASK]
    return {"tune": {k: r[k] for k in ("psnr_before", "psnr_after", "fidelity_before", "fidelity_after", "epochs",
                                        "inr_lr", "adapter_lr", "loss_weights", "seconds")},
            "vs_pixel_path": t["agreement"], "vs_original": t["agreement_source"],
            "pixel_path_vs_original": t["pixel_agreement_source"], "gflops": t["gflops"],
            "timing_ms": t["timing_ms"], "pixel_timing_ms": t["pixel_timing_ms"], "file": path}


def run_clip(clip: str, n: int, nvp_dir: str, budget: float, kinds: tuple[str, ...], epochs: int,
             tune_epochs: int) -> dict[str, Any]:
    torch.manual_seed(0)
    probe_start = compute_probe("cpu")
    nvp, enc = _encode(clip, n, nvp_dir, budget)
    dev = torch.device("cpu")
    out: dict[str, Any] = {"clip": os.path.basename(clip), "frames": n, "task": TASK, "grid_epochs": epochs,
                           "encode": {k: enc.get(k) for k in ("psnr", "psnr_min", "ssim", "bpp", "bytes", "params",
                                                              "epochs", "encode_seconds")}}
    with nvcodec.open(nvp) as video:
        t0 = time.monotonic()
        data = prepare(video, TASK, None, None, dev)
        cands = score_pairs(data)
        out["scoring_seconds"] = time.monotonic() - t0
        rt = data.rt
        all_idx = list(range(n))
        unseen = [i for i in all_idx if i not in set(data.frames)]
        feats = _features(video, rt, range(video.num_layers), all_idx, 0, dev)
        decoded = video.frames(all_idx)
        original = source_frames(video, clip, all_idx)
        with torch.no_grad():
            pix = torch.cat([rt.model(rt.pixel_input(decoded[i:i + 8])) for i in range(0, n, 8)])
            org = torch.cat([rt.model(rt.pixel_input(original[i:i + 8])) for i in range(0, n, 8)])
        out["pixel_path_vs_original"] = {"all": _agree(pix, org), "unseen": _agree(pix, org, unseen)}
        out["constant_label_share"] = {"pixel_path": _agree(pix, pix)["constant_label_share"],
                                       "original": _agree(org, org)["constant_label_share"]}
        ms, gf = _pixel_path(video, rt)
        out["pixel_path"] = {"ms": ms, "gflops": gf}
        out["h264_path"] = {"ms": _h264_ms(clip, n, rt), "gflops": {"backbone": gf["backbone"]}}
        rows = []
        for c in cands:
            for kind in kinds_within_budget(data, c, kinds):
                r = train_candidate(data, c, kind, epochs=epochs)
                k, p = c.key
                with torch.no_grad():
                    logits = torch.cat([rt.model.forward_from(r["adapter"].stored(r.get("bits"))(feats[k][i:i + 8]), p) for i in range(0, n, 8)])
                rows.append({
                    "inr_layer": k, "injection_point": p, "kind": kind, "cka": c.cka, "lstsq_fidelity": c.lstsq,
                    "heldout_fidelity": r["fidelity"], "r2": r["fit"].val_metrics["r2"],
                    "params": r["adapter"].num_parameters(),
                    "params_pct": 100.0 * r["adapter"].num_parameters() / data.backbone_params,
                    "gflops": r["gflops"], "ms": _adapter_ms(video, rt, k, p, r["adapter"]),
                    "train_seconds": r["fit"].seconds, "epochs_run": r["fit"].epochs_run,
                    "vs_pixel_path": {"all": _agree(logits, pix), "unseen": _agree(logits, pix, unseen)},
                    "vs_original": {"all": _agree(logits, org), "unseen": _agree(logits, org, unseen)},
                })
                print(f"  {out['clip']} block {k} -> {p} {kind}: held-out fidelity {r['fidelity']:.3f}, "
                      f"top-1 vs original {rows[-1]['vs_original']['all']['top1_agreement']:.2f}", file=sys.stderr)
        out["pairs"] = rows
        out["sample"] = {"frames": data.frames, "train": data.train, "val": data.val, "unseen": unseen}
    best = {}
    for r in rows:
        key = (r["inr_layer"], r["injection_point"])
        if key not in best or r["heldout_fidelity"] > best[key]["heldout_fidelity"]:
            best[key] = r
    linear = [r for r in rows if r["kind"] == "linear"]
    out["selection"] = {
        "spearman_cka_vs_best_fidelity": spearman([r["cka"] for r in best.values()],
                                                  [r["heldout_fidelity"] for r in best.values()]),
        "spearman_lstsq_vs_best_fidelity": spearman([r["lstsq_fidelity"] for r in best.values()],
                                                    [r["heldout_fidelity"] for r in best.values()]),
        "spearman_cka_vs_linear_fidelity": spearman([r["cka"] for r in linear], [r["heldout_fidelity"] for r in linear]),
        "spearman_lstsq_vs_linear_fidelity": spearman([r["lstsq_fidelity"] for r in linear],
                                                      [r["heldout_fidelity"] for r in linear]),
        "spearman_cka_vs_kl_original": spearman([r["cka"] for r in best.values()],
                                                [-r["vs_original"]["all"]["mean_kl"] for r in best.values()]),
        "spearman_lstsq_vs_kl_original": spearman([r["lstsq_fidelity"] for r in best.values()],
                                                  [-r["vs_original"]["all"]["mean_kl"] for r in best.values()]),
    }
    out["product"] = product_paths(nvp, clip, n, nvp_dir, tune_epochs)
    out["probe"] = {"start": probe_start, "end": compute_probe("cpu")}
    return out


def product_paths(nvp: str, clip: str, n: int, nvp_dir: str, tune_epochs: int) -> dict[str, Any]:
    """attach with its defaults (teacher INR, then --source), and tune on the second; each inferred over all frames."""
    work = os.path.join(nvp_dir, "work", os.path.splitext(os.path.basename(clip))[0])
    os.makedirs(work, exist_ok=True)
    out = {"teacher_inr": _product_path(nvp, clip, n, work, False),
           "teacher_source": _product_path(nvp, clip, n, work, True)}
    if tune_epochs:
        out["tuned"] = _tuned(out["teacher_source"], clip, n, tune_epochs)
    return out


def retime(result: dict[str, Any], nvp_dir: str, clip_dir: str) -> None:
    """Measure every latency of a result again (for a run made while the machine was busy).

    Latency depends on the adapter's shape, not its weights: each pair is timed with an adapter of
    its kind and size; the product paths are timed again by `infer` on their attached copies.
    """
    from nvcodec.route.adapter import MicroAdapter

    name = os.path.splitext(result["clip"])[0]
    nvp = os.path.join(nvp_dir, f"{name}_{result['frames']}.nvp")
    clip = os.path.join(clip_dir, result["clip"])
    probe_start = compute_probe("cpu")
    with nvcodec.open(nvp) as video:
        data = prepare(video, TASK, None, None, torch.device("cpu"))
        rt = data.rt
        ms, _ = _pixel_path(video, rt)
        result["pixel_path"]["ms"] = ms
        result["h264_path"]["ms"] = _h264_ms(clip, result["frames"], rt)
        for row in result["pairs"]:
            k, p = row["inr_layer"], row["injection_point"]
            adapter = MicroAdapter(int(data.inr[k].shape[1]), int(data.targets[p].shape[1]),
                                   tuple(data.targets[p].shape[-2:]), kind=row["kind"]).eval()
            row["ms"] = _adapter_ms(video, rt, k, p, adapter)
    for pr in result["product"].values():
        if not os.path.exists(pr["file"]):
            continue
        res = infer(pr["file"], [TASK], frames=(0, result["frames"]), compare_pixels=True, device="cpu", batch_size=1)
        pr["timing_ms"], pr["pixel_timing_ms"] = res["tasks"][TASK]["timing_ms"], res["tasks"][TASK]["pixel_timing_ms"]
    result["probe_retime"] = {"start": probe_start, "end": compute_probe("cpu"), "threads": torch.get_num_threads()}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _f(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def summary(results: list[dict[str, Any]], machine: dict[str, Any] | None) -> str:
    """FIDELITY.md: the product path per clip, then where each clip falls short, then the selection scores."""
    lines = ["# Task-path fidelity with real weights (EfficientNet-Lite0)", "",
             "Generated by `benchmarks/fidelity.py` from the `fidelity_*.json` files beside this one.", ""]
    if machine:
        lines += [f"Machine: {machine.get('cpu')}, {machine.get('usable_cores')} cores, torch "
                  f"{machine.get('torch')}, {machine.get('torch_threads')} torch threads, no GPU.", ""]
    epochs = ", ".join(f"{r['clip']} {r.get('grid_epochs', 10)}" for r in results)
    retimed = [f"{r['clip']} ({r['probe_retime'].get('threads', '?')} threads)" for r in results if "probe_retime" in r]
    lines += [f"Grid: every pair x adapter kind, trained for these epochs: {epochs}; the product path is "
              "`attach` and `tune` with their defaults. Attach and tune seconds come from runs that shared the "
              "machine with other benchmark processes (1 torch thread each), so they are inflated. Latencies "
              + (f"were measured again on the idle machine (`--retime`): {', '.join(retimed)}." if retimed
                 else "come from the same shared runs."), ""]
    lines += ["## The product path (`nvcodec attach` defaults, then `nvcodec infer`), all frames", "",
              "| clip | INR PSNR | pixel path vs original: top-1 / top-5 / KL | constant label (orig) | teacher | chosen | "
              "vs pixel path: top-1 / top-5 / KL | vs original: top-1 / top-5 / KL | GFLOPs nvcodec / pixel | "
              "ms nvcodec / pixel / H.264 | attach s |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        pv = r["pixel_path_vs_original"]["all"]
        rows = [("INR", r["product"]["teacher_inr"]), ("source", r["product"]["teacher_source"])]
        if "tuned" in r["product"]:
            rows.append(("source + tune", {**r["product"]["tuned"], "attach": r["product"]["teacher_source"]["attach"]}))
        for teacher, pr in rows:
            ch = pr["attach"]["chosen"]
            a, o = pr["vs_pixel_path"], pr["vs_original"]
            lines.append(
                f"| {r['clip']} | {_f(r['encode']['psnr'])} dB | {_pct(pv['top1_agreement'])} / {_f(pv['top5_overlap'])} / "
                f"{_f(pv['mean_kl'], '.3f')} | {_pct(r['constant_label_share']['original'])} | {teacher} | "
                f"block {ch['inr_layer']} -> {ch['injection_point']} ({ch['adapter_kind']}) | "
                f"{_pct(a['top1_agreement'])} / {_f(a['top5_overlap'])} / {_f(a['mean_kl'], '.3f')} | "
                f"{_pct(o['top1_agreement'])} / {_f(o['top5_overlap'])} / {_f(o['mean_kl'], '.3f')} | "
                f"{_f(pr['gflops']['adapter_path'])} / {_f(pr['gflops']['pixel_path'])} | "
                f"{_f(pr['timing_ms']['total'], '.1f')} / {_f(pr['pixel_timing_ms']['total'], '.1f')} / "
                f"{_f(r['h264_path']['ms']['total'], '.1f')} | {_f(pr['attach']['seconds'], '.0f')} |")
    tuned = [r for r in results if "tuned" in r["product"]]
    if tuned:
        lines += ["", "## What joint optimization (`nvcodec tune --source`) adds", "",
                  "| clip | PSNR before -> after | task fidelity before -> after | top-1 vs original before -> after | "
                  "KL vs original before -> after | tune s |", "|---|---|---|---|---|---|"]
        for r in tuned:
            t, b, a = r["product"]["tuned"], r["product"]["teacher_source"]["vs_original"], r["product"]["tuned"]["vs_original"]
            lines.append(f"| {r['clip']} | {t['tune']['psnr_before']:.2f} -> {t['tune']['psnr_after']:.2f} dB | "
                         f"{t['tune']['fidelity_before']:.3f} -> {t['tune']['fidelity_after']:.3f} | "
                         f"{_pct(b['top1_agreement'])} -> {_pct(a['top1_agreement'])} | "
                         f"{b['mean_kl']:.3f} -> {a['mean_kl']:.3f} | {t['tune']['seconds']:.0f} |")
    lines += ["", "## Every pair: best kind per pair (held-out fidelity), all frames", ""]
    for r in results:
        lines += [f"### {r['clip']}", "",
                  "| block -> point | kind | CKA | lstsq | held-out fidelity | R^2 | vs pixel top-1 / KL | "
                  "vs original top-1 / top-5 / KL | unseen vs original top-1 | GFLOPs | ms | params % |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        best: dict[tuple, dict] = {}
        for p in r["pairs"]:
            key = (p["inr_layer"], p["injection_point"])
            if key not in best or p["heldout_fidelity"] > best[key]["heldout_fidelity"]:
                best[key] = p
        for p in sorted(best.values(), key=lambda p: -p["heldout_fidelity"]):
            a, o = p["vs_pixel_path"]["all"], p["vs_original"]["all"]
            u = p["vs_original"]["unseen"]
            lines.append(f"| {p['inr_layer']} -> {p['injection_point']} | {p['kind']} | {p['cka']:.3f} | "
                         f"{p['lstsq_fidelity']:.3f} | {p['heldout_fidelity']:.3f} | {p['r2']:.2f} | "
                         f"{_pct(a['top1_agreement'])} / {a['mean_kl']:.3f} | {_pct(o['top1_agreement'])} / "
                         f"{o['top5_overlap']:.2f} / {o['mean_kl']:.3f} | {_pct(u.get('top1_agreement'))} | "
                         f"{p['gflops']:.3f} | {p['ms']:.1f} | {p['params_pct']:.3f} |")
        kinds: dict[str, list[float]] = {}
        for p in r["pairs"]:
            kinds.setdefault(p["kind"], []).append(p["heldout_fidelity"])
        lines += ["", "Mean held-out fidelity by adapter kind: " + ", ".join(
            f"{k} {statistics.mean(v):.3f}" for k, v in kinds.items()), ""]
    lines += ["## Selection scores: Spearman correlation with the measured fidelity", "",
              "| clip | CKA vs best-kind fidelity | lstsq vs best-kind fidelity | CKA vs linear fidelity | "
              "lstsq vs linear fidelity | CKA vs -KL(original) | lstsq vs -KL(original) |",
              "|---|---|---|---|---|---|---|"]
    for r in results:
        s = r["selection"]
        lines.append(f"| {r['clip']} | {_f(s['spearman_cka_vs_best_fidelity'])} | {_f(s['spearman_lstsq_vs_best_fidelity'])} | "
                     f"{_f(s['spearman_cka_vs_linear_fidelity'])} | {_f(s['spearman_lstsq_vs_linear_fidelity'])} | "
                     f"{_f(s['spearman_cka_vs_kl_original'])} | {_f(s['spearman_lstsq_vs_kl_original'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clips", nargs="*")
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--encode-budget", type=float, default=900.0, help="fitting seconds per clip (CPU)")
    ap.add_argument("--nvp-dir", default="/tmp/nvcodec-fidelity")
    ap.add_argument("--kinds", default=",".join(ADAPTER_KINDS))
    ap.add_argument("--epochs", type=int, default=10, help="adapter epochs in the grid (attach itself uses 30)")
    ap.add_argument("--tune-epochs", type=int, default=5, help="nvcodec tune epochs on the product file (0: skip)")
    ap.add_argument("--out", default=RESULTS)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--summary", action="store_true", help="only rebuild FIDELITY.md from the JSON files")
    ap.add_argument("--retime", metavar="CLIP_DIR", help="re-measure the latencies of the JSON files (idle machine)")
    ap.add_argument("--product", metavar="CLIP_DIR",
                    help="run only the product path (attach defaults, --source, tune) again for the JSON files")
    g = ap.add_argument_group("detection and montage (benchmarks/fidelity_tasks.py)")
    g.add_argument("--detection", action="store_true", help="COCO detection fidelity per clip")
    g.add_argument("--montage", action="store_true", help="classification fidelity on a montage of the clips")
    g.add_argument("--tasks-summary", action="store_true", help="only rebuild FIDELITY_DET.md from the JSON files")
    g.add_argument("--det-tasks", default="nanodet", help="registered detection tasks, comma separated")
    g.add_argument("--cls-tasks", default="efficientnet_lite0,efficientnet_lite1,efficientnet_lite2")
    g.add_argument("--width", type=int, default=416, help="detection: clips fitted to this width (aspect kept)")
    g.add_argument("--montage-size", default="320x180", metavar="WxH")
    g.add_argument("--piece-frames", type=int, default=24, help="montage: frames per clip")
    g.add_argument("--piece-start", type=int, default=0, help="montage: first frame taken from each clip")
    g.add_argument("--timing-frames", type=int, default=8, help="detection: frames per timed pass")
    g.add_argument("--repeat", type=int, default=3, help="detection: timed passes (median)")
    g.add_argument("--encode-bpp", type=float, help="montage: encode at this bpp (default: the encoder's default)")
    g.add_argument("--det-ablation", action="store_true", help="detection: also attach with distill=0")
    a = ap.parse_args(argv)
    torch.set_num_threads(max(1, a.threads))
    if a.detection or a.montage or a.tasks_summary:
        return tasks_main(a)
    os.makedirs(a.out, exist_ok=True)
    os.makedirs(a.nvp_dir, exist_ok=True)
    machine = describe_machine("cpu")
    for clip in ([] if a.summary or a.product else a.clips):
        r = run_clip(clip, a.frames, a.nvp_dir, a.encode_budget, tuple(a.kinds.split(",")), a.epochs, a.tune_epochs)
        r["machine"] = machine
        name = os.path.splitext(os.path.basename(clip))[0]
        with open(os.path.join(a.out, f"fidelity_{name}.json"), "w") as f:
            json.dump(r, f, indent=1, default=float)
    results = []
    for path in sorted(glob.glob(os.path.join(a.out, "fidelity_*.json"))):
        if os.path.basename(path).startswith(("fidelity_det_", "fidelity_montage")):
            continue  # --detection / --montage results (FIDELITY_DET.md)
        with open(path) as f:
            results.append(json.load(f))
        if a.product and (not a.clips or results[-1]["clip"] in {os.path.basename(c) for c in a.clips}):
            r = results[-1]
            name = os.path.splitext(r["clip"])[0]
            r["product"] = product_paths(os.path.join(a.nvp_dir, f"{name}_{r['frames']}.nvp"),
                                         os.path.join(a.product, r["clip"]), r["frames"], a.nvp_dir, a.tune_epochs)
            r["product_machine"] = machine
        if a.retime:
            retime(results[-1], a.nvp_dir, a.retime)
        if "product_machine" in results[-1] or a.retime:
            with open(path, "w") as f:
                json.dump(results[-1], f, indent=1, default=float)
    with open(os.path.join(a.out, "FIDELITY.md"), "w") as f:
        f.write(summary(results, results[0].get("machine") if results else machine))
    return 0


def tasks_main(a: argparse.Namespace) -> int:
    """--detection / --montage / --tasks-summary: see `benchmarks/fidelity_tasks.py`."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import fidelity_tasks as ft

    os.makedirs(a.out, exist_ok=True)
    os.makedirs(a.nvp_dir, exist_ok=True)
    mach = ft.machine()
    if a.detection:
        for clip in a.clips:
            r = ft.run_detection_clip(clip, a.frames, a.width, a.nvp_dir, a.encode_budget,
                                      [t for t in a.det_tasks.split(",") if t], a.timing_frames, a.repeat,
                                      a.det_ablation)
            r["machine"] = mach
            name = os.path.splitext(os.path.basename(clip))[0]
            path = os.path.join(a.out, f"fidelity_det_{name}.json")
            if os.path.exists(path):  # another task on the same frames (e.g. --det-tasks centernet later): keep both
                with open(path) as f:
                    old = json.load(f)
                if (old.get("frames"), old.get("size")) == (r["frames"], r["size"]):
                    r["tasks"] = {**{k: v for k, v in old["tasks"].items() if k not in r["tasks"]}, **r["tasks"]}
            with open(path, "w") as f:
                json.dump(r, f, indent=1, default=float)
    if a.montage:
        w, h = (int(v) for v in a.montage_size.lower().split("x"))
        r = ft.run_montage(a.clips, a.piece_frames, a.piece_start, w, h, a.nvp_dir, a.encode_budget,
                           [t for t in a.cls_tasks.split(",") if t], a.encode_bpp)
        r["machine"] = mach
        tag = f"_bpp{a.encode_bpp:g}" if a.encode_bpp else ""
        with open(os.path.join(a.out, f"fidelity_montage{tag}.json"), "w") as f:
            json.dump(r, f, indent=1, default=float)
    det, mont = [], []
    for path in sorted(glob.glob(os.path.join(a.out, "fidelity_det_*.json"))):
        with open(path) as f:
            det.append(json.load(f))
    for path in sorted(glob.glob(os.path.join(a.out, "fidelity_montage*.json"))):
        with open(path) as f:
            mont.append(json.load(f))
    md = os.path.join(a.out, "FIDELITY_DET.md")
    kept = ""
    if os.path.exists(md):  # a hand-written discussion below the marker survives regeneration
        with open(md) as f:
            text = f.read()
        if ft.DISCUSSION in text:
            kept = "\n" + text[text.index(ft.DISCUSSION):]
    with open(md, "w") as f:
        f.write(ft.summary(det, mont) + kept)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Task fidelity on real weights beyond one classifier: COCO detection per clip, and classification on
a montage whose answers change, each beside a noise floor. Run through `benchmarks/fidelity.py`:

    python benchmarks/fidelity.py --detection CLIP [CLIP ...] --det-tasks nanodet[,centernet]
    python benchmarks/fidelity.py --montage CLIP [CLIP ...] --cls-tasks efficientnet_lite0,efficientnet_lite1,efficientnet_lite2
    python benchmarks/fidelity.py --tasks-summary      # rebuild FIDELITY_DET.md from the committed JSON

**Originals.** Every clip is first fitted to a modest size (centre crop to the aspect ratio, resize;
`nvcodec.bench.montage.fit_frames`) and written as a PNG folder: that folder is the original video
the `.nvp` is encoded from, the H.264 file is encoded from, `attach --source` reads, and every
agreement is measured against (conversion A: nvcodec's reader, bicubic chroma with accurate
rounding). Conversion B is PyAV's default ``frame.to_ndarray(format="rgb24")`` of the same source
frames, fitted the same way; B against A is the noise floor.

**Detection** (per clip, `--det-tasks`, any registered detection task): `nvcodec encode` (cached in
--nvp-dir), `attach` with its defaults on a copy (time recorded), then over all frames the
detector's boxes on: the original frames (A), the second conversion (B), the INR-decoded frames
(pixel path), the adapter path (`infer`'s route) and H.264 (x264 via PyAV at the `.nvp`'s bpp,
CRF matched by `nvcodec.bench.crf.match_bpp`). The pseudo ground truth is A's boxes with score >=
the task's own threshold; each path's boxes down to `PRED_THRESHOLD` are ranked (COCO-style mAP,
`nvcodec.bench.detection`). GFLOPs (one frame, FlopCounterMode) and latency (batch 1, median of
--repeat passes over --timing-frames frames) of the adapter, pixel and H.264 paths.
`--det-ablation` also attaches with ``distill=0`` (feature loss only: no score and no box
regression terms through the frozen head) to show what those terms add.

**Montage**: `--pieces-frames` frames from each clip given (one piece per clip, starting at
`--piece-start`), fitted to one size and joined; per classification task, `attach` (teacher: INR)
and `attach --source` (teacher: original montage), top-1 agreement / top-5 overlap / KL of the
adapter path and the pixel path against the original frames, per piece and overall, beside the
constant-label share and the noise floor (B vs A).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from typing import Any

import numpy as np
import torch

import nvcodec
from nvcodec.adapt.attach import attach
from nvcodec.bench import paths as P
from nvcodec.bench.crf import CRF_RANGE, codec_route, encode_crf, match_bpp
from nvcodec.bench.detection import map_report
from nvcodec.bench.machine import compute_probe, describe_machine
from nvcodec.bench.montage import build_montage, constant_label_share, fit_frames
from nvcodec.codec.encode import EncodeOptions, encode
from nvcodec.models.agreement import classification_agreement
from nvcodec.route.infer import task_threshold
from nvcodec.video.writer import write_png_dir

PRED_THRESHOLD = 0.05
"""Each path's boxes down to this score are ranked for mAP (COCO evaluates detectors' low-score boxes too)."""
DISCUSSION = "<!-- discussion: written by hand, kept when the tables above are regenerated -->"
ATTACH_KEYS = ("chosen", "fidelity", "adapter_params", "adapter_params_pct", "gflops", "seconds",
               "trained_adapters", "total_pairs", "teacher", "warnings", "distill", "sample_frames")


def _load() -> dict[str, float]:
    one, five, fifteen = os.getloadavg()
    return {"load1": one, "load5": five, "load15": fifteen, "time": time.strftime("%H:%M:%S", time.gmtime())}


def fitted_size(width: int, height: int, target_width: int) -> tuple[int, int]:
    """(w, h) with w = `target_width` (at most the clip's width), h keeping the aspect ratio, both even."""
    w = min(target_width, width) // 2 * 2
    return w, max(2, round(height * w / width / 2) * 2)


def original(clip: str, n: int, width: int, work: str) -> tuple[str, np.ndarray, np.ndarray, float]:
    """The clip's first `n` frames fitted to `width` as a PNG folder (the original), its frames under
    conversions A and B, and the clip's frame rate."""
    from nvcodec.bench.montage import clip_frames
    from nvcodec.video import probe_video

    info = probe_video(clip)
    w, h = fitted_size(info.width, info.height, width)
    a = fit_frames(clip_frames(clip, 0, n, "nvcodec"), w, h)
    b = fit_frames(clip_frames(clip, 0, n, "pyav"), w, h)
    name = os.path.splitext(os.path.basename(clip))[0]
    folder = os.path.join(work, f"{name}_{w}x{h}_{n}")
    if not os.path.isdir(folder):
        write_png_dir(folder, a)
    return folder, a, b, float(info.fps or 25.0)


def encode_cached(src: str, out: str, budget: float, bpp: float | None = None) -> dict[str, Any]:
    """`nvcodec encode` of the PNG folder `src` (all frames) into `out` (at `bpp`, else the encoder's
    default size), reused when already there."""
    meta = out + ".json"
    if os.path.exists(out) and os.path.exists(meta):
        with open(meta) as f:
            return json.load(f)
    summary = encode(src, out, EncodeOptions(time_budget=budget, psnr=60.0, device="cpu", bpp=bpp), overwrite=True)
    with open(meta, "w") as f:
        json.dump(summary, f, default=str)
    return summary


def h264_at_bpp(frames: np.ndarray, fps: float, bpp: float, path: str) -> dict[str, Any]:
    """x264 (PyAV, preset medium) of `frames` at the CRF whose bpp is closest to `bpp`; the file is at `path`."""
    route = codec_route("x264")
    lo, hi = CRF_RANGE[route["encoder"]]
    tries: dict[float, dict[str, Any]] = {}

    def bpp_at(crf: float) -> float:
        r = encode_crf(frames, f"{path}.crf{crf}.mp4", fps, route, crf, preset=None, threads=1)
        tries[r["crf"]] = r
        return r["bpp"]

    m = match_bpp(bpp_at, bpp, lo, hi, max_encodes=10)
    os.replace(f"{path}.crf{m['crf']}.mp4", path)
    for c in tries:
        if os.path.exists(f"{path}.crf{c}.mp4"):
            os.remove(f"{path}.crf{c}.mp4")
    return {**m, "target_bpp": bpp, "route": route, "encode_seconds": tries[m["crf"]]["encode_seconds"]}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of two uint8 frame stacks, pooled over all pixels."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def _timing(run: P.PathRun) -> dict[str, Any]:
    d = run.timing.to_dict()
    return {"total_ms": d["total_ms"], "stages_ms": d["stages_ms"], "min_ms": d["min_ms"], "max_ms": d["max_ms"],
            "repeat": d["repeat"], "frames_per_pass": d["frames_per_pass"]}


def _head(t: P.TaskSetup, raws: list[Any], threshold: float) -> list[list[dict]]:
    out: list[list[dict]] = []
    for raw in raws:
        out.extend(t.rt.spec.postprocess(raw, t.rt.geometry, t.rt.geometry.frame_hw, threshold=threshold,
                                         model=t.rt.model))
    return out


@torch.inference_mode()
def eval_detection(path: str, task: str, a: np.ndarray, b: np.ndarray, h264: str, timing_frames: int,
                   repeat: int) -> dict[str, Any]:
    """Every path's boxes against the detector on conversion A (see the module docstring)."""
    dev = torch.device("cpu")
    n = len(a)
    units = [[i] for i in range(n)]
    with nvcodec.open(path) as video:
        t = P.load_task(video, task, None, dev, PRED_THRESHOLD)
        thr = task_threshold(t.rt.spec, None)
        raw_a, _ = P.pixel_outputs(t, a, units, dev)
        refs = _head(t, raw_a, thr)
        raw_b, preds_b = P.pixel_outputs(t, b, units, dev)
        decoded = video.frames(list(range(n)))
        raw_px, preds_px = P.pixel_outputs(t, decoded, units, dev)
        raw_ad, preds_ad = P.nvcodec_outputs(t, video, units, dev)
        h264_frames = P.decode_codec_file(h264, a.shape[2], a.shape[1], 1)[:n]
        raw_h, preds_h = P.pixel_outputs(t, h264_frames, units, dev)
        spec = t.rt.spec
        ra = spec.concat_raw(raw_a)
        out: dict[str, Any] = {
            "task": task, "threshold": thr, "pred_threshold": PRED_THRESHOLD,
            "reference_boxes_per_frame": sum(len(f) for f in refs) / n,
            "reference_labels": sorted({d["label"] for f in refs for d in f}),
            "noise_floor": map_report(preds_b, refs, thr),
            "pixel_path": map_report(preds_px, refs, thr),
            "adapter_path": map_report(preds_ad, refs, thr),
            "h264_path": map_report(preds_h, refs, thr),
            "fidelity_vs_original": {k: float(spec.fidelity(spec.concat_raw(r), ra)) for k, r in
                                     (("noise_floor", raw_b), ("pixel_path", raw_px), ("adapter_path", raw_ad),
                                      ("h264_path", raw_h))},
            "adapter_fidelity_vs_pixel_path": float(spec.fidelity(spec.concat_raw(raw_ad), spec.concat_raw(raw_px))),
            "route": {"inr_layer": t.inr_layer, "injection_point": t.point,
                      "adapter_kind": t.entry.get("adapter_kind")},
        }
        out["gflops"] = {"adapter_path": P.nvcodec_flops(t, video, [0], dev),
                         "pixel_path": P.inr_pixels_flops(t, video, [0], dev),
                         "h264_path": P.codec_flops(t, a[[0]], dev)}
        tu = units[:timing_frames]
        out["latency"] = {
            "adapter_path": _timing(P.nvcodec_path(t, video, tu, repeat=repeat, warmup=1, device=dev)),
            "pixel_path": _timing(P.inr_pixels_path(t, video, tu, repeat=repeat, warmup=1, device=dev)),
            "h264_path": _timing(P.codec_path(t, h264, n, tu, repeat=repeat, warmup=1, device=dev, threads=1)),
        }
    g = out["gflops"]
    out["gflops_ratio_adapter_vs_pixel"] = g["adapter_path"]["total"] / g["pixel_path"]["total"]
    out["latency_ratio_adapter_vs_pixel"] = (out["latency"]["adapter_path"]["total_ms"]
                                             / out["latency"]["pixel_path"]["total_ms"])
    return out


def _attach(src: str, dst: str, task: str, **kw: Any) -> dict[str, Any]:
    shutil.copy(src, dst)
    t0 = time.monotonic()
    rep = attach(dst, task, device="cpu", **kw)
    rep["wall_seconds"] = time.monotonic() - t0
    return {k: rep.get(k) for k in (*ATTACH_KEYS, "wall_seconds")}


def run_detection_clip(clip: str, n: int, width: int, nvp_dir: str, budget: float, tasks: list[str],
                       timing_frames: int, repeat: int, ablation: bool) -> dict[str, Any]:
    torch.manual_seed(0)
    load_start, probe_start = _load(), compute_probe("cpu")
    name = os.path.splitext(os.path.basename(clip))[0]
    work = os.path.join(nvp_dir, "det", name)
    os.makedirs(work, exist_ok=True)
    src, a, b, fps = original(clip, n, width, work)
    nvp = os.path.join(work, f"{name}_{a.shape[2]}x{a.shape[1]}_{n}.nvp")
    enc = encode_cached(src, nvp, budget)
    h264 = os.path.join(work, "h264.mp4")
    h = h264_at_bpp(a, fps, float(enc["bpp"]), h264)
    h["psnr"] = _psnr(P.decode_codec_file(h264, a.shape[2], a.shape[1], 1)[:n], a)
    out: dict[str, Any] = {
        "clip": os.path.basename(clip), "frames": n, "size": [int(a.shape[2]), int(a.shape[1])],
        "conversion_psnr_b_vs_a": _psnr(b, a),
        "encode": {k: enc.get(k) for k in ("psnr", "psnr_min", "ssim", "bpp", "bytes", "params", "epochs",
                                            "encode_seconds")},
        "encode_time_budget_s": budget, "h264": h, "tasks": {}, "load_start": load_start,
    }
    for task in tasks:
        res: dict[str, Any] = {}
        path = os.path.join(work, f"{task}.nvp")
        res["attach"] = _attach(nvp, path, task)
        res.update(eval_detection(path, task, a, b, h264, timing_frames, repeat))
        print(f"  {out['clip']} {task}: adapter mAP@0.5 {res['adapter_path']['map50']}, pixel "
              f"{res['pixel_path']['map50']}, H.264 {res['h264_path']['map50']}, floor {res['noise_floor']['map50']}, "
              f"attach {res['attach']['wall_seconds']:.0f} s", file=sys.stderr)
        if ablation:
            path0 = os.path.join(work, f"{task}_distill0.nvp")
            abl = {"attach": _attach(nvp, path0, task, distill=0.0)}
            abl.update(eval_detection(path0, task, a, b, h264, 1, 1))
            res["ablation_distill0"] = {k: abl[k] for k in ("attach", "adapter_path", "route", "gflops_ratio_adapter_vs_pixel",
                                                            "fidelity_vs_original")}
        out["tasks"][task] = res
    out["probe"] = {"start": probe_start, "end": compute_probe("cpu")}
    out["load_end"] = _load()
    return out


@torch.inference_mode()
def eval_classification(path: str, task: str, a: np.ndarray, b: np.ndarray, layout: list[dict]) -> dict[str, Any]:
    """Top-1 / top-5 / KL of the adapter path, pixel path and conversion B against conversion A."""
    dev = torch.device("cpu")
    n = len(a)
    units = [[i] for i in range(n)]
    with nvcodec.open(path) as video:
        t = P.load_task(video, task, None, dev, None)
        spec = t.rt.spec

        def logits(raws: list[Any]) -> torch.Tensor:
            r = spec.concat_raw(raws)
            return r if isinstance(r, torch.Tensor) else r["logits"]

        la = logits(P.pixel_outputs(t, a, units, dev)[0])
        lb = logits(P.pixel_outputs(t, b, units, dev)[0])
        lp = logits(P.pixel_outputs(t, video.frames(list(range(n))), units, dev)[0])
        lad = logits(P.nvcodec_outputs(t, video, units, dev)[0])
        labels = spec.labels or ()
        top = la.argmax(-1)
        out = {"task": task, "constant_label_share": constant_label_share(top.numpy()),
               "adapter_path": classification_agreement(lad, la), "pixel_path": classification_agreement(lp, la),
               "noise_floor": classification_agreement(lb, la),
               "adapter_vs_pixel_path": classification_agreement(lad, lp),
               "route": {"inr_layer": t.inr_layer, "injection_point": t.point,
                         "adapter_kind": t.entry.get("adapter_kind")},
               "gflops": {"adapter_path": P.nvcodec_flops(t, video, [0], dev)["total"],
                          "pixel_path": P.inr_pixels_flops(t, video, [0], dev)["total"]}, "pieces": []}
        for piece in layout:
            lo, hi = piece["montage_frames"]
            idx = list(range(lo, hi))
            common = int(torch.bincount(top[idx]).argmax())
            out["pieces"].append({
                "clip": os.path.basename(piece["clip"]), "frames": [lo, hi],
                "most_common_label": labels[common] if common < len(labels) else str(common),
                "adapter_top1": classification_agreement(lad[idx], la[idx])["top1_agreement"],
                "pixel_top1": classification_agreement(lp[idx], la[idx])["top1_agreement"],
                "noise_floor_top1": classification_agreement(lb[idx], la[idx])["top1_agreement"]})
    return out


def montage_name(clips: int, count: int, width: int, height: int, bpp: float | None) -> str:
    """The montage's name: pieces x frames, size, and the encode bpp when one was asked for."""
    return f"montage_{clips}x{count}_{width}x{height}" + (f"_bpp{bpp:g}" if bpp else "")


def run_montage(clips: list[str], count: int, start: int, width: int, height: int, nvp_dir: str, budget: float,
                tasks: list[str], bpp: float | None = None) -> dict[str, Any]:
    torch.manual_seed(0)
    load_start, probe_start = _load(), compute_probe("cpu")
    pieces = [(c, start) for c in clips]
    a, layout = build_montage(pieces, count, width, height, "nvcodec")
    b, _ = build_montage(pieces, count, width, height, "pyav")
    name = montage_name(len(clips), count, width, height, bpp)
    work = os.path.join(nvp_dir, "montage", name) if bpp else os.path.join(nvp_dir, "montage")
    os.makedirs(work, exist_ok=True)
    src = os.path.join(work, name)
    if not os.path.isdir(src):
        write_png_dir(src, a)
    nvp = os.path.join(work, f"{name}.nvp")
    enc = encode_cached(src, nvp, budget, bpp)
    out: dict[str, Any] = {
        "clip": name, "encode_bpp": bpp, "frames": len(a), "size": [width, height], "layout": layout,
        "conversion_psnr_b_vs_a": _psnr(b, a),
        "encode": {k: enc.get(k) for k in ("psnr", "psnr_min", "ssim", "bpp", "bytes", "params", "epochs",
                                            "encode_seconds")},
        "encode_time_budget_s": budget, "tasks": {}, "load_start": load_start,
    }
    for task in tasks:
        res = {}
        for teacher in ("inr", "source"):
            path = os.path.join(work, f"{task}_{teacher}.nvp")
            r = {"attach": _attach(nvp, path, task, **({"source": src} if teacher == "source" else {}))}
            r.update(eval_classification(path, task, a, b, layout))
            res[teacher] = r
            print(f"  montage {task} teacher {teacher}: top-1 vs original {r['adapter_path']['top1_agreement']:.2f} "
                  f"(pixel {r['pixel_path']['top1_agreement']:.2f}, floor {r['noise_floor']['top1_agreement']:.2f}, "
                  f"constant {r['constant_label_share']:.2f}), attach {r['attach']['wall_seconds']:.0f} s",
                  file=sys.stderr)
        out["tasks"][task] = res
    out["probe"] = {"start": probe_start, "end": compute_probe("cpu")}
    out["load_end"] = _load()
    return out


# --- report -----------------------------------------------------------------------------------

def _f(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _det_verdict(r: dict[str, Any], t: dict[str, Any]) -> str:
    m = t["adapter_path"]["map50"]
    ratio = t["gflops_ratio_adapter_vs_pixel"]
    secs = t["attach"]["wall_seconds"]
    short = []
    if m is None:
        return "no reference box above the threshold: nothing to score"
    if m < 0.8:
        why = []
        px = t["pixel_path"]["map50"]
        if px is not None and px < 0.8:
            why.append(f"the INR's own pixels already give only {px:.2f} ({r['encode']['psnr']:.1f} dB)")
        elif px is not None:
            why.append(f"the pixel path reaches {px:.2f}, so the adapter route loses {px - m:.2f}")
        floor = t["noise_floor"]["map50"]
        if floor is not None and floor < 0.9:
            why.append(f"a second RGB conversion alone gives {floor:.2f}")
        short.append(f"mAP@0.5 {m:.2f} < 0.8 ({'; '.join(why)})")
    if ratio > 0.5:
        g = t["gflops"]
        short.append(f"GFLOPs {ratio:.2f}x the pixel path > 0.5x (the backbone tail from "
                     f"{t['route']['injection_point']} alone costs {g['adapter_path']['backbone']:.2f} of the full "
                     f"backbone's {g['pixel_path']['backbone']:.2f} GFLOPs: the task's deepest injection point is "
                     "too shallow for any route to halve the cost)")
    if secs >= 300:
        short.append(f"attach {secs:.0f} s >= 300 s ({t['attach'].get('sample_frames')} sample frames, load "
                     f"average {r['load_start']['load1']:.1f} on 2 cores at the start)")
    return "meets all three targets" if not short else "falls short: " + "; ".join(short)


def _cls_verdict(r: dict[str, Any], t: dict[str, Any]) -> str:
    top1, const = t["adapter_path"]["top1_agreement"], t["constant_label_share"]
    short = []
    if top1 < 0.8:
        why = [f"the INR's own pixels ({r['encode']['psnr']:.1f} dB) give {_pct(t['pixel_path']['top1_agreement'])}",
               f"a second RGB conversion {_pct(t['noise_floor']['top1_agreement'])}"]
        short.append(f"top-1 {_pct(top1)} < 80% ({', '.join(why)})")
    if top1 - const < 0.4:
        short.append(f"only {100 * (top1 - const):.0f} points above the constant-label share")
    return "meets both targets" if not short else "falls short: " + "; ".join(short)


def summary(det: list[dict[str, Any]], mont: list[dict[str, Any]]) -> str:
    lines = ["# Task fidelity on real weights: COCO detection per clip, classification on a montage",
             "", "Generated by `benchmarks/fidelity.py --tasks-summary` from the `fidelity_det_*.json` and "
             "`fidelity_montage*.json` files beside this one (method: `benchmarks/fidelity_tasks.py`).", ""]
    first = (det or mont or [{}])[0]
    m = first.get("machine") or {}
    if m:
        lines += [f"Machine: {m.get('cpu')}, {m.get('usable_cores')} usable cores, torch {m.get('torch')}, "
                  f"{m.get('torch_threads')} torch threads, no GPU. Shared with other sessions' processes: load "
                  "average (1 min) at the start / end of each clip is given per clip; attach seconds and "
                  "latencies are inflated by that contention.", ""]
    if det:
        lines += ["## Detection: mAP against the same detector on the original frames", "",
                  "Pseudo ground truth: the detector's boxes with score >= the task's threshold on the original "
                  f"frames (conversion A); each path's boxes down to score {PRED_THRESHOLD} are ranked. COCO-style "
                  "101-point AP per class, mean over classes with reference boxes; mAP@0.5:0.95 averages IoU "
                  "0.50..0.95. Noise floor: the detector on a second RGB conversion of the same source frames "
                  "(PyAV's default `to_ndarray(format=\"rgb24\")`) against conversion A. H.264: x264 (PyAV, "
                  "preset medium) at the CRF whose bpp matches the `.nvp`'s. `attach` with its defaults.", "",
                  "| clip | task | frames, size | INR PSNR / bpp | H.264 CRF / bpp / PSNR | ref boxes/frame | "
                  "mAP@0.5 adapter / pixel / H.264 / noise floor | mAP@0.5:0.95 adapter / pixel / H.264 / floor | "
                  "route | GFLOPs adapter / pixel (ratio) | ms adapter / pixel / H.264 | attach s | load start/end |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in det:
            for name, t in r["tasks"].items():
                mp = [t[k]["map50"] for k in ("adapter_path", "pixel_path", "h264_path", "noise_floor")]
                mq = [t[k]["map50_95"] for k in ("adapter_path", "pixel_path", "h264_path", "noise_floor")]
                ro, g, lt = t["route"], t["gflops"], t["latency"]
                lines.append(
                    f"| {r['clip']} | {name} | {r['frames']}, {r['size'][0]}x{r['size'][1]} | "
                    f"{_f(r['encode']['psnr'])} dB / {_f(r['encode']['bpp'], '.3f')} | {_f(r['h264']['crf'], '.1f')} / "
                    f"{_f(r['h264']['bpp'], '.3f')} / {_f(r['h264']['psnr'])} dB | "
                    f"{t['reference_boxes_per_frame']:.1f} | {' / '.join(_f(x) for x in mp)} | "
                    f"{' / '.join(_f(x) for x in mq)} | block {ro['inr_layer']} -> {ro['injection_point']} "
                    f"({ro['adapter_kind']}) | {g['adapter_path']['total']:.2f} / {g['pixel_path']['total']:.2f} "
                    f"({t['gflops_ratio_adapter_vs_pixel']:.2f}x) | {lt['adapter_path']['total_ms']:.0f} / "
                    f"{lt['pixel_path']['total_ms']:.0f} / {lt['h264_path']['total_ms']:.0f} | "
                    f"{t['attach']['wall_seconds']:.0f} | {r['load_start']['load1']:.1f} / {r['load_end']['load1']:.1f} |")
        lines += ["", "Against the targets (adapter mAP@0.5 >= 0.8 at <= 0.5x the pixel path's GFLOPs; attach "
                  "< 5 min for 48 frames):", ""]
        for r in det:
            for name, t in r["tasks"].items():
                lines.append(f"- {r['clip']} / {name}: {_det_verdict(r, t)}.")
        abl = [(r, n, t) for r in det for n, t in r["tasks"].items() if "ablation_distill0" in t]
        if abl:
            lines += ["", "### What the output terms of the adapter loss add (score BCE + box-bin KL through "
                      "the frozen head)", "",
                      "| clip | task | mAP@0.5 / @0.5:0.95 feature loss only (`distill=0`) | with the output terms "
                      "(default) | route without -> with | attach s without / with |", "|---|---|---|---|---|---|"]
            for r, n, t in abl:
                a0 = t["ablation_distill0"]
                lines.append(f"| {r['clip']} | {n} | {_f(a0['adapter_path']['map50'])} / "
                             f"{_f(a0['adapter_path']['map50_95'])} | {_f(t['adapter_path']['map50'])} / "
                             f"{_f(t['adapter_path']['map50_95'])} | {a0['route']['inr_layer']} -> "
                             f"{a0['route']['injection_point']} -> {t['route']['inr_layer']} -> "
                             f"{t['route']['injection_point']} | {a0['attach']['wall_seconds']:.0f} / "
                             f"{t['attach']['wall_seconds']:.0f} |")
    if mont:
        for r in mont:
            lines += ["", f"## Classification on a montage ({r['clip']})", "",
                      "Pieces (frames of the montage <- source frames; the per-piece table gives each piece's most common "
                      "top-1 label on the original frames): " + "; ".join(
                          f"{p['montage_frames'][0]}-{p['montage_frames'][1] - 1} <- {os.path.basename(p['clip'])} "
                          f"{p['source_frames'][0]}-{p['source_frames'][1] - 1}" for p in r["layout"]) + ".", "",
                      f"INR: {_f(r['encode']['psnr'])} dB at {_f(r['encode']['bpp'], '.3f')} bpp "
                      f"({r['encode_time_budget_s']:.0f} s encode budget). Second RGB conversion vs the first: "
                      f"{r['conversion_psnr_b_vs_a']:.1f} dB PSNR. Load average {r['load_start']['load1']:.1f} at "
                      f"the start, {r['load_end']['load1']:.1f} at the end.", "",
                      "| task | teacher | constant-label share | top-1 / top-5 / KL vs original: adapter | pixel path | "
                      "noise floor (conversion B) | route | GFLOPs adapter / pixel | attach s |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for name, by in r["tasks"].items():
                for teacher, t in by.items():
                    row = []
                    for k in ("adapter_path", "pixel_path", "noise_floor"):
                        x = t[k]
                        row.append(f"{_pct(x['top1_agreement'])} / {x['top5_overlap']:.2f} / {x['mean_kl']:.3f}")
                    ro = t["route"]
                    lines.append(f"| {name} | {teacher} | {_pct(t['constant_label_share'])} | {' | '.join(row)} | "
                                 f"block {ro['inr_layer']} -> {ro['injection_point']} ({ro['adapter_kind']}) | "
                                 f"{t['gflops']['adapter_path']:.2f} / {t['gflops']['pixel_path']:.2f} | "
                                 f"{t['attach']['wall_seconds']:.0f} |")
            lines += ["", "Per piece, top-1 agreement with the original frames (adapter / pixel path / noise floor):", "",
                      "| task | teacher | " + " | ".join(
                          f"{os.path.splitext(os.path.basename(p['clip']))[0]}" for p in r["layout"]) + " |",
                      "|---|---|" + "---|" * len(r["layout"])]
            for name, by in r["tasks"].items():
                for teacher, t in by.items():
                    lines.append(f"| {name} | {teacher} | " + " | ".join(
                        f"{_pct(p['adapter_top1'])} / {_pct(p['pixel_top1'])} / {_pct(p['noise_floor_top1'])} "
                        f"({p['most_common_label']})" for p in t["pieces"]) + " |")
            lines += ["", "Against the targets (top-1 >= 80% and >= 40 points above the constant-label share):", ""]
            for name, by in r["tasks"].items():
                for teacher, t in by.items():
                    lines.append(f"- {name}, teacher {teacher}: {_cls_verdict(r, t)}.")
    return "\n".join(lines) + "\n"


def machine() -> dict[str, Any]:
    """`describe_machine` plus the load average now."""
    return {**describe_machine("cpu"), **_load()}

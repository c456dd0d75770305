"""Rate-distortion benchmark: nvcodec INR kinds against x264 / x265 medium and SVT-AV1 at matched bpp.

    python benchmarks/rd.py --kinds hnerv,nerv --bpps 0.03,0.05,0.1 --epochs 300 --time-budget 600 \
        --codecs x264,x265,svtav1 --out benchmarks/results --resume
    python benchmarks/rd.py --report-only --out benchmarks/results        # rebuild RD.md and plots from rd.json
    python benchmarks/rd.py /work/shared/clips/mdn_flower.mp4 --scale 0.25 --frames 0:8 --epochs 2 \
        --kinds hnerv --codecs x264 --out /tmp/rd_smoke                     # a quick smoke run

Per clip (default: every clip in /work/shared/clips, frames 0:96, Big Buck Bunny all 132 frames):
every kind (and `--variant LABEL=KIND:key=value,...`: a kind with other encode options, e.g. other bit
depths, as its own curve) x target bpp x mode (`--epochs N`: a fixed epoch plan; `--time-budget S`: a fixed
wall-clock budget per encode on this CPU; both given: both modes) is encoded with `nvcodec.encode`
(PSNR stop off), decoded and measured (PSNR pooled over the clip, MS-SSIM, against the PyAV rgb24
frames; with `--scale` the downscaled frames, written as a PNG folder that nvcodec encodes; also the
bytes of the same file in plain zstd, `bytes_without_dict`, what the built-in dictionary saved);
each codec encodes its own RD curve at `--crfs` and then a point matched by CRF search to each
nvcodec point's actual bpp. `rd.json` is rewritten after every point; `--resume` skips points
already in it. The analysis (BD-rates, gaps, time to 30/33 dB, targets) and RD.md / plots are
derived from the JSON (`nvcodec.bench.rdreport`). Exit codes: 0 done, 2 bad arguments, otherwise
nvcodec's code for the error (4: an unreadable clip; see the README's table).
"""

from __future__ import annotations

import argparse
import functools
import glob
import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nvcodec.bench.bdrate import seconds_to_reach
from nvcodec.bench.crf import (CRF_RANGE, DEFAULT_PRESETS, EXTENSIONS, INTEGER_CRF, codec_route, encode_crf,
                               match_bpp)
from nvcodec.bench.machine import cpu_model, describe_machine, load_average
from nvcodec.bench.paths import decode_codec_file
from nvcodec.bench.rdreport import SCHEMA, analyse, render_markdown, write_plots
from nvcodec.codec.encode import KINDS, EncodeOptions, encode, parse_size
from nvcodec.codec.frames import parse_range, resolve_range
from nvcodec.errors import NvcodecError, UsageError
from nvcodec.inr.metrics import frame_mse, ms_ssim, quality_from_mse
from nvcodec.video import probe_video, read_frames
from nvcodec.video.codecs import X265_MIN_SIDE
from nvcodec.video.png import write_png

DEFAULT_CLIPS = "/work/shared/clips"
DEFAULT_FRAMES = 96
DEFAULT_CRFS = {"x264": [20, 26, 32, 38, 44, 50], "x265": [20, 26, 32, 38, 44, 50], "svtav1": [20, 30, 40, 50, 58, 63]}
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
VIDEO_EXT = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".y4m")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clips", nargs="*", help=f"video files or folders (default: every clip in {DEFAULT_CLIPS})")
    ap.add_argument("--frames", help=f"A:B for every clip (default 0:{DEFAULT_FRAMES}; a clip named *bunny* all frames)")
    ap.add_argument("--scale", type=float, default=1.0, help="downscale factor for quick runs (sides rounded to even)")
    ap.add_argument("--kinds", default="hnerv,nerv", help="nvcodec INR kinds, comma-separated")
    ap.add_argument("--variant", action="append", default=[], metavar="LABEL=KIND:KEY=VALUE,...",
                    help="also encode KIND with these encode options, as a curve named LABEL (keys: "
                         + ", ".join(sorted(VARIANT_KEYS)) + "); repeatable")
    ap.add_argument("--bpps", default="0.03,0.05,0.1", help="target bpps of the nvcodec points (3+ for BD-rate)")
    ap.add_argument("--epochs", type=int, help="fixed epoch plan per encode")
    ap.add_argument("--time-budget", type=float, help="fixed wall-clock seconds per encode (CPU time with --device cpu)")
    ap.add_argument("--codecs", default="x264,x265,svtav1", help="x264, x265, svtav1 (comma-separated; '' for none)")
    ap.add_argument("--crfs", help="RD-curve CRFs for every codec, comma-separated (default: per codec)")
    ap.add_argument("--svtav1-preset", default=DEFAULT_PRESETS["libsvtav1"], help="SVT-AV1 preset (x264/x265: medium)")
    ap.add_argument("--match-tolerance", type=float, default=0.02, help="relative bpp tolerance of matched codec points")
    ap.add_argument("--bunny-params", help="also a fixed-epoch point at this size (e.g. 1.5M) on the bunny clip, all frames")
    ap.add_argument("--bunny-clip", help="the clip for --bunny-params (default: the clip whose name holds 'bunny')")
    ap.add_argument("--bunny-epochs", type=int, help="epochs of the --bunny-params points (default --epochs)")
    ap.add_argument("--bunny-only", action="store_true", help="only the --bunny-params points (no per-clip RD points)")
    ap.add_argument("--out", default=RESULTS, help="folder of rd.json, RD.md and plots/")
    ap.add_argument("--name", default="rd", help="file stem: <name>.json (default rd)")
    ap.add_argument("--md-name", default="RD.md")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, help="torch and codec threads (default: torch's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true", help="skip points already in the JSON")
    ap.add_argument("--report-only", action="store_true", help="rebuild the Markdown and plots from the JSON")
    ap.add_argument("--workdir", help="scratch folder (default: a temporary one, removed at the end)")
    return ap.parse_args(argv)


VARIANT_KEYS = {"weight_bits": int, "embed_bits": int, "qat": float, "prune": float, "lr": float,
                "frames_per_step": int, "bit_alloc": lambda t: {"true": True, "false": False}[t.lower()],
                "fine_grid": lambda t: {m: m for m in ("auto", "on", "off")}[t.lower()],
                "sampling": lambda t: {m: m for m in ("auto", "loss", "uniform")}[t.lower()]}


def parse_variant(text: str) -> tuple[str, str, dict[str, Any]]:
    """`LABEL=KIND:key=value,...` -> (label, kind, EncodeOptions fields); UsageError when malformed."""
    label, sep, rest = text.partition("=")
    kind, _, opts = rest.partition(":")
    label, kind = label.strip().lower(), kind.strip().lower()
    if not sep or not label or "|" in label or kind not in KINDS:
        raise UsageError(f"--variant: {text!r} is not LABEL=KIND:key=value,... with KIND one of {', '.join(KINDS)}")
    if label in KINDS:
        raise UsageError(f"--variant: the label {label!r} is a kind's name; pick another")
    fields: dict[str, Any] = {}
    for item in filter(None, (x.strip() for x in opts.split(","))):
        key, _, value = item.partition("=")
        if key not in VARIANT_KEYS:
            raise UsageError(f"--variant {label}: unknown key {key!r} (known: {', '.join(sorted(VARIANT_KEYS))})")
        try:
            fields[key] = VARIANT_KEYS[key](value)
        except (ValueError, KeyError):
            raise UsageError(f"--variant {label}: {key}={value!r} is not a valid value") from None
    return label, kind, fields


def _csv(text: str) -> list[str]:
    return [t.strip().lower() for t in (text or "").split(",") if t.strip()]


def check_args(a: argparse.Namespace) -> None:
    """UsageError for arguments that cannot work (before any encode)."""
    if a.report_only:
        return
    a.kind_list = list(dict.fromkeys(_csv(a.kinds)))
    if not a.kind_list:
        raise UsageError("--kinds needs at least one kind")
    for k in a.kind_list:
        if k not in KINDS:
            raise UsageError(f"--kinds: {k!r} is not an INR kind of this nvcodec (have: {', '.join(KINDS)})")
    a.variants = {}
    for text in a.variant:
        label, kind, fields = parse_variant(text)
        if label in a.variants:
            raise UsageError(f"--variant: {label!r} given twice")
        a.variants[label] = (kind, fields)
    a.kind_list += list(a.variants)
    try:
        a.bpp_list = sorted({float(b) for b in _csv(a.bpps)})
    except ValueError:
        raise UsageError(f"--bpps: {a.bpps!r} is not a list of numbers") from None
    if not a.bpp_list or any(not 0 < b <= 24 for b in a.bpp_list):
        raise UsageError("--bpps needs numbers in (0, 24]")
    if a.epochs is None and a.time_budget is None:
        raise UsageError("give --epochs N and/or --time-budget S")
    if a.epochs is not None and a.epochs < 1:
        raise UsageError("--epochs must be at least 1")
    if a.time_budget is not None and a.time_budget <= 0:
        raise UsageError("--time-budget must be positive")
    if not 0 < a.scale <= 1:
        raise UsageError("--scale must be in (0, 1]")
    a.codec_list = list(dict.fromkeys(_csv(a.codecs)))
    for c in a.codec_list:
        if c not in DEFAULT_CRFS:
            raise UsageError(f"--codecs: unknown codec {c!r} (use x264, x265, svtav1)")
    if a.crfs:
        try:
            crfs = [float(c) for c in _csv(a.crfs)]
        except ValueError:
            raise UsageError(f"--crfs: {a.crfs!r} is not a list of numbers") from None
        a.crf_lists = {c: crfs for c in a.codec_list}
    else:
        a.crf_lists = {c: list(DEFAULT_CRFS[c]) for c in a.codec_list}
    if a.threads is not None and a.threads < 1:
        raise UsageError("--threads must be at least 1")
    if not 0 < a.match_tolerance < 1:
        raise UsageError("--match-tolerance must be in (0, 1)")
    a.frame_range = parse_range(a.frames) if a.frames else None
    a.bunny_size = parse_size(a.bunny_params) if a.bunny_params else None
    if a.bunny_size is not None and (a.bunny_epochs or a.epochs) is None:
        raise UsageError("--bunny-params needs --bunny-epochs or --epochs (a fixed epoch plan)")
    if a.bunny_only and a.bunny_size is None:
        raise UsageError("--bunny-only needs --bunny-params")
    a.modes = []
    if a.epochs is not None:
        a.modes.append((f"epochs={a.epochs}", a.epochs, None))
    if a.time_budget is not None:
        a.modes.append((f"time={a.time_budget:g}s", None, a.time_budget))


def find_clips(paths: list[str]) -> list[str]:
    """Video files of the arguments (folders expanded, sorted)."""
    out = []
    for p in paths or [DEFAULT_CLIPS]:
        if os.path.isdir(p):
            out += sorted(f for f in glob.glob(os.path.join(p, "*")) if f.lower().endswith(VIDEO_EXT))
        elif os.path.isfile(p):
            out.append(p)
        else:
            raise UsageError(f"{p}: no such clip or folder")
    if not out:
        raise UsageError(f"no clips found in {', '.join(paths or [DEFAULT_CLIPS])}")
    return out


def is_bunny(path: str) -> bool:
    return "bunny" in os.path.basename(path).lower()


def clip_frames(path: str, total: int, rng: tuple[int | None, int | None] | None) -> tuple[int, int]:
    if rng is not None:
        return resolve_range(rng, total)
    return (0, total) if is_bunny(path) else (0, min(DEFAULT_FRAMES, total))


def clip_key(path: str, frames: tuple[int, int], scale: float) -> str:
    return f"{os.path.splitext(os.path.basename(path))[0]}|{frames[0]}:{frames[1]}|scale={scale:g}"


def area_downscale(ref: np.ndarray, height: int, width: int, scale: float) -> np.ndarray:
    """uint8 frames (N, H, W, 3) of a height x width clip scaled by `scale` (even sizes) by area averaging."""
    h = max(2, int(round(height * scale / 2)) * 2)
    w = max(2, int(round(width * scale / 2)) * 2)
    t = torch.from_numpy(ref).permute(0, 3, 1, 2).float()
    t = torch.cat([F.interpolate(t[i:i + 8], size=(h, w), mode="area") for i in range(0, t.shape[0], 8)])
    return t.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def prepare_clip(path: str, frames: tuple[int, int], scale: float, workdir: str) -> dict[str, Any]:
    """Reference frames (PyAV rgb24, downscaled by area averaging when scale < 1) and what nvcodec encodes."""
    info = probe_video(path)
    ref, _ = read_frames(path, frames=frames)
    src, src_frames, source = path, frames, "the original clip"
    if scale < 1:
        ref = area_downscale(ref, info.height, info.width, scale)
        src = os.path.join(workdir, "frames_" + os.path.splitext(os.path.basename(path))[0])
        os.makedirs(src, exist_ok=True)
        for i, f in enumerate(ref):
            write_png(os.path.join(src, f"{i:05d}.png"), f, compress_level=1)
        src_frames, source = None, f"a PNG folder of the frames downscaled x{scale:g} (area averaging)"
    return {"src": src, "src_frames": src_frames, "ref": ref, "fps": info.fps, "source": source,
            "width": int(ref.shape[2]), "height": int(ref.shape[1])}


def measure(decoded_batches, ref: np.ndarray) -> dict[str, float]:
    """Pooled PSNR report and mean MS-SSIM of decoded batches against `ref` (same order)."""
    mses, ssims, i = [], [], 0
    for batch in decoded_batches:
        b = torch.as_tensor(batch).cpu()
        r = torch.from_numpy(np.ascontiguousarray(ref[i:i + b.shape[0]]))
        mses.append(frame_mse(b, r))
        ssims.append(ms_ssim(b, r, per_frame=True))
        i += b.shape[0]
    if i != ref.shape[0]:
        raise UsageError(f"decoded {i} frames for {ref.shape[0]}")
    q = quality_from_mse(torch.cat(mses))
    return {"psnr": q["psnr"], "psnr_frame_mean": q["psnr_frame_mean"], "psnr_min": q["psnr_min"],
            "ms_ssim": float(torch.cat(ssims).mean())}


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The nvcodec source the points are encoded with: the checkout's short commit, "+changes" when the
    code (nvcodec/, cli/, this script) differs from it ("unknown" outside a git checkout). Results
    files that the run itself rewrites do not count. Read once, on the first point: the process keeps
    the code it imported, whatever is committed while it runs."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10, check=False)
        diff = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "nvcodec", "cli", "benchmarks/rd.py"], cwd=root,
                              capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = head.stdout.strip()
    if head.returncode != 0 or not commit:
        return "unknown"
    return commit + ("+changes" if diff.returncode != 0 else "")


def nvcodec_point(clip: dict, kind: str, mode: tuple, workdir: str, a: argparse.Namespace, *,
                  bpp: float | None = None, params: float | None = None) -> dict[str, Any]:
    """Encode one nvcodec point and measure it; a failed encode is recorded with its error."""
    _, epochs, budget = mode
    path = os.path.join(workdir, "point.nvp")
    trace: list[dict[str, float]] = []
    load_start = load_average()
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    last: list[float | None] = [None]
    restarts = [0]

    def cb(event) -> None:
        if event.stage == "fit" and event.info.get("restart"):
            restarts[0] += 1
        psnr = event.info.get("psnr")
        if event.stage == "fit" and psnr is not None and psnr != last[0]:
            last[0] = psnr
            trace.append({"seconds": time.perf_counter() - t0, "epoch": int(event.step), "psnr": float(psnr)})

    base, fields = a.variants.get(kind, (kind, {}))
    rec: dict[str, Any] = {"kind": kind, "mode": mode[0], "target_bpp": bpp, "target_params": params,
                           "epochs_planned": epochs, "time_budget": budget, "load_start": load_start,
                           "code": code_version(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
                           "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if base != kind:
        rec.update(base_kind=base, options=fields)
    opts = EncodeOptions(kind=base, bpp=bpp, params=params, psnr=None, epochs=epochs, time_budget=budget,
                         seed=a.seed, device=a.device, frames=clip["src_frames"], **fields)
    try:
        summary = encode(clip["src"], path, opts, overwrite=True, progress=cb)
    except NvcodecError as exc:
        rec.update(error=f"{type(exc).__name__}: {exc}", load_end=load_average(), restarts=restarts[0])
        return rec
    seconds = time.perf_counter() - t0
    cpu_seconds = _cpu_seconds() - cpu0
    trace.append({"seconds": seconds, "epoch": int(sum(summary["epochs"])), "psnr": float(summary["psnr"]), "final": True})
    import nvcodec

    with nvcodec.open(path) as v:
        q = measure(v.iter_frames(None, batch_size=8), clip["ref"])
    n, h, w = clip["ref"].shape[:3]
    size = os.path.getsize(path)
    rec.update(bytes=size, bytes_without_dict=bytes_without_dict(path, workdir), bpp=size * 8 / (w * h * n), **q,
               ssim_encoder=summary["ssim"],
               psnr_encoder=summary["psnr"], params=summary["params"], epochs=int(sum(summary["epochs"])),
               stopped_by=summary["stopped_by"], restarts=restarts[0], widen=max(summary.get("widen", [1.0])),
               encode_seconds=seconds, cpu_seconds=cpu_seconds, device=summary["device"],
               dtype=summary["dtype"], frames=n, width=w, height=h, trace=trace,
               seconds_to_30=seconds_to_reach(trace, 30.0), seconds_to_33=seconds_to_reach(trace, 33.0),
               load_end=load_average())
    os.remove(path)
    return rec


def bytes_without_dict(path: str, workdir: str) -> int:
    """Bytes of the same file with every section in plain zstd (codec ZSTD, no built-in dictionary)."""
    from nvcodec.container import Codec, NvpReader, Section, write_nvp
    from nvcodec.container.layout import DICT_FEATURE

    with NvpReader(path) as r:
        sections = [Section(s.name, s.kind, r.read(s.name), Codec.RAW if s.codec == Codec.RAW else Codec.ZSTD)
                    for s in r.sections]
        features = [f for f in r.required_features if f != DICT_FEATURE]
    plain = os.path.join(workdir, "plain.nvp")
    write_nvp(plain, sections, required_features=features)
    size = os.path.getsize(plain)
    os.remove(plain)
    return size


class Store:
    """rd.json, rewritten atomically after every point."""

    def __init__(self, path: str, resume: bool) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        if resume and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                self.data = json.load(f)
            if self.data.get("schema") != SCHEMA:
                raise UsageError(f"--resume: {path} is not an {SCHEMA} file")

    def save(self) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.data, f, indent=1, default=float)
            f.write("\n")
        os.replace(tmp, self.path)


def codec_encode_measure(clip: dict, route: dict, short: str, crf: float, workdir: str, threads: int,
                         preset: str, keep: bool) -> tuple[dict, str]:
    path = os.path.join(workdir, f"{short}_crf{crf:g}{EXTENSIONS[route['encoder']]}")
    rec = encode_crf(clip["ref"], path, clip["fps"], route, crf, preset=preset, threads=threads)
    return rec, path


def run_codecs_curve(store: Store, ckey: str, clip: dict, a: argparse.Namespace, workdir: str, threads: int) -> None:
    entry = store.data["clips"][ckey].setdefault("codecs", {})
    for short in a.codec_list:
        route = codec_route(short)
        preset = "medium" if short in ("x264", "x265") else str(a.svtav1_preset)
        c = entry.setdefault(short, {"available": route["via"] is not None, "encoder": route["encoder"],
                                     "via": route["via"], "note": route["note"], "preset": preset, "points": {},
                                     "matches": {}})
        if c["available"] and route["encoder"] == "libx265" and min(clip["width"], clip["height"]) < X265_MIN_SIDE:
            c.update(available=False, note=f"skipped: libx265 in this FFmpeg build aborts the process on frames "
                                           f"smaller than {X265_MIN_SIDE} px on a side")
        if not c["available"]:
            continue
        try:
            for crf in a.crf_lists[short]:
                key = f"crf={crf:g}"
                if key in c["points"] and c["points"][key].get("curve"):
                    continue
                codec_point_at(store, c, clip, route, short, crf, workdir, threads, preset, curve=True)
        except NvcodecError as exc:
            c.update(available=False, note=f"failed on this clip: {exc}")
            store.save()


def codec_point_at(store: Store, c: dict, clip: dict, route: dict, short: str, crf: float, workdir: str,
                   threads: int, preset: str, *, curve: bool = False, matched_to: str | None = None,
                   done: tuple[dict, str, list | None] | None = None) -> dict:
    """Encode (or reuse) the codec at `crf`, measure quality, record it under c["points"].

    `done`: (record, file, load at its start) of an encode at this CRF made already (during a CRF search)."""
    crf = float(int(round(crf))) if route["encoder"] in INTEGER_CRF else round(float(crf), 2)
    key = f"crf={crf:g}"
    p = c["points"].get(key)
    if p is None or p.get("psnr") is None:
        if done is not None:
            rec, path, load_start = done
        else:
            load_start = load_average()
            rec, path = codec_encode_measure(clip, route, short, crf, workdir, threads, preset, False)
        h, w = clip["ref"].shape[1:3]
        decoded = decode_codec_file(path, w, h, threads)
        rec.update(measure([decoded[i:i + 8] for i in range(0, decoded.shape[0], 8)], clip["ref"]))
        os.remove(path)
        rec.update(load_start=load_start, load_end=load_average(), curve=False, matched_to=[])
        p = c["points"][key] = rec
    if curve:
        p["curve"] = True
    if matched_to is not None and matched_to not in p["matched_to"]:
        p["matched_to"].append(matched_to)
    store.save()
    return p


def run_codec_matches(store: Store, ckey: str, clip: dict, a: argparse.Namespace, workdir: str, threads: int) -> None:
    centry = store.data["clips"][ckey]
    for short in a.codec_list:
        c = centry["codecs"][short]
        if not c["available"]:
            continue
        route = codec_route(short)
        for nkey, p in centry["nvcodec"].items():
            if p.get("bpp") is None or c["matches"].get(nkey, {}).get("target_bpp") == p["bpp"]:
                continue  # no point, or matched to this very point (a re-run point at another rate is matched again)
            for q in c["points"].values():  # codec points matched to the point's earlier rate no longer are
                if nkey in q.get("matched_to", []):
                    q["matched_to"].remove(nkey)
            known = {float(q["crf"]): q["bpp"] for q in c["points"].values()}
            probes: dict[float, tuple[dict, str, list | None]] = {}

            def bpp_at(crf: float) -> float:
                load_start = load_average()
                rec, path = codec_encode_measure(clip, route, short, crf, workdir, threads, c["preset"], False)
                probes[crf] = (rec, path, load_start)
                return rec["bpp"]

            lo, hi = CRF_RANGE[route["encoder"]]
            try:
                m = match_bpp(bpp_at, p["bpp"], lo, hi, integer=route["encoder"] in INTEGER_CRF,
                              tolerance=a.match_tolerance, known=known)
                codec_point_at(store, c, clip, route, short, m["crf"], workdir, threads, c["preset"], matched_to=nkey,
                               done=probes.get(m["crf"]))
            except NvcodecError as exc:
                c["matches"][nkey] = {"target_bpp": p["bpp"], "error": str(exc)}
                store.save()
                continue
            finally:
                for _, path, _ in probes.values():
                    if os.path.exists(path):
                        os.remove(path)
            c["matches"][nkey] = {"target_bpp": p["bpp"], "crf": m["crf"], "bpp": m["bpp"],
                                  "within_tolerance": m["within_tolerance"], "search_encodes": m["encodes"],
                                  "tries": m["tries"]}
            store.save()
            print(f"  {short} matched {nkey}: crf {m['crf']:g} -> {m['bpp']:.4f} bpp (target {p['bpp']:.4f})",
                  file=sys.stderr)


def conditions(a: argparse.Namespace, threads: int) -> dict[str, Any]:
    return {"kinds": a.kind_list, "variants": {k: {"kind": b, "options": f} for k, (b, f) in a.variants.items()},
            "bpps": a.bpp_list, "modes": [m[0] for m in a.modes], "epochs": a.epochs,
            "time_budget": a.time_budget, "codecs": a.codec_list, "crfs": a.crf_lists, "svtav1_preset": a.svtav1_preset,
            "match_tolerance": a.match_tolerance, "scale": a.scale, "device": a.device, "threads": threads,
            "seed": a.seed,
            "frames_rule": a.frames or f"0:{DEFAULT_FRAMES} (a clip named *bunny*: all frames)"}


def report(out: str, name: str, md_name: str, data: dict) -> None:
    analysis = analyse(data)
    data["analysis"] = analysis
    data["out_dir"] = out
    plots, note = write_plots(data, os.path.join(out, "plots"), prefix=name)
    md = render_markdown(data, analysis, plots, note)
    with open(os.path.join(out, md_name), "w", encoding="utf-8") as f:
        f.write(md)


def run(a: argparse.Namespace) -> int:
    json_path = os.path.join(a.out, f"{a.name}.json")
    if a.report_only:
        if not os.path.exists(json_path):
            raise UsageError(f"--report-only: {json_path} does not exist")
        store = Store(json_path, resume=True)
        report(a.out, a.name, a.md_name, store.data)
        store.save()
        return 0
    if a.threads:
        torch.set_num_threads(a.threads)
    threads = a.threads or torch.get_num_threads()
    clips = find_clips(a.clips)
    infos = {path: probe_video(path) for path in clips}  # unreadable clips fail here, before anything is written
    for path in clips:
        clip_frames(path, infos[path].frames, a.frame_range)
    store = Store(json_path, a.resume)
    d = store.data
    d.setdefault("schema", SCHEMA)
    d.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    d["command"] = "python benchmarks/rd.py " + " ".join(shlex.quote(x) for x in a.argv)
    d["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    d["machine"] = {**describe_machine(a.device), "cpu": cpu_model()}
    d.setdefault("runs", []).append({"conditions": conditions(a, threads), "started": d["updated"]})
    d["conditions"] = conditions(a, threads)
    d.setdefault("clips", {})
    d.setdefault("bunny", {})
    store.save()
    own_workdir = a.workdir is None
    workdir = a.workdir or tempfile.mkdtemp(prefix="nvcodec_rd_")
    os.makedirs(workdir, exist_ok=True)
    try:
        for path in ([] if a.bunny_only else clips):
            frames = clip_frames(path, infos[path].frames, a.frame_range)
            ckey = clip_key(path, frames, a.scale)
            print(f"{ckey}: preparing", file=sys.stderr)
            clip = prepare_clip(path, frames, a.scale, workdir)
            entry = d["clips"].setdefault(ckey, {"clip": os.path.basename(path), "path": os.path.abspath(path),
                                                 "frames": list(frames), "scale": a.scale, "fps": clip["fps"],
                                                 "width": clip["width"], "height": clip["height"],
                                                 "source": clip["source"], "nvcodec": {}, "codecs": {}})
            for mode in a.modes:
                for kind in a.kind_list:
                    for bpp in a.bpp_list:
                        key = f"{kind}|{mode[0]}|bpp={bpp:g}"
                        if key in entry["nvcodec"] and entry["nvcodec"][key].get("psnr") is not None:
                            continue
                        print(f"{ckey}: {key}", file=sys.stderr)
                        rec = nvcodec_point(clip, kind, mode, workdir, a, bpp=bpp)
                        entry["nvcodec"][key] = rec
                        store.save()
                        print(f"  -> {rec.get('bpp', 0):.4f} bpp, {rec.get('psnr', float('nan')):.2f} dB, "
                              f"{rec.get('epochs')} epochs, {rec.get('encode_seconds', 0):.0f} s {rec.get('error', '')}",
                              file=sys.stderr)
            run_codecs_curve(store, ckey, clip, a, workdir, threads)
            run_codec_matches(store, ckey, clip, a, workdir, threads)
            if own_workdir:
                shutil.rmtree(os.path.join(workdir, "frames_" + os.path.splitext(os.path.basename(path))[0]),
                              ignore_errors=True)
            del clip
        if a.bunny_size is not None:
            run_bunny(store, clips, a, workdir)
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    d["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    report(a.out, a.name, a.md_name, d)
    store.save()
    return 0


def run_bunny(store: Store, clips: list[str], a: argparse.Namespace, workdir: str) -> None:
    path = a.bunny_clip or next((c for c in clips if is_bunny(c)), None)
    if path is None:
        raise UsageError("--bunny-params: no clip named *bunny* among the clips; give --bunny-clip")
    epochs = a.bunny_epochs or a.epochs
    info = probe_video(path)
    clip = prepare_clip(path, (0, info.frames), a.scale, workdir)
    label = a.bunny_params.strip().upper().replace("K", "k")
    for kind in a.kind_list:
        key = f"{kind}|params={label}|epochs={epochs}|scale={a.scale:g}"
        if key in store.data["bunny"] and store.data["bunny"][key].get("psnr") is not None:
            continue
        print(f"bunny: {key}", file=sys.stderr)
        rec = nvcodec_point(clip, kind, (f"epochs={epochs}", epochs, None), workdir, a, params=a.bunny_size)
        rec.update(params_label=label, clip=os.path.basename(path), scale=a.scale)
        store.data["bunny"][key] = rec
        store.save()


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    a.argv = list(sys.argv[1:] if argv is None else argv)
    if argv is None:  # run as a script: SIGTERM unwinds like Ctrl-C, so the scratch folder is removed
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        check_args(a)
        return run(a)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NvcodecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)


if __name__ == "__main__":
    sys.exit(main())

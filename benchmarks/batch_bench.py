"""Throughput of `nvcodec batch`: the in-process sequential run against 1, 2 and 4 local Ray workers.

Cuts `--cuts` ranges of `--frames` frames from the first `--clips` clips of /work/shared/clips,
downscaled `--scale` times (area average) and stored as lossless 12-bit .y4m, and lists them as
`PATH,A:B` rows, so every configuration encodes the same jobs with the same fixed epoch count
(epoch-driven fits are bit-reproducible: the PSNRs must agree across runs, and the script checks).
Each configuration starts from an empty OUT_DIR; Ray runs include starting and stopping the local
Ray instance. Per job it records wall seconds, CPU seconds of the process that ran it, and the
INR fit's own seconds (from the file's provenance), which give the per-video costs behind the
cluster estimate in the report. Load average before/after each run is recorded: the machine is
shared with other engineers, so absolute numbers move with their load.

Run: `nice python benchmarks/batch_bench.py`; writes benchmarks/results/batch.json and BATCH.md
(`--from-json benchmarks/results/batch.json` re-derives the estimate and the text without running).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import nvcodec  # noqa: E402
from nvcodec.jobs import batch  # noqa: E402
from nvcodec.bench.machine import describe_machine  # noqa: E402
from nvcodec.codec.encode import EncodeOptions  # noqa: E402
from nvcodec.codec.meta import read_provenance  # noqa: E402
from nvcodec.container import NvpReader  # noqa: E402
from nvcodec.video import read_frames  # noqa: E402
from nvcodec.video.writer import write_y4m  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CLIPS = os.path.join(HERE, "..", "..", "shared", "clips")


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as fh:
        vals = [int(x) for x in fh.readline().split()[1:]]
    idle = vals[3] + vals[4]
    return sum(vals) - idle, sum(vals)


def _downscale(frames: np.ndarray, s: int) -> np.ndarray:
    n, h, w, c = frames.shape
    h2, w2 = h // s // 2 * 2, w // s // 2 * 2
    x = frames[:, : h2 * s, : w2 * s].reshape(n, h2, s, w2, s, c).astype(np.float32).mean(axis=(2, 4))
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def make_inputs(work: str, clips: int, cuts: int, frames: int, scale: int) -> tuple[str, list[dict]]:
    """Lossless downscaled cuts of the shared clips and a list file with one row per cut."""
    paths = sorted(glob.glob(os.path.join(CLIPS, "*.mp4")) + glob.glob(os.path.join(CLIPS, "*.mkv")))[:clips]
    if len(paths) < clips:
        sys.exit(f"need {clips} clips in {CLIPS}, found {len(paths)}")
    rows, described = [], []
    for p in paths:
        arr, info = read_frames(p, frames=(0, cuts * frames))
        small = _downscale(arr, scale)
        name = os.path.splitext(os.path.basename(p))[0]
        y4m = os.path.join(work, name + ".y4m")
        write_y4m(y4m, small, info.fps)
        described.append({"clip": os.path.basename(p), "source_size": [info.width, info.height],
                          "size": [int(small.shape[2]), int(small.shape[1])], "frames": int(small.shape[0])})
        rows += [f"{y4m},{i * frames}:{(i + 1) * frames}" for i in range(cuts)]
    lst = os.path.join(work, "inputs.csv")
    with open(lst, "w") as fh:
        fh.write("path,frames\n" + "\n".join(rows) + "\n")
    return lst, described


def run_config(name: str, lst: str, work: str, opts: EncodeOptions, ray: str, workers: int | None,
               cpus_per_job: float) -> dict:
    out = os.path.join(work, "out-" + name)
    shutil.rmtree(out, ignore_errors=True)
    load_before = list(os.getloadavg())
    busy0, total0 = _cpu_jiffies()
    self0 = time.process_time()
    t0 = time.monotonic()
    m = batch(lst, out, opts, ray=ray, workers=workers, cpus_per_job=cpus_per_job)
    wall = time.monotonic() - t0
    busy1, total1 = _cpu_jiffies()
    jobs = m["jobs"]
    bad = [j for j in jobs if j["status"] != "encoded"]
    if bad:
        sys.exit(f"{name}: {len(bad)} jobs did not encode: {bad[0]['error']}")
    fit_s = []
    for j in jobs:
        with NvpReader(j["output"]) as r:
            fit_s.append(sum(s["seconds"] for s in read_provenance(r)["segments"]))
    n = len(jobs)
    span = max(j["finished_at"] for j in jobs) - min(j["started_at"] for j in jobs)
    job_s = [j["seconds"] for j in jobs]
    cpu_s = [j["cpu_seconds"] for j in jobs]
    return {
        "config": name, "ray": ray, "workers": workers, "cpus_per_job": cpus_per_job, "runner": m["runner"],
        "videos": n, "wall_seconds": wall, "jobs_span_seconds": span,
        "videos_per_hour": n * 3600 / wall, "videos_per_hour_jobs_span": n * 3600 / span,
        "cpu_seconds_per_video": sum(cpu_s) / n, "job_seconds_per_video": sum(job_s) / n,
        "fit_seconds_per_video": sum(fit_s) / n,
        "non_fit_seconds_per_video": (sum(job_s) - sum(fit_s)) / n,
        "driver_cpu_seconds": time.process_time() - self0,
        "machine_cpu_busy_share": (busy1 - busy0) / max(1, total1 - total0),
        "load_average_before": load_before, "load_average_after": list(os.getloadavg()),
        "psnr": [j["psnr"] for j in jobs], "bpp": [j["bpp"] for j in jobs],
    }


def cluster_estimate(seq: dict, runs: list[dict]) -> dict:
    """Expected throughput on a GPU cluster from the per-video costs measured here."""
    # CPU seconds (one thread) are the per-video cost least moved by other people's load; they are split
    # into fit and the rest in the proportion of the jobs' wall seconds.
    share = seq["fit_seconds_per_video"] / seq["job_seconds_per_video"]
    fit, other = seq["cpu_seconds_per_video"] * share, seq["cpu_seconds_per_video"] * (1 - share)
    one = next(r for r in runs if r["workers"] == 1)
    dispatch = max(0.0, one["jobs_span_seconds"] / one["videos"] - one["job_seconds_per_video"])
    two = next((r for r in runs if r["workers"] == 2), None)
    eff2 = two["videos_per_hour_jobs_span"] / (2 * one["videos_per_hour_jobs_span"]) if two else None
    rows = []
    for speedup in (20, 100):
        per_job = fit / speedup + other + dispatch
        for k in (1, 4):
            rows.append({"gpu_fit_speedup_assumed": speedup, "jobs_per_gpu": k, "seconds_per_job": per_job,
                         "videos_per_hour_per_gpu": k * 3600 / per_job,
                         "videos_per_hour_64_gpus": 64 * k * 3600 / per_job})
    return {
        "measured": {"fit_cpu_seconds_per_video": fit, "non_fit_cpu_seconds_per_video": other, "fit_share": share,
                     "ray_dispatch_seconds_per_job": dispatch, "scaling_efficiency_2_workers": eff2},
        "formula": "videos/hour = G x k x 3600 / (fit / S + non_fit + dispatch), for G GPUs, k jobs per GPU "
                   "(--gpus-per-job 1/k, while each job's CPU side has a core to itself), S = GPU speed-up of "
                   "the fit over one CPU thread",
        "assumption": "S was NOT measured (no GPU was available); 20 and 100 are placeholders to show the shape. "
                      "Everything else in the formula was measured here.",
        "bound": f"at any S, one job slot cannot exceed 3600 / (non_fit + dispatch) = "
                 f"{3600 / max(1e-9, other + dispatch):.0f} videos/hour: the CPU-side work per video",
        "rows": rows,
        "cpu_cluster": {"videos_per_hour_per_core": 3600 / (fit + other + dispatch),
                        "note": "without GPUs, each core adds this many videos/hour (the jobs share nothing)"},
    }


def markdown(report: dict) -> str:
    c = report["conditions"]
    lines = [
        "# `nvcodec batch` throughput", "",
        f"{report['videos']} videos ({report['inputs_note']}), HNeRV `--params {report['options']['params']:g} "
        f"--epochs {report['options']['epochs']}` (no PSNR stop), CPU, one torch thread per job.",
        f"Machine: {c['machine'].get('cpu', '?')}, {c['machine'].get('usable_cores', '?')} cores. "
        f"**Shared with other engineers during the run**: load average {c['load_before']} before, {c['load_after']} after.",
        "",
        "| run | videos/hour (wall, incl. Ray start) | videos/hour (first job start to last job end) | CPU-s per video | job s per video | fit s per video | machine CPU busy |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["runs"]:
        lines.append(f"| {r['config']} | {r['videos_per_hour']:.0f} | {r['videos_per_hour_jobs_span']:.0f} | "
                     f"{r['cpu_seconds_per_video']:.2f} | {r['job_seconds_per_video']:.2f} | "
                     f"{r['fit_seconds_per_video']:.2f} | {100 * r['machine_cpu_busy_share']:.0f}% |")
    e = report["cluster_estimate"]
    m = e["measured"]
    lines += ["", "## Expected scaling on a GPU cluster", "",
              f"Measured per video (sequential run, CPU seconds of one thread, split by the wall-time share of the fit, "
              f"{100 * m['fit_share']:.0f}%): fit {m['fit_cpu_seconds_per_video']:.2f} s, everything else "
              f"(probe, read, quantize, evaluate, write, verify) {m['non_fit_cpu_seconds_per_video']:.2f} s, Ray dispatch "
              f"{m['ray_dispatch_seconds_per_job']:.3f} s per job; 2 workers reached "
              f"{100 * (m['scaling_efficiency_2_workers'] or 0):.0f}% of twice the 1-worker rate on this 2-core machine.", "",
              e["formula"] + ".", "", e["assumption"], "",
              "| S (assumed) | jobs per GPU | s per job | videos/hour per GPU | videos/hour, 64 GPUs |", "|---|---|---|---|---|"]
    for r in e["rows"]:
        lines.append(f"| {r['gpu_fit_speedup_assumed']} | {r['jobs_per_gpu']} | {r['seconds_per_job']:.2f} | "
                     f"{r['videos_per_hour_per_gpu']:.0f} | {r['videos_per_hour_64_gpus']:.0f} |")
    lines += ["", e["bound"] + f". Without GPUs every core adds "
              f"{e['cpu_cluster']['videos_per_hour_per_core']:.0f} videos/hour of these clips (the jobs share nothing).",
              "", report["reading"], ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--cuts", type=int, default=3)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--params", type=float, default=12000)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "batch.json"))
    ap.add_argument("--from-json", metavar="PATH", help="Re-derive the estimate and BATCH.md from a saved run.")
    a = ap.parse_args()
    if a.from_json:
        with open(a.from_json) as fh:
            finish(json.load(fh), a.out)
        return
    torch.set_num_threads(1)
    t_start = time.monotonic()
    load_before = list(os.getloadavg())
    work = tempfile.mkdtemp(prefix="nvcodec-batch-bench-")
    try:
        lst, inputs = make_inputs(work, a.clips, a.cuts, a.frames, a.scale)
        opts = EncodeOptions(params=a.params, epochs=a.epochs, psnr=None, device="cpu", seed=0)
        runs = [run_config("sequential", lst, work, opts, "off", None, 1.0)]
        for w in (int(x) for x in a.workers.split(",")):
            cores = os.cpu_count() or 1
            cpus = 1.0 if w <= cores else cores / w
            runs.append(run_config(f"ray, {w} worker{'s' if w > 1 else ''}", lst, work, opts, "local", w, cpus))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    psnrs = {tuple(round(p, 6) for p in r["psnr"]) for r in runs}
    report = {
        "benchmark": "batch_bench", "nvcodec": nvcodec.__version__, "torch": torch.__version__,
        "options": {"params": a.params, "epochs": a.epochs, "frames_per_video": a.frames, "scale": a.scale},
        "inputs": inputs, "videos": runs[0]["videos"],
        "inputs_note": f"{a.cuts} cuts of {a.frames} frames from each of {a.clips} shared clips, downscaled {a.scale}x",
        "same_results_in_every_run": len(psnrs) == 1,
        "conditions": {"machine": describe_machine("cpu"), "shared_machine": True,
                       "note": "the machine was shared with other engineers' jobs during the run; compare runs "
                               "with their load averages and machine CPU busy share in mind",
                       "load_before": load_before, "load_after": list(os.getloadavg()),
                       "seconds": time.monotonic() - t_start},
        "runs": runs,
    }
    finish(report, a.out)


def reading(report: dict) -> str:
    """What the numbers say, in words computed from them."""
    runs = report["runs"]
    seq, one = runs[0], next(r for r in runs if r["workers"] == 1)
    cores = report["conditions"]["machine"].get("usable_cores") or os.cpu_count() or 1
    loads = [x for r in runs for x in (r["load_average_before"][0], r["load_average_after"][0])]
    ratio = [r["job_seconds_per_video"] / r["cpu_seconds_per_video"] for r in runs]
    rel = ", ".join(f"{r['config']} {r['videos_per_hour_jobs_span'] / seq['videos_per_hour_jobs_span']:.2f}x"
                    for r in runs[1:])
    text = (f"Plainly: the robust figures are the per-video CPU cost, "
            f"{min(r['cpu_seconds_per_video'] for r in runs):.2f}-{max(r['cpu_seconds_per_video'] for r in runs):.2f} "
            f"CPU-seconds in every run (the same fits: identical PSNRs in every run: "
            f"{report['same_results_in_every_run']}), Ray's start and stop, "
            f"{one['wall_seconds'] - one['jobs_span_seconds']:.1f} s per batch, and its dispatch, "
            f"{report['cluster_estimate']['measured']['ray_dispatch_seconds_per_job'] * 1000:.0f} ms per job. "
            f"Rates against the sequential run (first job start to last job end): {rel}. ")
    if max(loads) > cores:
        text += (f"Those ratios say little about Ray: the 1-minute load average was {min(loads):.1f}-{max(loads):.1f} "
                 f"on {cores} cores during the runs, each job's wall time was {min(ratio):.1f}-{max(ratio):.1f}x its CPU "
                 "time (it waited for a core), and the order of the runs follows the others' load more than the runner. "
                 f"On an idle {cores}-core machine the expected rates are {cores} workers ~ {cores}x sequential "
                 "(the jobs share nothing), 1 worker ~ sequential, more workers than cores no better than "
                 f"{cores}; the estimate's per-core figure is that expectation in numbers.")
    return text


def finish(report: dict, out: str) -> None:
    """Add the cluster estimate and the reading, write the JSON and BATCH.md, print the markdown."""
    report["cluster_estimate"] = cluster_estimate(report["runs"][0], report["runs"])
    report["reading"] = reading(report)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as fh:
        json.dump(report, fh, indent=2)
    md = os.path.join(os.path.dirname(os.path.abspath(out)), "BATCH.md")
    with open(md, "w") as fh:
        fh.write(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()

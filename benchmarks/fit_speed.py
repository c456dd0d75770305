"""Fit throughput and quality per CPU second: variants of `nvcodec.inr.fit` A/B, interleaved.

    python benchmarks/fit_speed.py CLIP --scale 0.25 --frames 96 --kind hinerv --bpp 0.1 \
        --variant old:code=/tmp/old,batch=1 --variant new:batch=4 --epochs 10 --reps 3 --out results/fit_speed.json

Each variant is `label:key=value,...` with keys `code` (a source tree whose `nvcodec` is imported
instead of this one: the code before a change), `batch` (frames per step), `lr`, `qat`,
`weight_bits`, `embed_bits`, `kind`, `bpp`. Rounds run every variant once in turn (old, new, old,
new, ...), each in its own process with the same thread count and OpenMP wait policy (the CLI's
rule, decided once at the start: passive only on a busy machine; recorded per run), so that a load
change hits all variants alike. Per run: seconds per epoch (median of the history's epoch times), the
process's CPU seconds, the 1-minute load before and after, the final PSNR of the dequantized model, and the
seconds to reach 30 and 33 dB (first periodic check at or above the level, `--eval-every` epochs
apart). `perf stat -e instructions` is not available on every machine (it is not on the 2-core
VM this was written on), so CPU seconds are the load-independent-ish cross-check.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
KNOWN = {"code", "batch", "lr", "qat", "weight_bits", "embed_bits", "kind", "bpp"}


def parse_variant(text: str) -> dict:
    """`label:key=value,...` -> {"label": ..., key: value}."""
    label, _, rest = text.partition(":")
    out: dict = {"label": label}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if key not in KNOWN:
            raise SystemExit(f"unknown variant key {key!r} (known: {', '.join(sorted(KNOWN))})")
        out[key] = value
    return out


def prepare(clip: str, frames: int, scale: float, cache: str) -> str:
    """Frames 0:frames of the clip, area-downscaled like benchmarks/rd.py, saved as .npy once."""
    import numpy as np
    from rd import area_downscale  # benchmarks/rd.py: the same downscaling as the RD benchmark

    from nvcodec.video import probe_video, read_frames

    path = os.path.join(cache, f"{os.path.splitext(os.path.basename(clip))[0]}_{frames}_{scale:g}.npy")
    if os.path.exists(path):
        return path
    info = probe_video(clip)
    ref, _ = read_frames(clip, frames=(0, frames))
    if scale < 1:
        ref = area_downscale(ref, info.height, info.width, scale)
    os.makedirs(cache, exist_ok=True)
    np.save(path, ref)
    return path


def worker(spec: dict) -> dict:
    """One fit in this process (the driver sets PYTHONPATH to the variant's code)."""
    import numpy as np
    import torch

    import nvcodec
    from nvcodec.codec.encode import EncodeOptions
    from nvcodec.inr.fit import fit
    from nvcodec.inr.plan import plan_config

    torch.set_num_threads(spec["threads"])
    frames = torch.from_numpy(np.load(spec["frames"]))
    n, h, w, _ = frames.shape
    kind = spec["kind"]
    # The kind's preset as an encode resolves it (also for a variant's older source tree).
    opts = EncodeOptions(kind=kind, **{k: spec[k] for k in ("weight_bits", "embed_bits", "qat", "bit_alloc")
                                       if k in spec}).resolved()
    wb, eb, qat, alloc = int(opts.weight_bits), int(opts.embed_bits), float(opts.qat), bool(opts.bit_alloc)
    config = plan_config(w, h, n, kind=kind, bpp=float(spec["bpp"]), weight_bits=wb, embed_bits=eb)
    kwargs = dict(epochs=spec.get("epochs"), time_budget=spec.get("time_budget"), psnr_target=None,
                  weight_bits=wb, embed_bits=eb, qat=qat, bit_alloc=alloc, eval_every=spec["eval_every"],
                  batch_size=int(spec.get("batch", 1)))
    if "lr" in spec:
        kwargs["lr"] = float(spec["lr"])
    load0 = os.getloadavg()[0]
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    result = fit(frames, config, **kwargs)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    times = [e["seconds"] for e in result.history]
    per_epoch = [b - a for a, b in zip([0.0] + times[:-1], times)]
    checks = [(e["seconds"], e["psnr"]) for e in result.history if e.get("psnr") is not None]
    checks[-1:] = [(wall, result.psnr)] if checks else [(wall, result.psnr)]

    def reach(level: float) -> float | None:
        return next((round(s, 1) for s, p in checks if p >= level), None)

    return {"code": os.path.dirname(os.path.dirname(os.path.abspath(nvcodec.__file__))), "params": config.num_params(),
            "epochs": result.epochs, "seconds": round(wall, 2),
            "epoch_seconds_median": round(statistics.median(per_epoch), 3) if per_epoch else None,
            "cpu_seconds": round(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, 2),
            "load_start": round(load0, 2), "load_end": round(os.getloadavg()[0], 2),
            "psnr": round(result.psnr, 3), "s_to_30": reach(30.0), "s_to_33": reach(33.0),
            "checks": [[round(s, 1), round(p, 2)] for s, p in checks]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clip", nargs="?")
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--scale", type=float, default=0.25)
    ap.add_argument("--kind", default="hinerv")
    ap.add_argument("--bpp", type=float, default=0.1)
    ap.add_argument("--variant", action="append", default=[], help="label:key=value,... (see the docstring)")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--time-budget", type=float)
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default="/tmp/nvcodec_fit_speed")
    ap.add_argument("--out", help="append the runs to this JSON file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(json.loads(a.worker))))
        return 0
    if not a.clip or not a.variant or (a.epochs is None and a.time_budget is None):
        ap.error("need a clip, --variant and --epochs or --time-budget")
    frames = prepare(a.clip, a.frames, a.scale, a.cache)
    variants = [parse_variant(v) for v in a.variant]
    from nvcodec.threads import machine_busy

    # One wait policy for every run (the CLI's rule, decided once, so that all variants share it).
    policy = os.environ.get("OMP_WAIT_POLICY") or ("PASSIVE" if machine_busy(a.threads) else None)
    runs = []
    for rep in range(a.reps):
        for v in variants:
            spec = {"frames": frames, "kind": a.kind, "bpp": a.bpp, "epochs": a.epochs, "time_budget": a.time_budget,
                    "eval_every": a.eval_every, "threads": a.threads, **{k: x for k, x in v.items() if k != "label"}}
            env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads),
                       PYTHONPATH=v.get("code", ROOT))
            env.pop("OMP_WAIT_POLICY", None)
            if policy:
                env["OMP_WAIT_POLICY"] = policy
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
                                 env=env, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                print(out.stderr[-2000:], file=sys.stderr)
                return 1
            rec = {"label": v["label"], "rep": rep, "clip": os.path.basename(a.clip), "scale": a.scale,
                   "frames": a.frames, "omp_wait_policy": policy or "default", **spec,
                   **json.loads(out.stdout.strip().splitlines()[-1])}
            rec.pop("frames", None)
            runs.append(rec)
            print(json.dumps({k: rec[k] for k in ("label", "rep", "epochs", "seconds", "epoch_seconds_median",
                                                  "cpu_seconds", "load_start", "load_end", "psnr", "s_to_30",
                                                  "s_to_33")}), flush=True)
    for v in variants:
        mine = [r for r in runs if r["label"] == v["label"]]
        print(f"{v['label']}: median s/epoch {statistics.median(r['epoch_seconds_median'] for r in mine):.3f}, "
              f"median CPU s {statistics.median(r['cpu_seconds'] for r in mine):.1f}, "
              f"median PSNR {statistics.median(r['psnr'] for r in mine):.2f}, "
              f"loads {[r['load_start'] for r in mine]}")
    if a.out:
        old = json.load(open(a.out)) if os.path.exists(a.out) else []
        with open(a.out, "w") as fh:
            json.dump(old + runs, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

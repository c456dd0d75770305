"""All registered tasks on one `.nvp` at once: the INR prefix each needs is decoded once.

Encodes a shared clip, attaches every task (``--weights random`` by default: full-size random
networks, so only costs are meaningful, never the labels), then runs `infer` with all tasks in one
call and with each task alone, and records the `sharing` block (shared vs separate decode time and
FLOPs), per-task GFLOPs and latency. Writes ``results/all_tasks_<clip>.json``.

    python benchmarks/all_tasks.py ../shared/clips/torchcodec_dog_eating_854132.mp4 --frames 0:32
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from nvcodec.bench.machine import compute_probe, describe_machine
from nvcodec.codec.encode import EncodeOptions, encode
from nvcodec.codec.frames import parse_range
from nvcodec.adapt.attach import attach
from nvcodec.route.infer import infer
from nvcodec.models.registry import task_names

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clip")
    ap.add_argument("--frames", default="0:32", help="frames of the clip to encode (clip tasks need 32)")
    ap.add_argument("--tasks", default=",".join(task_names()))
    ap.add_argument("--weights", default="random")
    ap.add_argument("--epochs", type=int, default=20, help="encode epochs (fixed, so runs are comparable)")
    ap.add_argument("--sample", type=int, default=8, help="attach: frames sampled per task")
    ap.add_argument("--work", default="/tmp/nvcodec_all_tasks")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args(argv)
    tasks = [t for t in args.tasks.split(",") if t]
    os.makedirs(args.work, exist_ok=True)
    name = os.path.splitext(os.path.basename(args.clip))[0]
    nvp = os.path.join(args.work, f"{name}.nvp")
    probe_before = compute_probe()
    t0 = time.monotonic()
    enc = encode(args.clip, nvp, EncodeOptions(psnr=None, epochs=args.epochs, frames=parse_range(args.frames),
                                               device="cpu", seed=0), overwrite=True)
    attached = {}
    for t in tasks:
        r = attach(nvp, t, weights=args.weights, sample_frames=args.sample, top_k=1, epochs=5, kinds=("linear",),
                   device="cpu")
        attached[t] = {k: r[k] for k in ("chosen", "fidelity", "gflops", "pixel_path_gflops", "adapter_params",
                                         "appended_bytes", "seconds", "warnings")}
        print(f"attached {t}: {r['chosen']['inr_layer']} -> {r['chosen']['injection_point']}, {r['seconds']:.0f} s",
              file=sys.stderr, flush=True)
    together = infer(nvp, tasks, device="cpu")
    alone = {t: infer(nvp, [t], device="cpu") for t in tasks}
    report = {
        "clip": args.clip, "frames": args.frames, "weights": args.weights,
        "note": ("weights 'random': full-size random networks; labels and fidelity mean nothing, only costs do. "
                 "Encode with fixed epochs; one thread; the machine was shared with other jobs (see load average)."),
        "command": "python benchmarks/all_tasks.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": describe_machine("cpu"), "probe_before": probe_before, "probe_after": compute_probe(),
        "encode": {k: enc[k] for k in ("psnr", "bytes", "bpp", "params", "encode_seconds")},
        "attach": attached,
        "together": {"sharing": together.get("sharing"),
                     "tasks": {t: {"inr_layer": v["inr_layer"], "injection_point": v["injection_point"],
                                   "timing_ms": v["timing_ms"], "gflops": v["gflops"]}
                               for t, v in together["tasks"].items()}},
        "alone_total_ms": {t: r["tasks"][t]["timing_ms"].get("total") for t, r in alone.items()},
        "seconds": time.monotonic() - t0,
    }
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"all_tasks_{name}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1, allow_nan=False, default=lambda o: None)
    print(json.dumps(report["together"]["sharing"], indent=1))
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

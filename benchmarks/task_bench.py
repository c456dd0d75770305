"""Task benchmark: per task and chosen (INR block, injection point) pair, FLOPs and latency of
(a) the adapter path, (b) INR full decode + full backbone, (c) PyAV H.264 decode + preprocessing +
full backbone; agreement with the pixel path, adapter size, attach time -> RESULTS/task_<clip>.json.

    python benchmarks/task_bench.py /work/shared/clips/mdn_flower.mp4 --task resnet50 --weights random
    python benchmarks/task_bench.py --from-bench benchmarks/results/bench_mdn_flower.json   # no re-run

Runs `nvcodec.bench.run_bench` with one rate point and x264 only; with --from-bench the task view is
taken from an existing `nvcodec bench --json` report (its "source" field says so).
"""

from __future__ import annotations

import argparse
import os
import sys

from nvcodec.bench.run import BenchOptions
from nvcodec.bench.summary import task_view, write_views
from nvcodec.codec.frames import parse_range


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clips", nargs="*", help="video files")
    ap.add_argument("--from-bench", nargs="*", default=[], metavar="JSON", help="bench reports to take the task view from")
    ap.add_argument("--task", default="resnet50", help="comma separated")
    ap.add_argument("--weights", help="PATH, ID, random (no default fallback: pass random explicitly)")
    ap.add_argument("--frames", default="0:24")
    ap.add_argument("--bpp", type=float, default=0.1)
    ap.add_argument("--time-budget", type=float, default=60.0)
    ap.add_argument("--sample", type=int)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    a = ap.parse_args(argv)
    return write_views(
        "task_bench", task_view, "task", a.from_bench, a.clips,
        lambda: BenchOptions(tasks=[t.strip() for t in a.task.split(",") if t.strip()], frames=parse_range(a.frames),
                             codecs=["x264"], bpps=[], bpp=a.bpp, time_budget=a.time_budget, weights=a.weights,
                             sample=a.sample, repeat=a.repeat, device=a.device, threads=a.threads),
        a.out)


if __name__ == "__main__":
    sys.exit(main())

"""Wall and CPU time of `nvcodec info/verify/--help` next to `ffprobe`, each a fresh process.

    python benchmarks/info_speed.py [--runs 15]     # writes results/info_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = "fixtures/golden-v1.nvp"
CLIP = "fixtures/dog_320x180.mp4"


def _time(argv: list[str], runs: int) -> dict:
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        walls.append(time.perf_counter() - t)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return {"command": " ".join(argv[1:] if argv[0] == sys.executable else argv),
            "wall_s_median": round(statistics.median(walls), 3), "wall_s_min": round(min(walls), 3),
            "cpu_s_median": round(statistics.median(cpus), 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    load_before = os.getloadavg()
    py = [sys.executable, "-m", "nvcodec_cli.main"]
    rows = [_time(py + a, args.runs) for a in (["info", GOLDEN], ["info", "--json", GOLDEN], ["verify", GOLDEN],
                                                ["--help"])]
    if shutil.which("ffprobe"):
        for f in (GOLDEN, CLIP):
            rows.append(_time(["ffprobe", "-hide_banner", f], args.runs))
    load = os.getloadavg()
    from nvcodec.bench.machine import cpu_model

    cpu = cpu_model() or ""
    ffprobe = subprocess.run(["ffprobe", "-version"], capture_output=True, text=True).stdout.split("\n")[0] \
        if shutil.which("ffprobe") else "ffprobe not installed"
    report = {"machine": f"{platform.machine()} {cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
                         f"load average {load_before[0]:.2f} at start and {load[0]:.2f} at the end",
              "ffprobe": ffprobe, "runs": args.runs, "results": rows}
    (ROOT / "benchmarks" / "results" / "info_speed.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

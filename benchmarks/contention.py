"""Encode throughput alone and under a competing CPU-bound load, with the old and new thread setup.

Runs `nvcodec.encode` on fixtures/dog_320x180.mp4 (first FRAMES frames, EPOCHS epochs, no PSNR stop)
in a fresh subprocess per configuration, so that OpenMP reads its environment at start-up:

- ``before``: the 0.1 setup: torch's default thread count, OpenMP's default (spinning) wait policy;
- ``after``: what the CLI now sets (`nvcodec.threads.configure_environment`): threads = the usable
  CPUs (affinity, cgroup quota), OMP_WAIT_POLICY=PASSIVE;
- ``after-1``: the same with --threads 1.

each alone and with BUSY extra busy-looping processes. Records wall and CPU seconds of the encode,
the machine and the load averages before and after each run (other users' jobs included: the
machine is shared, so "alone" means "without our extra load").

    python benchmarks/contention.py            # writes benchmarks/results/contention.json + CONTENTION.md
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from nvcodec.threads import usable_cpus  # noqa: E402  (no torch import)

CLIP = os.path.join(ROOT, "fixtures", "dog_320x180.mp4")
FRAMES, EPOCHS, BUSY = 6, 2, 4
RESULTS = os.path.join(ROOT, "benchmarks", "results")

CHILD = """
import json, resource, sys, time
from nvcodec.codec.encode import EncodeOptions, encode
threads = None if sys.argv[2] == "default" else int(sys.argv[2])
t = time.monotonic()
s = encode(sys.argv[1], sys.argv[3], EncodeOptions(epochs={epochs}, psnr=None, device="cpu", frames=(0, {frames}),
           threads=threads), overwrite=True)
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"wall_s": time.monotonic() - t, "encode_seconds": s["encode_seconds"], "threads": s["threads"],
                  "cpu_user_s": ru.ru_utime, "cpu_sys_s": ru.ru_stime, "psnr": s["psnr"]}}))
"""


def _busy() -> None:
    while True:
        pass


def _env(config: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY",
                                                          "NVCODEC_THREADS")}
    env["PYTHONPATH"] = ROOT
    env["NVCODEC_MIN_FIT_GAIN_DB"] = "0"  # 2 epochs: a throughput run, not a usable fit
    if config.startswith("after"):
        n = 1 if config == "after-1" else usable_cpus()
        env.update(OMP_NUM_THREADS=str(n), MKL_NUM_THREADS=str(n), OMP_WAIT_POLICY="PASSIVE")
    return env


def run(config: str, busy: int, out: str) -> dict:
    procs = [mp.Process(target=_busy, daemon=True) for _ in range(busy)]
    for p in procs:
        p.start()
    try:
        load_before = os.getloadavg()
        threads = "1" if config == "after-1" else "default"
        res = subprocess.run([sys.executable, "-c", CHILD.format(epochs=EPOCHS, frames=FRAMES), CLIP, threads, out],
                             env=_env(config), capture_output=True, text=True, timeout=1800)
        if res.returncode != 0:
            raise SystemExit(f"{config}: exit {res.returncode}: {res.stderr.strip()[-400:]}")
        row = json.loads(res.stdout.strip().splitlines()[-1])
        row.update(config=config, busy_processes=busy, load_before=[round(x, 2) for x in load_before],
                   load_after=[round(x, 2) for x in os.getloadavg()])
        return row
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join()


def main() -> None:
    import torch

    out = os.path.join("/tmp", f"contention_{os.getpid()}.nvp")
    rows = []
    for busy in (0, BUSY):
        for config in ("before", "after", "after-1"):
            rows.append(run(config, busy, out))
            print(json.dumps(rows[-1]), flush=True)
    if os.path.exists(out):
        os.unlink(out)
    cpu = ""
    try:
        from nvcodec.bench.machine import cpu_model
        cpu = cpu_model() or ""
    except ImportError:
        pass
    report = {
        "benchmark": "contention", "clip": "fixtures/dog_320x180.mp4", "frames": FRAMES, "epochs": EPOCHS,
        "machine": {"cpu": cpu, "platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "usable_cpus": usable_cpus(), "torch": torch.__version__,
                    "note": "shared machine: other sessions' jobs ran throughout (see the load averages)"},
        "busy_processes": BUSY, "runs": rows,
    }
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "contention.json"), "w") as f:
        json.dump(report, f, indent=1)
    lines = ["# Encode throughput under contention", "",
             f"`python benchmarks/contention.py`: `encode` of {report['clip']} (first {FRAMES} frames, {EPOCHS} epochs, "
             f"no PSNR stop) on {cpu} ({os.cpu_count()} logical CPUs, {usable_cpus()} usable), torch {torch.__version__}. "
             "**The machine was shared with other sessions' jobs throughout**, so 'alone' means without our extra load; "
             f"'+{BUSY} busy' adds {BUSY} busy-looping processes. Load averages (1/5/15 min) are from before and after each run.",
             "",
             "| config | extra busy processes | threads | encode s | CPU user+sys s | load before | load after |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['busy_processes']} | {r['threads']} | {r['encode_seconds']:.1f} | "
                     f"{r['cpu_user_s'] + r['cpu_sys_s']:.1f} | {' / '.join(map(str, r['load_before']))} | "
                     f"{' / '.join(map(str, r['load_after']))} |")
    lines += ["", "before: torch's default threads and OpenMP's default wait policy (the 0.1 setup); after: the CLI's "
              "setup (threads = usable CPUs, OMP_WAIT_POLICY=PASSIVE); after-1: the same with --threads 1.", ""]
    with open(os.path.join(RESULTS, "CONTENTION.md"), "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()

"""Coverage-guided fuzzing of the reader with atheris: arbitrary bytes as an `.nvp` file.

Each input is written to a file and run through `describe()` (what `info` prints) and
`verify_nvp()`; anything but nvcodec's own errors is a crash. The seed corpus is the golden file.

    python benchmarks/fuzz_reader.py --record 120      # run 120 s, write results/fuzz_reader.json
    python benchmarks/fuzz_reader.py CORPUS_DIR -max_total_time=600   # plain libFuzzer arguments
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SCRATCH = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())


def _target() -> None:
    import atheris

    with atheris.instrument_imports(include=["nvcodec"]):
        from nvcodec.codec.info import describe
        from nvcodec.container import verify_nvp
        from nvcodec.errors import NvcodecError

    path = SCRATCH / f"nvcodec-atheris-{os.getpid()}.nvp"

    def one(data: bytes) -> None:
        path.write_bytes(data)
        for run in (describe, verify_nvp):
            try:
                run(path)
            except NvcodecError:
                pass

    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


def _record(seconds: int) -> int:
    corpus = Path(tempfile.mkdtemp(prefix="nvcodec-atheris-corpus-"))
    try:
        shutil.copy(ROOT / "fixtures" / "golden-v1.nvp", corpus / "golden")
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run([sys.executable, __file__, str(corpus), f"-max_total_time={seconds}", "-rss_limit_mb=2048",
                               "-max_len=65536"], capture_output=True, text=True, env=env)
    finally:
        shutil.rmtree(corpus, ignore_errors=True)
    log = proc.stderr
    done = re.search(r"Done (\d+) runs in (\d+) second", log)
    cov = re.findall(r"cov: (\d+) ft: (\d+)", log)
    crashed = "==ERROR" in log or "Uncaught Python exception" in log
    report = {
        "what": "atheris (libFuzzer) on arbitrary bytes as an .nvp file: describe() and verify_nvp(), seed corpus "
                "fixtures/golden-v1.nvp, inputs up to 64 KiB",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs shared with other users' jobs, one process",
        "seconds": seconds, "runs": int(done.group(1)) if done else None,
        "runs_per_second": round(int(done.group(1)) / max(1, int(done.group(2))), 1) if done else None,
        "coverage_edges": int(cov[-1][0]) if cov else None, "features": int(cov[-1][1]) if cov else None,
        "crashes": 1 if crashed else 0, "exit_code": proc.returncode,
        "crash_log": log[-3000:] if crashed else None,
    }
    (RESULTS / "fuzz_reader.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("runs", "runs_per_second", "coverage_edges", "crashes")}))
    return 1 if crashed else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--record":
        raise SystemExit(_record(int(sys.argv[2])))
    _target()

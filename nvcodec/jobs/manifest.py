"""The batch manifest: one row per input and a summary, rewritten atomically in OUT_DIR as jobs finish."""

from __future__ import annotations

import json
from typing import Any

from ..errors import no_space_as_error

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


def summarize(rows: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Counts by status, wall time, throughput and CPU time of the jobs that did work."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    worked = [r for r in rows if r["status"] in ("encoded", "attached")]
    cpu = sum(r["cpu_seconds"] or 0.0 for r in worked)
    return {
        "inputs": len(rows),
        **{k: counts.get(k, 0) for k in ("encoded", "attached", "skipped", "failed", "interrupted", "pending")},
        "ok": sum(counts.get(k, 0) for k in ("encoded", "attached", "skipped")),
        "seconds": seconds,
        "videos_per_hour": len(worked) * 3600.0 / seconds if worked and seconds > 0 else None,
        "cpu_seconds": cpu,
        "cpu_seconds_per_video": cpu / len(worked) if worked else None,
        "exit_code": batch_exit_code(rows),
    }


def batch_exit_code(rows: list[dict[str, Any]]) -> int:
    """0 when no input failed; the failed inputs' exit code when they share one; else 1."""
    codes = {r["exit_code"] or 1 for r in rows if r["status"] in ("failed", "interrupted")}
    if not codes:
        return 0
    return codes.pop() if len(codes) == 1 else 1


def write_json_atomic(path: str, obj: Any) -> None:
    """Write `obj` as standard JSON to `path` through a temporary file and a rename."""
    from ..bench.run import json_safe

    from ..video.writer import atomic_output

    text = json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n"
    with no_space_as_error(path), atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")

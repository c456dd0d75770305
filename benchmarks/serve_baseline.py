"""Baseline service for `serve_load.py`: H.264 decode (PyAV) + full backbone per request, no caching.

    python benchmarks/serve_baseline.py SOURCES_DIR --port 8001 [--host 127.0.0.1] [--device cpu]

The same HTTP stack as `nvcodec serve` (FastAPI + uvicorn) and the same request body
(`POST /v1/infer` with `{"video": NAME, "tasks": [...], "frames": [a, b]}`), where NAME is the
`.nvp` name of the library and SOURCES_DIR holds the H.264 file each `.nvp` was encoded from
(`NAME` with the suffix `.mp4`). Per request it decodes frames a..b-1 of that file with PyAV
(`nvcodec.video.read_frames`, the reader `encode` uses), preprocesses them the way the pixel path
of `nvcodec infer` does (`TaskRuntime.pixel_input`) and runs each task's whole backbone and head.
Backbones are built once per process (weights loading is not what is compared); decoded frames and
results are never kept. The answer has the shape of `nvcodec infer --json` (`file`, `frames`,
`device`, `threshold`, `tasks.{name}.frames[].predictions`, `timing_ms`); the server time of each
request is in its `Server-Timing` header (`app;dur=MS`) and in `server_ms`.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Any

import anyio.to_thread
import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from nvcodec.errors import NvcodecError
from nvcodec.models.registry import resolve_task
from nvcodec.route.runtime import TaskRuntime, build_runtime
from nvcodec.video import probe_video, read_frames

MAX_FRAMES = 64
"""Frames per request the baseline accepts (the same order as the service's own limit)."""
MAX_TASKS = 4
STATUS = {2: 400, 3: 422, 4: 422, 5: 503, 6: 404}
"""HTTP status per nvcodec exit code (usage, format, input, weights, not attached)."""


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class Baseline:
    """The videos a baseline serves and the backbones it has built (one per task and frame size)."""

    def __init__(self, sources: Path, device: str) -> None:
        self.device = torch.device(device)
        self.videos = {p.stem + ".nvp": p for p in sorted(sources.glob("*.mp4")) if p.is_file()}
        self.info = {name: probe_video(p) for name, p in self.videos.items()}
        self._runtimes: dict[tuple[str, int, int], TaskRuntime] = {}
        self._lock = threading.Lock()

    def runtime(self, task: str, width: int, height: int) -> TaskRuntime:
        """The task's backbone with its installed weights, built on first use."""
        key = (task, width, height)
        with self._lock:
            rt = self._runtimes.get(key)
            if rt is None:
                rt = build_runtime(resolve_task(task), None, self.device, width, height)
                self._runtimes[key] = rt
            return rt

    @torch.inference_mode()
    def infer(self, name: str, tasks: list[str], frames: list[int]) -> dict[str, Any]:
        """Decode the frames, run every task's full backbone and head on them."""
        path, info = self.videos[name], self.info[name]
        a, b = frames
        t0 = time.perf_counter()
        pixels, _ = read_frames(path, frames=(a, b))
        decode_ms = (time.perf_counter() - t0) * 1000
        x_frames = torch.from_numpy(pixels).to(self.device)
        out: dict[str, Any] = {}
        for task in tasks:
            rt = self.runtime(task, info.width, info.height)
            t1 = time.perf_counter()
            raw = rt.model(rt.pixel_input(x_frames))
            preds = rt.spec.postprocess(raw, rt.geometry, (info.height, info.width), threshold=0.7, model=rt.model)
            ms = (time.perf_counter() - t1) * 1000
            out[task] = {"task": task, "output_type": rt.spec.output_type, "weights": rt.weights_label,
                         "weights_random": rt.random, "unit": "frame",
                         "frames": [{"frame": a + i, "predictions": p} for i, p in enumerate(preds)],
                         "timing_ms": {"decode": decode_ms / (b - a), "backbone": ms / (b - a)}}
        return {"file": name, "frames": [a, b], "device": str(self.device), "threshold": 0.7, "tasks": out}


def _check(body: Any, base: Baseline) -> tuple[str, list[str], list[int]] | JSONResponse:
    if not isinstance(body, dict):
        return _error(400, "the body must be a JSON object")
    name, tasks, frames = body.get("video"), body.get("tasks"), body.get("frames")
    if not isinstance(name, str) or name not in base.videos:
        return _error(404, f"no video {name!r}")
    if not isinstance(tasks, list) or not tasks or len(tasks) > MAX_TASKS or not all(isinstance(t, str) for t in tasks):
        return _error(400, f"tasks must be a list of 1..{MAX_TASKS} task names")
    for t in tasks:
        try:
            resolve_task(t)
        except NvcodecError as exc:
            return _error(400, str(exc))
    n = base.info[name].frames
    if frames is None:
        frames = [0, min(n, MAX_FRAMES)]
    if (not isinstance(frames, list) or len(frames) != 2 or not all(type(f) is int for f in frames)
            or not 0 <= frames[0] < frames[1] <= n):
        return _error(400, f"frames must be [a, b] with 0 <= a < b <= {n}")
    if frames[1] - frames[0] > MAX_FRAMES:
        return _error(413, f"at most {MAX_FRAMES} frames per request")
    return name, list(dict.fromkeys(tasks)), frames


def create_app(base: Baseline) -> FastAPI:
    """The baseline's FastAPI app: /healthz, /v1/videos, /v1/infer."""
    app = FastAPI(title="nvcodec serve_load baseline (H.264 decode + full backbone per request)")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/videos")
    def videos() -> dict[str, Any]:
        return {"videos": [{"name": n, "frames": i.frames, "width": i.width, "height": i.height}
                           for n, i in base.info.items()]}

    @app.post("/v1/infer")
    async def infer(request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the body is not valid JSON")
        checked = _check(body, base)
        if isinstance(checked, JSONResponse):
            return checked
        try:
            report = await anyio.to_thread.run_sync(base.infer, *checked)
        except NvcodecError as exc:
            return _error(STATUS.get(exc.exit_code, 500), str(exc))
        ms = (time.perf_counter() - t0) * 1000
        report["server_ms"] = ms
        return JSONResponse(report, headers={"Server-Timing": f"app;dur={ms:.3f}"})

    return app


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sources", type=Path, help="folder of NAME.mp4 files (the sources of the library's NAME.nvp)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--device", default="cpu")
    p.add_argument("--tasks", default="efficientnet_lite0", help="tasks whose backbones are built at start-up")
    a = p.parse_args(argv)
    if a.host != "127.0.0.1":
        p.error("the baseline listens on 127.0.0.1 only")
    base = Baseline(a.sources, a.device)
    if not base.videos:
        p.error(f"no .mp4 files in {a.sources}")
    for task in filter(None, a.tasks.split(",")):
        for info in {(i.width, i.height) for i in base.info.values()}:
            base.runtime(task, *info)
    uvicorn.run(create_app(base), host=a.host, port=a.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()

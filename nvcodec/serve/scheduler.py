"""The scheduler: requests for the same video arriving within a window are batched and computed together.

A plain Python class (no HTTP): `submit` queues a request and returns its `Job`, whose future
gets an `Answer`; `infer` waits for it. One worker thread runs the batches, one at a time (the
model work is torch's, on all its threads), and the callables given to `call` between them.
A batch collects every request for its video until the worker takes it: at least
`batch_window_ms` after its first request, longer while the worker is busy with another batch.
A request asked before of the same video version is answered at once from the result cache.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from ..codec.video import resolve_device
from ..models.registry import resolve_task
from ..video.png import encode_png
from .batch import Answer, Context, InferRequest, Job, cached_answer, check_request, run_batch
from .caches import LRUCache
from .errors import ShuttingDown, Timeout
from .library import Library, VideoKey
from .loaded import Loaded
from .stats import Stats

MAX_BATCH_REQUESTS = 64
"""Requests one batch takes; later ones start the next batch for the same video."""


@dataclass
class _Pending:
    key: VideoKey
    deadline: float
    jobs: list[Job] = field(default_factory=list)


@dataclass
class _Call:
    fn: Callable[[], Any]
    future: Future = field(default_factory=Future)


class Scheduler:
    """Batches infer requests per video and runs them on one worker thread (see the module docstring).

    `cache_mb`: three quarters for prefix activations (per frame and layer, on the device), one
    quarter for results (per task variant and frame or window). `start()` before submitting;
    `close()` drains (or, with `drain=False`, refuses) what is queued.
    """

    def __init__(self, library: Library, *, device: str = "auto", batch_window_ms: float = 10.0,
                 cache_mb: float = 256.0, batch_size: int = 4, max_frames: int = 256, max_tasks: int = 8) -> None:
        self.library = library
        self.device = resolve_device(device)
        self.window_s = batch_window_ms / 1000.0
        self.max_tasks = max_tasks
        self.stats = Stats()
        self.loaded = Loaded(self.device, self.stats)
        mib = 1024 * 1024
        self.ctx = Context(self.loaded, LRUCache(int(cache_mb * mib * 3 / 4)), LRUCache(int(cache_mb * mib / 4)),
                           self.stats, self.device, batch_size, max_frames)
        self._cond = threading.Condition()
        self._pending: list[_Pending] = []
        self._calls: deque[_Call] = deque()
        self._closed = False
        self._thread: threading.Thread | None = None

    # --- life cycle -----------------------------------------------------------
    def start(self) -> "Scheduler":
        """Start the worker thread (once)."""
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="nvcodec-scheduler", daemon=True)
                self._thread.start()
        return self

    def preload(self, tasks: Iterable[str]) -> None:
        """Build the backbones of `tasks` (real weights) now rather than on their first request."""
        self.start()
        for task in tasks:
            self.call(lambda spec=resolve_task(task): self.loaded.backbone(spec)).result()

    def close(self, drain: bool = True, timeout: float | None = None) -> None:
        """Take no new work; with `drain`, finish what is queued first, else fail it (ShuttingDown)."""
        with self._cond:
            self._closed = True
            if not drain:
                for b in self._pending:
                    for j in b.jobs:
                        if j.future.set_running_or_notify_cancel():
                            j.future.set_exception(ShuttingDown("the service is shutting down"))
                self._pending.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return  # still busy past `timeout`: what it uses stays open until the process ends
        self.loaded.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # --- work -------------------------------------------------------------------
    def submit(self, request: InferRequest) -> Job:
        """Queue `request`; its answer (an `Answer`) or error arrives in the returned job's future.

        Raises at once for a request no video could answer (no task, bad threshold, too many
        tasks), a refused or unknown video name, or a closed scheduler.
        """
        check_request(request, self.max_tasks)
        key = self.library.key(request.video)
        job = Job(request, key)
        with self._cond:
            if self._closed:
                raise ShuttingDown("the service is shutting down")
            answer = cached_answer(self.ctx, key, request, job.submitted)
            if answer is not None:
                self.stats.add(requests=1)
                job.future.set_running_or_notify_cancel()
                job.future.set_result(answer)
                return job
            pending = next((b for b in self._pending if b.key == key and len(b.jobs) < MAX_BATCH_REQUESTS), None)
            if pending is None:
                pending = _Pending(key, time.monotonic() + self.window_s)
                self._pending.append(pending)
            pending.jobs.append(job)
            self.stats.add(requests=1)
            self._cond.notify_all()
        return job

    def infer(self, request: InferRequest, timeout: float | None = None) -> Answer:
        """Submit `request` and wait for its answer (Timeout after `timeout` seconds: its work is dropped)."""
        job = self.submit(request)
        try:
            return job.future.result(timeout)
        except FutureTimeout:
            job.abandon()
            raise Timeout(f"no answer within {timeout:g} s") from None

    def call(self, fn: Callable[[], Any]) -> Future:
        """Run `fn` on the worker thread, between batches; its result lands in the returned future."""
        c = _Call(fn)
        with self._cond:
            if self._closed:
                raise ShuttingDown("the service is shutting down")
            self._calls.append(c)
            self._cond.notify_all()
        return c.future

    def frame_png(self, name: str, index: int) -> Future:
        """PNG bytes of frame `index` of video `name`, decoded on the worker thread (cached as a result)."""
        key = self.library.key(name)
        return self.call(lambda: self._frame_png(key, index))

    def _frame_png(self, key: VideoKey, index: int) -> bytes:
        from ..codec.frames import resolve_range

        got = self.ctx.results.get((key, "png", index))
        if got is not None:
            self.stats.add(result_cache_hits=1)
            return got
        opened = self.loaded.video(key)
        resolve_range((index, index + 1), len(opened.video))
        frame = opened.video.frames([index], device=self.device)[0].cpu().numpy()
        data = encode_png(frame, compress_level=1)
        self.stats.add(frames_decoded=1, result_cache_misses=1)
        self.ctx.results.put((key, "png", index), data, len(data))
        return data

    def snapshot(self) -> dict:
        """Counters plus cache and queue sizes."""
        out = self.stats.snapshot()
        with self._cond:
            out["queued_requests"] = sum(len(b.jobs) for b in self._pending)
        out["prefix_cache_bytes"] = self.ctx.prefixes.bytes
        out["prefix_cache_entries"] = len(self.ctx.prefixes)
        out["result_cache_bytes"] = self.ctx.results.bytes
        out["result_cache_entries"] = len(self.ctx.results)
        return out

    # --- the worker -------------------------------------------------------------
    def _next(self) -> _Pending | _Call | None:
        with self._cond:
            while True:
                if self._calls:
                    return self._calls.popleft()
                now = time.monotonic()
                ready = [b for b in self._pending if self._closed or b.deadline <= now]
                if ready:
                    b = min(ready, key=lambda p: p.deadline)
                    self._pending.remove(b)
                    return b
                if self._closed:
                    return None
                wait = min((b.deadline for b in self._pending), default=now + 3600.0) - now
                self._cond.wait(max(0.0, wait))

    def _loop(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            if isinstance(item, _Call):
                if not item.future.set_running_or_notify_cancel():
                    continue
                try:
                    item.future.set_result(item.fn())
                except BaseException as exc:  # noqa: BLE001 - the worker must outlive any one call
                    item.future.set_exception(exc)
                continue
            try:
                run_batch(self.ctx, item.key, item.jobs)
            except BaseException as exc:  # noqa: BLE001 - never leave a future unanswered
                for j in item.jobs:
                    if not j.future.done():
                        j.future.set_exception(exc)

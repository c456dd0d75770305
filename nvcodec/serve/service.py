"""The service behind the HTTP app: the library, the scheduler, the info cache, and waiting for answers.

Waiting is where a request's limits apply: past `request_timeout` (Timeout, 504) or once the
client has gone, the request's job is abandoned, so the scheduler drops its work unless another
request shares it. The HTTP app only translates; a Ray Serve deployment can wrap this class.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any

from ..codec.info import describe
from .batch import Answer, InferRequest
from .caches import LRUCache
from .errors import Abandoned, Timeout, error_body
from .library import Library
from .loaded import warm_up
from .scheduler import Scheduler
from .settings import ServeSettings

POLL_S = 0.05
"""How often a waiting request checks whether its client is still there."""
MAX_INFO_ENTRIES = 4096

Disconnected = Callable[[], Awaitable[bool]]


class Service:
    """`ServeSettings` made live: `start()` the scheduler (and preload tasks), then answer requests."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings.checked()
        self.library = Library(settings.library)
        self.scheduler = Scheduler(self.library, device=settings.device, batch_window_ms=settings.batch_window_ms,
                                   cache_mb=settings.cache_mb, batch_size=settings.batch_size,
                                   max_frames=settings.max_frames, max_tasks=settings.max_tasks)
        self.infos = LRUCache(1 << 62, MAX_INFO_ENTRIES)
        self.in_flight = 0
        self.started = time.time()
        self.running = False

    def start(self) -> "Service":
        """Start the scheduler and build the `--tasks` backbones (WeightsError when their weights are
        missing); once."""
        if not self.running:
            self.scheduler.start()
            self.scheduler.call(warm_up).result()
            self.scheduler.preload(self.settings.tasks)
            self.running = True
        return self

    def close(self, drain: bool = True) -> None:
        """Finish (or refuse) queued work and release what was loaded."""
        self.scheduler.close(drain=drain, timeout=self.settings.request_timeout)

    # --- videos -------------------------------------------------------------------
    def _info(self, name: str) -> dict:
        key = self.library.key(name)
        got = self.infos.get(key)
        if got is None:
            got = {**describe(key.path), "file": name}
            self.infos.put(key, got)
        return got

    async def info(self, name: str) -> dict:
        """`nvcodec info --json` of video `name` (its `file` is the name, not the server's path)."""
        return await asyncio.to_thread(self._info, name)

    def _videos(self) -> list[dict]:
        out = []
        for name in self.library.videos():
            try:
                out.append({"name": name, "info": self._info(name)})
            except Exception as exc:  # noqa: BLE001 - a damaged file is listed with its error
                out.append({"name": name, "info": None, **error_body(exc)})
        return out

    async def videos(self) -> list[dict]:
        """Every video under LIBRARY with its info (or the error reading it)."""
        return await asyncio.to_thread(self._videos)

    # --- work ---------------------------------------------------------------------------
    async def _wait(self, future: Future, abandon: Callable[[], None], disconnected: Disconnected | None,
                    deadline: float) -> Any:
        wrapped = asyncio.wrap_future(future)

        def give_up() -> None:
            wrapped.cancel()  # its answer, when it comes, is dropped unread
            abandon()

        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    give_up()
                    raise Timeout(f"no answer within --request-timeout {self.settings.request_timeout:g} s")
                done, _ = await asyncio.wait({wrapped}, timeout=min(POLL_S, left))
                if done:
                    return wrapped.result()
                if disconnected is not None and await disconnected():
                    give_up()
                    raise Abandoned("the client went away")
        except asyncio.CancelledError:
            give_up()
            raise

    async def infer(self, request: InferRequest, disconnected: Disconnected | None = None,
                    started: float | None = None) -> Answer:
        """The answer to `request`, waiting at most `request_timeout` from `started` (monotonic)."""
        deadline = (started or time.monotonic()) + self.settings.request_timeout
        job = self.scheduler.submit(request)
        return await self._wait(job.future, job.abandon, disconnected, deadline)

    async def frame_png(self, name: str, index: int, disconnected: Disconnected | None = None,
                        started: float | None = None) -> bytes:
        """PNG bytes of one decoded frame."""
        deadline = (started or time.monotonic()) + self.settings.request_timeout
        future = self.scheduler.frame_png(name, index)
        return await self._wait(future, future.cancel, disconnected, deadline)

    def snapshot(self) -> dict:
        """The scheduler's counters plus requests in flight and uptime."""
        return {**self.scheduler.snapshot(), "in_flight": self.in_flight, "uptime_s": time.time() - self.started}

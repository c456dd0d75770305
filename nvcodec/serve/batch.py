"""One batch: the requests for one video that arrived within the batching window, computed together.

Each request asks for tasks on a frame range (windows for clip tasks). The batch groups what the
requests ask by task variant (task, threshold, clip window length); a unit (a frame, or a clip
window) found in the result cache is reused, the others are computed once for every request
that wants them, through `run_routes` with the shared prefix source (`prefix.cached_prefix`).
Each request then gets the same JSON `nvcodec infer --json` prints for it.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import torch

from ..codec.frames import resolve_range
from ..errors import UsageError
from ..models.registry import resolve_task
from ..route.clips import union_frames
from ..route.infer import Clock, TaskRun, plan_clip, run_routes, sharing_report, task_report
from .caches import LRUCache
from .errors import Abandoned, TooLarge
from .library import VideoKey
from .loaded import Loaded, Opened, Route
from .prefix import cached_prefix
from .stats import Stats

STAGES = ("decode", "adapter", "backbone", "head")


@dataclass(frozen=True)
class InferRequest:
    """What `POST /v1/infer` asks: tasks on frames [a, b) of a video (all when None); clip tasks
    take `window`/`stride` as `nvcodec infer` does; `threshold` is the detection score threshold."""

    video: str
    tasks: tuple[str, ...]
    frames: tuple[int | None, int | None] | None = None
    window: int | None = None
    stride: int | None = None
    threshold: float | None = None


@dataclass
class Answer:
    """A request's report plus how it was served: units answered from the result cache, of all units,
    requests in its batch, and the time from submission to answer."""

    report: dict
    cached_units: int
    units: int
    batch_requests: int
    server_ms: float


@dataclass
class Job:
    """A submitted request: its video version and the future its answer (or error) lands in."""

    request: InferRequest
    key: VideoKey
    future: Future = field(default_factory=Future)
    submitted: float = field(default_factory=time.perf_counter)
    abandoned: bool = False

    def abandon(self) -> None:
        """Nobody waits for this answer any more: drop the work if nothing else needs it."""
        self.abandoned = True
        self.future.cancel()


@dataclass
class Context:
    """What every batch uses: the loaded routes, the caches, the counters and the limits."""

    loaded: Loaded
    prefixes: LRUCache
    results: LRUCache
    stats: Stats
    device: torch.device
    batch_size: int = 4
    max_frames: int = 256


@dataclass
class _TaskPlan:
    route: Route
    variant: tuple
    units: list[tuple]
    windows: list[list[int]]
    window: int


@dataclass
class _Plan:
    job: Job
    start: int
    stop: int
    tasks: list[_TaskPlan]


@dataclass
class _Variant:
    route: Route
    threshold: float | None
    window: int
    want: dict[tuple, list[_Plan]] = field(default_factory=dict)
    have: dict[tuple, Any] = field(default_factory=dict)
    todo: list[tuple] = field(default_factory=list)
    run: TaskRun | None = None
    unit_ms: dict[str, float] = field(default_factory=dict)


def _fail(ctx: Context, job: Job, exc: BaseException) -> None:
    if isinstance(exc, Abandoned) or job.abandoned:
        ctx.stats.add(cancelled=1)
    else:
        ctx.stats.add(failed=1)
    if not job.future.done():
        job.future.set_exception(exc)


def _plan(ctx: Context, opened: Opened, job: Job) -> _Plan:
    req = job.request
    a, b = req.frames if req.frames is not None else (None, None)
    if (a is not None and a < 0) or (b is not None and b < 0):
        raise UsageError(f"frame range {[a, b]} must not be negative")
    start, stop = resolve_range(req.frames, len(opened.video))
    if stop <= start:
        raise UsageError(f"frame range {[start, stop]} is empty (b must be greater than a)")
    if stop - start > ctx.max_frames:
        raise TooLarge(f"frames {start}:{stop} are {stop - start} frames; this service answers at most "
                       f"{ctx.max_frames} per request")
    plans: dict[str, _TaskPlan] = {}
    for task in req.tasks:
        name = resolve_task(task).name
        if name in plans:
            continue
        route = ctx.loaded.route(opened, name, req.video)
        t = route.run(ctx.device)
        plan_clip(t, start, stop, req.window, req.stride)
        if t.clip:
            units = [("w", tuple(w), t.window) for w in t.windows]
            variant = (name, req.threshold, t.window)
        else:
            units = [("f", i) for i in range(start, stop)]
            variant = (name, req.threshold, 0)
        plans[name] = _TaskPlan(route, variant, units, t.windows, t.window)
    return _Plan(job, start, stop, list(plans.values()))


def _entry_bytes(entry: Any) -> int:
    return len(json.dumps(entry, default=str)) + 64


def run_batch(ctx: Context, key: VideoKey, jobs: list[Job]) -> None:
    """Answer every job in `jobs` (all for video version `key`): each future gets an `Answer` or an error.

    Errors of one request (unknown task, frames out of range) answer that request only; an error
    of the file itself answers every request of the batch. The batch stops early (Abandoned) when
    nobody waits for any of its requests.
    """
    live = [j for j in jobs if j.future.set_running_or_notify_cancel()]
    ctx.stats.add(cancelled=len(jobs) - len(live))
    if not live:
        return
    ctx.stats.batch(len(live))
    try:
        opened = ctx.loaded.video(key)
    except Exception as exc:
        for j in live:
            _fail(ctx, j, exc)
        return
    plans: list[_Plan] = []
    for j in live:
        try:
            plans.append(_plan(ctx, opened, j))
        except Exception as exc:
            _fail(ctx, j, exc)
    if not plans:
        return
    try:
        variants, shared_ms = _compute(ctx, opened, plans)
    except Exception as exc:
        for p in plans:
            _fail(ctx, p.job, exc)
        return
    for p in plans:
        try:
            answer = _answer(ctx, p, variants, shared_ms, len(live))
        except Exception as exc:
            _fail(ctx, p.job, exc)
            continue
        ctx.results.put((key, "request", p.job.request), (answer.report, answer.units),
                        _entry_bytes(answer.report))
        if not p.job.future.done():
            p.job.future.set_result(answer)


def cached_answer(ctx: Context, key: VideoKey, request: InferRequest, submitted: float) -> Answer | None:
    """The answer to a request asked before of this video version, straight from the result cache
    (no batch, no window): the same report with zero timings, since nothing was computed."""
    got = ctx.results.get((key, "request", request))
    if got is None:
        return None
    report, units = got
    zero = {s: 0.0 for s in (*STAGES, "total")}
    out = {**report, "tasks": {name: {**r, "timing_ms": dict(zero)} for name, r in report["tasks"].items()}}
    if "sharing" in report:
        out["sharing"] = {**report["sharing"], "shared_decode_ms": 0.0}
    ctx.stats.add(result_cache_hits=units)
    return Answer(out, units, units, 1, (time.perf_counter() - submitted) * 1000)


def _compute(ctx: Context, opened: Opened, plans: list[_Plan]) -> tuple[dict[tuple, _Variant], float]:
    """Fill every variant's results: from the result cache, or computed once in one shared run."""
    key = opened.key
    variants: dict[tuple, _Variant] = {}
    for p in plans:
        for tp in p.tasks:
            v = variants.setdefault(tp.variant, _Variant(tp.route, tp.variant[1], tp.variant[2]))
            for u in tp.units:
                v.want.setdefault(u, []).append(p)
    hits = misses = 0
    for vk, v in variants.items():
        for u in v.want:
            got = ctx.results.get((key, vk, u))
            if got is not None:
                v.have[u] = got
                hits += 1
            else:
                v.todo.append(u)
                misses += 1
    ctx.stats.add(result_cache_hits=hits, result_cache_misses=misses)
    runs: list[TaskRun] = []
    for v in variants.values():
        if not v.todo:
            continue
        t = v.route.run(ctx.device)
        t.threshold = v.threshold
        if t.clip:
            t.windows = [list(u[1]) for u in v.todo]
            t.window = v.window
            t.mapped = [{} for _ in t.rt.model.pathways]
            t.need = set(union_frames(t.windows))
        else:
            t.need = {u[1] for u in v.todo}
        v.run = t
        runs.append(t)
    if not runs:
        return variants, 0.0
    decode_list = sorted(set().union(*(t.need for t in runs)))

    def check() -> None:
        if all(p.job.abandoned for p in plans):
            raise Abandoned("nobody waits for this batch any more")

    shared = Clock(ctx.device)
    source = cached_prefix(opened.video, key, ctx.device, ctx.prefixes, ctx.stats)
    decode_at, _ = run_routes(opened.video, runs, decode_list, ctx.batch_size, ctx.device, None, shared,
                              prefix=source, check=check)
    layers = sorted(decode_at)
    for vk, v in variants.items():
        t = v.run
        if t is None:
            continue
        for entry in t.frames:
            u = ("w", tuple(entry["frames"]), v.window) if t.clip else ("f", entry["frame"])
            v.have[u] = entry
            ctx.results.put((key, vk, u), entry, _entry_bytes(entry))
        k = t.entry["inr_layer"]
        decode = sum(decode_at[j] for j in layers if j <= k) * len(t.need) / len(decode_list)
        ms = {"decode": decode, **t.clock.ms}
        v.unit_ms = {s: ms.get(s, 0.0) / len(v.todo) for s in STAGES}
    return variants, shared.ms.get("decode", 0.0) / len(decode_list)


def _answer(ctx: Context, p: _Plan, variants: dict[tuple, _Variant], shared_ms: float, batch_requests: int) -> Answer:
    report_tasks: dict[str, dict] = {}
    runs: list[TaskRun] = []
    gflops: dict[str, dict] = {}
    cached = units = 0
    for tp in p.tasks:
        v = variants[tp.variant]
        t = tp.route.run(ctx.device)
        t.windows, t.window = tp.windows, tp.window
        t.frames = [v.have[u] for u in tp.units]
        todo = set(v.todo)
        spent = {s: 0.0 for s in STAGES}
        for u in tp.units:
            if u in todo:
                for s in STAGES:
                    spent[s] += v.unit_ms.get(s, 0.0) / len(v.want[u])
            else:
                cached += 1
        units += len(tp.units)
        timing = {s: spent[s] / max(1, len(tp.units)) for s in STAGES}
        timing["total"] = sum(timing.values())
        report_tasks[t.name] = task_report(t, timing, tp.route.gflops, p.job.request.stride,
                                           p.job.request.threshold)
        runs.append(t)
        gflops[t.name] = tp.route.gflops
    req = p.job.request
    report = {"file": req.video, "frames": [p.start, p.stop], "device": str(ctx.device), "threshold": req.threshold,
              "tasks": report_tasks}
    if len(runs) > 1:
        report["sharing"] = sharing_report(runs, gflops, shared_ms, None)
    return Answer(report, cached, units, batch_requests, (time.perf_counter() - p.job.submitted) * 1000)


def check_request(req: InferRequest, max_tasks: int) -> None:
    """UsageError / TooLarge for a request that no video could answer (before it is queued)."""
    if not req.tasks:
        raise UsageError("tasks: give at least one task name")
    if len(req.tasks) > max_tasks:
        raise TooLarge(f"tasks: at most {max_tasks} tasks per request")
    if req.threshold is not None and not 0.0 <= req.threshold <= 1.0:
        raise UsageError(f"threshold must be a score in [0, 1], got {req.threshold}")
    for v in (req.window, req.stride):
        if v is not None and v < 1:
            raise UsageError("window and stride must be at least 1 frame")

"""What the service loads once per process: opened videos with their routing, backbones, adapters.

Only the scheduler's worker thread uses these objects (torch modules are not shared across
threads while they run). Backbones on real weights are keyed by task only, so one serves every
video; a backbone on random weights is calibrated on a video's own frames (as attach did), so it
is keyed by that video too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from ..codec.meta import read_routing
from ..codec.video import NvpVideo, open as open_nvp
from ..models.registry import TaskSpec, resolve_task
from ..route.infer import Clock, TaskRun, routing_entry, task_gflops, task_runtime
from ..route.runtime import TaskRuntime, build_runtime, load_adapters
from .caches import LRUCache
from .library import VideoKey
from .stats import Stats

RANDOM_WEIGHTS = ("random", "random-tiny")
MAX_OPEN_VIDEOS = 8
MAX_BACKBONES = 8
MAX_ROUTES = 64


@dataclass
class Route:
    """One task's route on one video version: entry, runtime, adapters and its GFLOPs per unit."""

    name: str
    entry: dict
    rt: TaskRuntime
    adapters: dict
    gflops: dict

    def run(self, device: torch.device) -> TaskRun:
        """A fresh `TaskRun` on this route (outputs empty)."""
        return TaskRun(self.name, self.entry, self.rt, self.adapters, Clock(device))


class Opened:
    """An opened `.nvp` and its routing (validated on read)."""

    def __init__(self, key: VideoKey) -> None:
        self.key = key
        self.video: NvpVideo = open_nvp(key.path)
        try:
            self.routing = read_routing(self.video.reader)
        except BaseException:
            self.video.close()
            raise

    def close(self) -> None:
        self.video.close()


class Loaded:
    """Opened videos, backbones and routes, each loaded once and kept in bounded LRU caches."""

    def __init__(self, device: torch.device, stats: Stats) -> None:
        self.device = device
        self.stats = stats
        self.videos = LRUCache(1 << 62, MAX_OPEN_VIDEOS, on_evict=lambda o: o.close())
        self.backbones = LRUCache(1 << 62, MAX_BACKBONES)
        self.routes = LRUCache(1 << 62, MAX_ROUTES)

    def video(self, key: VideoKey) -> Opened:
        """The opened file for `key` (opened once; FormatError for a damaged file)."""
        got = self.videos.get(key)
        if got is None:
            got = Opened(key)
            self.videos.put(key, got)
        return got

    def backbone(self, spec: TaskSpec, weights: str | None = None, width: int = 224, height: int = 224) -> TaskRuntime:
        """A backbone on real weights (`weights` None: the task's default), built once per process."""
        key = (spec.name, weights, str(self.device))
        rt = self.backbones.get(key)
        if rt is None:
            rt = build_runtime(spec, weights, self.device, width, height, reuse=True)
            self.stats.add(backbone_loads=1)
            self.backbones.put(key, rt)
        return dataclasses.replace(rt, geometry=rt.spec.geometry(height, width))

    def _runtime(self, opened: Opened, spec: TaskSpec, entry: dict) -> TaskRuntime:
        m = opened.video.metadata
        if entry.get("weights_random") or entry.get("weights") in RANDOM_WEIGHTS:
            key = (spec.name, entry.get("weights"), str(self.device), opened.key)
            rt = self.backbones.get(key)
            if rt is None:
                rt = task_runtime(opened.video, spec, entry, None, self.device)
                self.stats.add(backbone_loads=1)
                self.backbones.put(key, rt)
            return rt
        return self.backbone(spec, None, m.width, m.height)

    def route(self, opened: Opened, task: str, name: str) -> Route:
        """Task `task`'s route on this version of video `name` (UsageError: unknown task;
        NotAttachedError; FormatError: adapters that do not fit)."""
        spec = resolve_task(task)
        key = (opened.key, spec.name)
        got = self.routes.get(key)
        if got is not None:
            return got
        entry = routing_entry(opened.routing, spec.name, name)
        rt = self._runtime(opened, spec, entry)
        rt.model.set_decoding(1)
        adapters = load_adapters(opened.video, entry, rt, self.device)
        self.stats.add(adapter_loads=1)
        run = TaskRun(spec.name, entry, rt, adapters, Clock(self.device))
        route = Route(spec.name, entry, rt, adapters, task_gflops(opened.video, run, self.device))
        self.routes.put(key, route)
        return route

    def close(self) -> None:
        self.videos.clear()
        self.routes.clear()
        self.backbones.clear()


def warm_up() -> None:
    """Import now what a first route needs later: the FLOP counter pulls in torch._dynamo (seconds)."""
    from ..route.flops import count_flops

    count_flops(torch.nn.functional.conv2d, torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 1, 1))


def tensor_bytes(x: Any) -> int:
    """Bytes a tensor holds."""
    return x.element_size() * x.nelement()

"""The public Python API: `open` gives an `NvpVideo` that decodes (the codec layer) and serves tasks.

The task methods live here, above the task layers, so that the codec layer never imports them.
A task is named as a string or given as its `TaskSpec`; the name is looked up once per call.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from .adapt.attach import attach as _attach
from .codec import video as _codec_video
from .models.registry import TaskSpec
from .route.infer import infer as _infer


class NvpVideo(_codec_video.NvpVideo):
    """An opened `.nvp` file: frames and block activations, plus `attach` and `infer`."""

    def attach(self, task: str | TaskSpec, **kwargs: Any) -> dict:
        """Attach `task` (see `nvcodec.adapt.attach.attach`); this object then sees the new routing."""
        report = _attach(self.path, task, **kwargs)
        self._reopen()
        return report

    def infer(self, tasks: str | TaskSpec | Sequence[str | TaskSpec],
              frames: tuple[int | None, int | None] | None = None, **kwargs: Any) -> dict:
        """Run one or several attached tasks on frames [A, B) (see `nvcodec.route.infer.infer`)."""
        names = [tasks] if isinstance(tasks, (str, TaskSpec)) else list(tasks)
        return _infer(self.path, names, frames=frames, **kwargs)


def open(path: str | os.PathLike) -> NvpVideo:  # noqa: A001 - mirrors builtins.open on purpose
    """Open an `.nvp` file: `v = nvcodec.open("clip.nvp"); v[0]; v.features(layer=2); v.infer("resnet50")`."""
    return _codec_video.open(path, cls=NvpVideo)  # type: ignore[return-value]

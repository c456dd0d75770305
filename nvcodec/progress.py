"""Progress reporting: the library emits events, the caller decides how to show them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional


@dataclass
class ProgressEvent:
    """One step of a long operation. `total` is None when unknown."""

    stage: str
    step: int
    total: Optional[int] = None
    info: dict = field(default_factory=dict)


ProgressCallback = Callable[[ProgressEvent], None]


def emit(callback: Optional[ProgressCallback], stage: str, step: int, total: Optional[int] = None, **info) -> None:
    """Send an event to `callback` if there is one."""
    if callback is not None:
        callback(ProgressEvent(stage, step, total, info))

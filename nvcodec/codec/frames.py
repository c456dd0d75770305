"""Frame selections: parse `A:B` ranges and normalise index arguments."""

from __future__ import annotations

from typing import Iterable, Sequence, Union

from ..errors import UsageError

FrameSelection = Union[None, int, slice, range, Sequence[int]]


def parse_range(text: str | None) -> tuple[int | None, int | None] | None:
    """Parse `A:B` (half-open; either side may be empty) into a pair, or None for None/''."""
    if text is None or text == "":
        return None
    if ":" not in text:
        raise UsageError(f"frame range {text!r} must look like A:B (half-open, e.g. 0:24)")
    a_txt, b_txt = text.split(":", 1)
    try:
        a = int(a_txt) if a_txt.strip() else None
        b = int(b_txt) if b_txt.strip() else None
    except ValueError:
        raise UsageError(f"frame range {text!r} must hold integers, like 0:24") from None
    if (a is not None and a < 0) or (b is not None and b < 0):
        raise UsageError(f"frame range {text!r} must not be negative")
    if a is not None and b is not None and b <= a:
        raise UsageError(f"frame range {text!r} is empty (B must be greater than A)")
    return a, b


def resolve_range(rng: tuple[int | None, int | None] | None, total: int) -> tuple[int, int]:
    """Turn an optional (A, B) pair into concrete bounds inside [0, total)."""
    if rng is None:
        return 0, total
    a = 0 if rng[0] is None else rng[0]
    b = total if rng[1] is None else rng[1]
    if a >= total or b > total:
        raise UsageError(f"frames {a}:{b} are out of range: the video has {total} frames (0:{total})")
    return a, b


def resolve_indices(sel: FrameSelection, total: int) -> list[int]:
    """Normalise an index, slice, range or sequence of frame indices; bounds-checked."""
    if sel is None:
        return list(range(total))
    if isinstance(sel, slice):
        return list(range(total)[sel])
    if isinstance(sel, int):
        items: Iterable[int] = [sel]
    else:
        items = sel
    out = []
    for i in items:
        try:
            j = int(i)
        except (TypeError, ValueError):
            raise UsageError(f"frame index {i!r} is not an integer") from None
        if j < 0:
            j += total
        if not 0 <= j < total:
            raise UsageError(f"frame {i} is out of range: the video has {total} frames")
        out.append(j)
    return out

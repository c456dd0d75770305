"""Reports as standard JSON: numpy/torch values converted, NaN and infinities as null."""

from __future__ import annotations

import json
import math
from typing import Any


def json_default(obj: Any) -> Any:
    """What `json.dumps` writes for a value it does not know: arrays as lists, scalars as numbers."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def strict(obj: Any) -> Any:
    """`obj` with NaN and infinities replaced by None, so the output is standard JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    if not isinstance(obj, (str, int, bool)) and obj is not None:
        return strict(json_default(obj))
    return obj


def dumps(obj: Any, indent: int | None = None) -> str:
    """`obj` as standard JSON text (what `nvcodec ... --json` prints and `nvcodec serve` answers)."""
    try:
        return json.dumps(obj, indent=indent, default=json_default, allow_nan=False)
    except ValueError:
        return json.dumps(strict(obj), indent=indent, allow_nan=False)

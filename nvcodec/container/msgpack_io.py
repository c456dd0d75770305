"""Structured metadata: msgpack with string keys, no ext types, bounded size, value count and depth."""

from __future__ import annotations

from typing import Any

import msgpack

from nvcodec.container.layout import MAX_MSGPACK_BYTES, MAX_MSGPACK_DEPTH, MAX_MSGPACK_VALUES
from nvcodec.errors import FormatError


class ValueBudget:
    """How many more msgpack values (maps, arrays and their elements) may be decoded.

    One budget can span several payloads, so that a command reading many sections of one file
    does a bounded amount of work in total.
    """

    def __init__(self, values: int = MAX_MSGPACK_VALUES) -> None:
        self.total = self.left = values

    def spend(self, n: int) -> None:
        """Take `n` values; ValueError once the budget is gone."""
        self.left -= n
        if self.left < 0:
            raise ValueError(f"more values in maps and arrays than this reader decodes ({self.total})")


def _default(obj: Any) -> Any:
    if type(obj).__module__ == "numpy" and hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:
        return obj.item()
    raise TypeError(f"cannot store {type(obj).__name__} in msgpack metadata")


def pack_msgpack(obj: Any) -> bytes:
    """Serialize metadata (numpy scalars become Python numbers); the result is checked to be readable."""
    try:
        data = msgpack.packb(obj, use_bin_type=True, default=_default)
    except (TypeError, ValueError, OverflowError) as exc:
        raise FormatError(f"cannot pack metadata: {exc}") from None
    unpack_msgpack(data)
    return data


def unpack_msgpack(data: bytes, *, section: str | None = None, offset: int | None = None,
                   budget: ValueBudget | None = None) -> Any:
    """Decode one msgpack object filling `data` exactly, within the format's limits.

    At most MAX_MSGPACK_VALUES values are decoded (each map and array counts one, plus one per
    array element and two per map entry); `budget` additionally caps the total over several calls.
    """
    if not 0 < len(data) <= MAX_MSGPACK_BYTES:
        raise FormatError(f"msgpack payload of {len(data)} bytes outside 1..{MAX_MSGPACK_BYTES}",
                          section=section, offset=offset)
    own = ValueBudget()

    def on_list(obj: list) -> list:
        own.spend(1 + len(obj))
        if budget is not None:
            budget.spend(1 + len(obj))
        return obj

    def on_map(obj: dict) -> dict:
        own.spend(1 + 2 * len(obj))
        if budget is not None:
            budget.spend(1 + 2 * len(obj))
        for key in obj:
            if type(key) is not str:
                raise ValueError("msgpack map key is not a string")
        return obj

    n = len(data)
    longest = min(n, MAX_MSGPACK_VALUES)
    unpacker = msgpack.Unpacker(None, raw=False, use_list=True, strict_map_key=True, max_buffer_size=n,
                                max_str_len=n, max_bin_len=n, max_array_len=longest, max_map_len=longest,
                                max_ext_len=0, list_hook=on_list, object_hook=on_map)
    try:
        unpacker.feed(data)
        obj = unpacker.unpack()
        trailing = n - unpacker.tell()
    except Exception as exc:  # msgpack raises many types (ValueError, StackError, UnicodeDecodeError, ...)
        raise FormatError(f"invalid msgpack: {type(exc).__name__}: {exc}", section=section, offset=offset) from None
    if trailing:
        raise FormatError(f"{trailing} bytes after the msgpack object", section=section, offset=offset)
    _check_depth(obj, section, offset)
    return obj


def _check_depth(obj: Any, section: str | None, offset: int | None) -> None:
    """Nesting of maps and arrays at most MAX_MSGPACK_DEPTH (only containers are visited)."""
    level = [obj] if type(obj) in (dict, list) else []
    depth = 0
    while level:
        depth += 1
        if depth > MAX_MSGPACK_DEPTH:
            raise FormatError(f"msgpack nesting deeper than {MAX_MSGPACK_DEPTH}", section=section, offset=offset)
        children = []
        for item in level:
            values = item.values() if type(item) is dict else item
            children.extend(v for v in values if type(v) in (dict, list))
        level = children

"""Structured metadata: msgpack with string keys, no ext types, bounded size, count and depth."""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

from nvcodec.container.layout import MAX_MSGPACK_BYTES, MAX_MSGPACK_CONTAINERS, MAX_MSGPACK_DEPTH
from nvcodec.errors import FormatError


def _default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
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


def unpack_msgpack(data: bytes, *, section: str | None = None, offset: int | None = None) -> Any:
    """Decode one msgpack object filling `data` exactly, within the format's limits."""
    if not 0 < len(data) <= MAX_MSGPACK_BYTES:
        raise FormatError(f"msgpack payload of {len(data)} bytes outside 1..{MAX_MSGPACK_BYTES}",
                          section=section, offset=offset)
    budget = [MAX_MSGPACK_CONTAINERS]

    def count(obj: Any) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise ValueError(f"more than {MAX_MSGPACK_CONTAINERS} maps and arrays")
        return obj

    n = len(data)
    unpacker = msgpack.Unpacker(None, raw=False, use_list=True, strict_map_key=True, max_buffer_size=n,
                                max_str_len=n, max_bin_len=n, max_array_len=n, max_map_len=n, max_ext_len=0,
                                list_hook=count, object_hook=count)
    try:
        unpacker.feed(data)
        obj = unpacker.unpack()
        trailing = n - unpacker.tell()
    except Exception as exc:  # msgpack raises many types (ValueError, StackError, UnicodeDecodeError, ...)
        raise FormatError(f"invalid msgpack: {type(exc).__name__}: {exc}", section=section, offset=offset) from None
    if trailing:
        raise FormatError(f"{trailing} bytes after the msgpack object", section=section, offset=offset)
    _check_tree(obj, section, offset)
    return obj


def _check_tree(obj: Any, section: str | None, offset: int | None) -> None:
    stack = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = list(item.values())
            if any(not isinstance(k, str) for k in item):
                raise FormatError("msgpack map key is not a string", section=section, offset=offset)
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_MSGPACK_DEPTH:
            raise FormatError(f"msgpack nesting deeper than {MAX_MSGPACK_DEPTH}", section=section, offset=offset)
        stack.extend((c, depth + 1) for c in children)

"""A bounded least-recently-used cache, by bytes and by entries, safe across threads."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class LRUCache:
    """At most `max_bytes` (each entry's size given to `put`) and `max_items` entries; the least
    recently used go first. An entry larger than the whole budget is not kept. `on_evict(value)`
    runs for each dropped entry (outside the lock)."""

    def __init__(self, max_bytes: int, max_items: int | None = None,
                 on_evict: Callable[[Any], None] | None = None) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self.max_items = max_items
        self.on_evict = on_evict
        self._data: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def get(self, key: Hashable) -> Any | None:
        """The value under `key` (now the most recently used), or None."""
        with self._lock:
            item = self._data.get(key)
            if item is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return item[0]

    def peek(self, key: Hashable) -> bool:
        """Whether `key` is held (counts nothing, moves nothing)."""
        with self._lock:
            return key in self._data

    def put(self, key: Hashable, value: Any, nbytes: int = 0) -> None:
        """Keep `value` under `key`, dropping the least recently used entries beyond the bounds."""
        dropped: list[Any] = []
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
                dropped.append(old[0])
            if nbytes <= self.max_bytes and (self.max_items is None or self.max_items > 0):
                self._data[key] = (value, nbytes)
                self._bytes += nbytes
            while self._data and (self._bytes > self.max_bytes or
                                  (self.max_items is not None and len(self._data) > self.max_items)):
                _, (v, n) = self._data.popitem(last=False)
                self._bytes -= n
                self.evictions += 1
                dropped.append(v)
        if self.on_evict is not None:
            for v in dropped:
                if v is not value:
                    self.on_evict(v)

    def clear(self) -> None:
        """Drop every entry (`on_evict` runs for each)."""
        with self._lock:
            dropped = [v for v, _ in self._data.values()]
            self._data.clear()
            self._bytes = 0
        if self.on_evict is not None:
            for v in dropped:
                self.on_evict(v)

    def __len__(self) -> int:
        return len(self._data)

    @property
    def bytes(self) -> int:
        """Bytes held (as given to `put`)."""
        return self._bytes

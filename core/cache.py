"""Content-keyed caches: iterating on an edit must not redo work whose inputs did not change."""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable


def content_key(*parts: Any) -> str:
    """A stable key from strings, numbers, tuples and tensors' bytes."""
    h = hashlib.sha256()
    for p in parts:
        if hasattr(p, "detach"):  # torch tensor
            p = p.detach().cpu().contiguous().numpy()
        if hasattr(p, "tobytes"):
            h.update(str(p.shape).encode() + p.tobytes())
        else:
            h.update(repr(p).encode())
        h.update(b"\x00")
    return h.hexdigest()[:32]


class LRUCache:
    """A small least-recently-used map. Values are only stored once fully computed, so a
    cancelled computation never leaves a partial entry."""

    def __init__(self, max_items: int = 8):
        self.max_items = max_items
        self._items: "OrderedDict[Hashable, Any]" = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            self.misses += 1
            return None

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]):
        value = self.get(key)
        if value is None:
            value = compute()
            self.put(key, value)
        return value

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

"""Arrays reused from step to step, so that training allocates nothing in the steady state."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any


class BufferCache:
    """Buffers keyed by a name and a shape key. Two shapes are kept per name: the full batch
    and the last, smaller one of an epoch; a third evicts the oldest."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, Hashable], Any] = {}

    def get(self, name: str, shape_key: Hashable, make: Callable[[], Any]) -> Any:
        """The buffer for (name, shape_key), made by ``make()`` the first time."""
        key = (name, shape_key)
        item = self._items.get(key)
        if item is None:
            same_name = [k for k in self._items if k[0] == name]
            if len(same_name) >= 2:
                del self._items[same_name[0]]
            item = self._items[key] = make()
        return item

    def clear(self) -> None:
        self._items.clear()

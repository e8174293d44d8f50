"""A bounded map that forgets what was used longest ago: the copies a service keeps in its process."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Lru(Generic[K, V]):
    """At most `most` entries; with `weigh`, entries that weigh at most `most` together.

    Not locked: a copy that several threads share is used under its owner's lock.
    """

    __slots__ = ("_entries", "_most", "_weigh", "_weight")

    def __init__(self, most: int, weigh: Callable[[K, V], int] | None = None) -> None:
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._most = most
        self._weigh = weigh
        self._weight = 0

    def __contains__(self, key: K) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        """The value kept for `key`, which is now the most recently used; None when there is none."""
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """Keep `value` for `key` as the most recently used, and forget the least recently used past the bound."""
        self.pop(key)
        self._entries[key] = value
        self._weight += self._weight_of(key, value)
        while self._entries and (self._weight if self._weigh else len(self._entries)) > self._most:
            self._weight -= self._weight_of(*self._entries.popitem(last=False))

    def pop(self, key: K) -> None:
        """Forget `key`, if it is kept."""
        if key in self._entries:
            self._weight -= self._weight_of(key, self._entries.pop(key))

    def _weight_of(self, key: K, value: V) -> int:
        return self._weigh(key, value) if self._weigh else 0

"""A map for work in flight: kept from one hook to a later one, bounded in count and in age.

The addon keeps each flow's DecisionContext from its request to its response (or error). Those
hooks take entries out again, so the map normally holds only the flows in flight; the bounds are
for flows that never finish. cachetools' TTLCache did this job at ~5.3 us a flow (its timer and
linked list on every set, get and pop); this does it at ~1.0 (a put, a get and a pop a flow on
a 200-entry map, both measured in one run). Entries are kept in insertion order (an OrderedDict:
O(1) at both ends), so the oldest is always first, and each `put` drops from the front what is
past its age, then the oldest while the map is full.

Guarantees: at most `maxsize` entries; an entry as old as `ttl` is never returned; when full,
the entry stored first goes first (TTLCache's: the one read least recently -- for a flow, read
once between its store and its pop, the same one).
"""
from __future__ import annotations

from collections import OrderedDict

from .clock import Clock


class Pending[K, V]:
    __slots__ = ("_clock", "_items", "maxsize", "ttl")

    def __init__(self, maxsize: int, ttl: float, clock: Clock) -> None:
        if maxsize < 1 or ttl <= 0:
            raise ValueError("maxsize and ttl must be positive")
        self.maxsize, self.ttl, self._clock = maxsize, ttl, clock
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def put(self, key: K, value: V) -> None:
        """Store `value` under `key` (a key stored again counts its age from now)."""
        items = self._items
        items.pop(key, None)  # re-stored: to the back, with its new age
        now = self._clock.now()
        horizon = now - self.ttl
        while items:  # the front is the oldest: stop at the first entry still young, with room
            first = next(iter(items))
            if items[first][0] > horizon and len(items) < self.maxsize:
                break
            del items[first]
        items[key] = (now, value)

    def get(self, key: K) -> V | None:
        entry = self._items.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock.now() - self.ttl:
            del self._items[key]
            return None
        return entry[1]

    def pop(self, key: K) -> V | None:
        entry = self._items.pop(key, None)
        if entry is None or entry[0] <= self._clock.now() - self.ttl:
            return None
        return entry[1]

    def __contains__(self, key: object) -> bool:
        entry = self._items.get(key)  # type: ignore[arg-type]
        return entry is not None and entry[0] > self._clock.now() - self.ttl

    def __len__(self) -> int:
        """Entries held, those past their age but not yet dropped included."""
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

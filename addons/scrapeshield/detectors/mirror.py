"""This replica's mirror of the detector logs in a shared store (`Store.append_logs`).

A log is append-only (the store keeps its newest `keep` entries and drops it `ttl` after its last
append), so a replica need not read a whole log per request: it keeps, per log, how many appends
it has read and the detector state built from them (a `Walk`, an `ArrivalGaps`, a `CrowdIndex`),
says so in its next append (`seen`), and gets back only what other replicas appended since, its
own entry last. It rebuilds the state from the whole log when the store sends the whole log
(first sight, fallen behind, the log began anew).

Concurrent requests of this replica on one log may be answered out of order; entries are
applied once, in log order, and a request answered after a later one's reply is judged on the
state that already includes the later entry (as two requests racing in one process would be).
"""
from __future__ import annotations

from collections.abc import Callable

from cachetools import LRUCache

from ..store.base import LogRead


class LogMirror[S]:
    __slots__ = ("appended", "state", "updated")

    def __init__(self, state: S) -> None:
        self.state = state
        self.appended = 0  # appends to the log this mirror has applied
        self.updated = 0.0  # when this mirror last heard from the log


class LogMirrors[S]:
    """Mirrors of one kind of log, bounded (least recently used evicted)."""

    __slots__ = ("_mirrors",)

    def __init__(self, max_logs: int) -> None:
        self._mirrors: LRUCache[str, LogMirror[S]] = LRUCache(max_logs)

    def __len__(self) -> int:
        return len(self._mirrors)

    def seen(self, key: str, now: float, ttl: float) -> int:
        """What to tell the store this replica has read of log `key`: 0 (send the whole log) when it
        knows nothing, or heard nothing for `ttl` (the log may have expired and begun anew)."""
        mirror = self._mirrors.get(key)
        if mirror is None or now - mirror.updated >= ttl:
            return 0
        return mirror.appended

    def apply(self, key: str, read: LogRead, now: float, new_state: Callable[[], S],
              add: Callable[[S, str], None]) -> S:
        """Bring the mirror of `key` up to `read` and return its state."""
        mirror = self._mirrors.get(key)
        if read.whole or mirror is None:
            # A reply that raced a later one may bring an older whole log: rebuilt from it, the
            # mirror asks from there next time and gets what it lacks.
            if mirror is None or read.appended != mirror.appended:
                mirror = LogMirror(new_state())
                for entry in read.entries:
                    add(mirror.state, entry)
                mirror.appended = read.appended
        else:
            first = read.appended - len(read.entries) + 1  # the append number of entries[0]
            for i in range(max(0, mirror.appended + 1 - first), len(read.entries)):
                add(mirror.state, read.entries[i])
            if read.appended > mirror.appended:
                mirror.appended = read.appended
        mirror.updated = now
        self._mirrors[key] = mirror
        return mirror.state

    def local(self, key: str, new_state: Callable[[], S]) -> S:
        """The state of a log kept only in this process (no shared store)."""
        mirror = self._mirrors.get(key)
        if mirror is None:
            mirror = self._mirrors[key] = LogMirror(new_state())
        return mirror.state

    def clear(self) -> None:
        self._mirrors.clear()

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

Without a shared store the same table holds the logs themselves (`local`).

Bounds. A mirror is dropped when
- it heard nothing from its log for longer than `ttl` (expired: by the injected clock, the time
  passed in; the log's entries are all older than `ttl` then, so dropping it changes no
  measurement, and a shared log has itself expired in the store or will be sent whole);
- there are `max_logs` mirrors, or their states hold more than `max_entries` entries together
  (evicted, least recently used first: memory is entries, and a table of many small logs and one
  of a few full ones cost alike per entry).
Both are counted (`expired`, `evicted`). The table is an OrderedDict in least-recently-used order
(a use moves a log to the end), so both sweeps start at its front and stop at the first log kept:
amortised O(1) a use. (A plain dict would do the same, but finding its first key after many
front deletions walks over their dummies.)
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from ..store.base import LogRead


class LogMirror[S]:
    __slots__ = ("appended", "entries", "state", "updated")

    def __init__(self, state: S) -> None:
        self.state = state
        self.appended = 0  # appends to the log this mirror has applied
        self.updated = 0.0  # when this mirror last heard from the log
        self.entries = 0  # the state's size as of its last use (what `max_entries` counts)


class LogMirrors[S]:
    """Mirrors of one kind of log, bounded by count, by entries and by idle time (module doc)."""

    __slots__ = ("_entries", "_mirrors", "_size", "evicted", "expired", "max_entries", "max_logs", "ttl")

    def __init__(self, max_logs: int, ttl: float, max_entries: int | None = None,
                 size: Callable[[S], int] | None = None) -> None:
        """`size` measures a state in entries (needed with `max_entries`)."""
        if max_logs < 1:
            raise ValueError("LogMirrors holds at least one log")
        if (max_entries is None) != (size is None):
            raise ValueError("max_entries and size go together")
        self.max_logs = max_logs
        self.ttl = ttl
        self.max_entries = max_entries
        self._size = size
        self._mirrors: OrderedDict[str, LogMirror[S]] = OrderedDict()  # least recently used first
        self._entries = 0  # sum of the mirrors' `entries`
        self.expired = 0  # mirrors dropped for idling past `ttl`
        self.evicted = 0  # mirrors dropped for `max_logs` or `max_entries`

    def __len__(self) -> int:
        return len(self._mirrors)

    @property
    def entries(self) -> int:
        """Entries held, as of each log's last use (expired entries not measured away yet included)."""
        return self._entries

    def seen(self, key: str, now: float) -> int:
        """What to tell the store this replica has read of log `key`: 0 (send the whole log) when it
        knows nothing, or heard nothing for `ttl` (the log may have expired and begun anew)."""
        mirror = self._mirrors.get(key)
        if mirror is None or now - mirror.updated >= self.ttl:
            return 0
        return mirror.appended

    def apply(self, key: str, read: LogRead, now: float, new_state: Callable[[], S],
              add: Callable[[S, str], None]) -> S:
        """Bring the mirror of `key` up to `read` and return its state."""
        mirror = self._take(key, now)
        if read.whole or mirror is None:
            # A reply that raced a later one may bring an older whole log: rebuilt from it, the
            # mirror asks from there next time and gets what it lacks.
            if mirror is None or read.appended != mirror.appended:
                if mirror is not None:
                    self._entries -= mirror.entries
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
        self._put(key, mirror, now)
        return mirror.state

    def local[E](self, key: str, now: float, new_state: Callable[[], S], add: Callable[[S, E], None],
                 entry: E) -> S:
        """Add `entry` to a log kept only in this process (no shared store) and return its state:
        `live`, add, `settle` (also what a caller that knows its state type does without callables)."""
        mirror = self.live(key, now)
        fresh = mirror is None
        if mirror is None:
            mirror = LogMirror(new_state())
        state = mirror.state
        add(state, entry)
        self.settle(key, mirror, now, self._size(state) if self._size is not None else 0, fresh)
        return state

    def live(self, key: str, now: float) -> LogMirror[S] | None:
        """The live mirror of `key`, now the most recently used (moved to the end where it stands,
        one table operation instead of `_take` and `_put`'s two), or None when there is none or it
        expired (then it is dropped, as `_take` does). Follow with `settle`."""
        mirrors = self._mirrors
        mirror = mirrors.get(key)
        if mirror is None:
            return None
        if now - mirror.updated > self.ttl:
            del mirrors[key]
            self._entries -= mirror.entries
            self.expired += 1
            return None
        mirrors.move_to_end(key)
        return mirror

    def settle(self, key: str, mirror: LogMirror[S], now: float, size: int, fresh: bool) -> None:
        """After `live` and a change to the state: as `_put`, with the state's `size` in entries
        (counted with `max_entries` only) measured by the caller. `fresh`: `live` said None, and
        `mirror` is new, not in the table yet."""
        if self._size is not None:
            self._entries += size - mirror.entries
            mirror.entries = size
        if now > mirror.updated:  # never back (see `_put`)
            mirror.updated = now
        mirrors = self._mirrors
        # `_put`'s sweep. A live mirror is the last in the table already: it is excluded, and the
        # table holds one log more than `_put` counts.
        last = 0 if fresh else 1
        ttl = self.ttl
        max_entries = self.max_entries
        max_logs = self.max_logs + last
        while len(mirrors) > last:
            other = next(iter(mirrors.values()))
            if now - other.updated > ttl:
                self.expired += 1
            elif len(mirrors) >= max_logs or (max_entries is not None and self._entries > max_entries):
                self.evicted += 1
            else:
                break
            mirrors.popitem(last=False)
            self._entries -= other.entries
        if fresh:
            mirrors[key] = mirror

    def copy(self, copy_state: Callable[[S], S]) -> LogMirrors[S]:
        """An independent copy, each state copied by `copy_state` (`DetectorSet.fork`)."""
        other = LogMirrors(self.max_logs, self.ttl, self.max_entries, self._size)
        for key, mirror in self._mirrors.items():
            twin = LogMirror(copy_state(mirror.state))
            twin.appended, twin.updated, twin.entries = mirror.appended, mirror.updated, mirror.entries
            other._mirrors[key] = twin
        other._entries, other.expired, other.evicted = self._entries, self.expired, self.evicted
        return other

    def clear(self) -> None:
        self._mirrors.clear()
        self._entries = 0

    def _take(self, key: str, now: float) -> LogMirror[S] | None:
        """Remove `key`'s mirror from the table and return it, or None (also when it expired)."""
        mirror = self._mirrors.pop(key, None)
        if mirror is None:
            return None
        if now - mirror.updated > self.ttl:
            self._entries -= mirror.entries
            self.expired += 1
            return None
        return mirror

    def _put(self, key: str, mirror: LogMirror[S], now: float) -> None:
        """(Re)insert a taken or new mirror as the most recently used and restore the bounds."""
        if self._size is not None:
            size = self._size(mirror.state)
            self._entries += size - mirror.entries
            mirror.entries = size
        if now > mirror.updated:  # never back: with a clock that steps back (a replay out of order)
            mirror.updated = now  # an entry may be newer than `now`, and must not be dropped before it expires
        mirrors = self._mirrors
        # Sweep from the least recently used end before inserting, so `key` is never swept itself.
        ttl = self.ttl
        max_entries = self.max_entries
        while mirrors:
            head = next(iter(mirrors))
            other = mirrors[head]
            if now - other.updated > ttl:
                self.expired += 1
            elif (len(mirrors) >= self.max_logs
                  or (max_entries is not None and self._entries > max_entries)):
                self.evicted += 1
            else:
                break
            del mirrors[head]
            self._entries -= other.entries
        mirrors[key] = mirror

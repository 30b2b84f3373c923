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
Both are counted (`expired`, `evicted`). The table is a dict from log name to mirror, and the
mirrors form a list in least-recently-used order through their own `older`/`newer` links (a use
moves a log to the newest end), so both sweeps start at the oldest and stop at the first log kept:
amortised O(1) a use. The links are plain fields, read and written in place by compiled code,
where an OrderedDict's `move_to_end` and first key cost a method call and an iterator a use.
(A plain dict in insertion order would do too, but finding its first key after many front
deletions walks over their dummies.)
"""
from __future__ import annotations

from collections.abc import Callable

from ..store.base import LogRead


class LogMirror[S]:
    __slots__ = ("appended", "entries", "key", "newer", "older", "state", "updated")

    def __init__(self, state: S) -> None:
        self.state = state
        self.appended = 0  # appends to the log this mirror has applied
        self.updated = 0.0  # when this mirror last heard from the log
        self.entries = 0  # the state's size as of its last use (what `max_entries` counts)
        self.key = ""  # its name in the table, once in it
        self.older: LogMirror[S] | None = None  # its neighbours in the table's use order
        self.newer: LogMirror[S] | None = None


class LogMirrors[S]:
    """Mirrors of one kind of log, bounded by count, by entries and by idle time (module doc)."""

    __slots__ = ("_entries", "_mirrors", "_newest", "_oldest", "_size", "evicted", "expired", "max_entries",
                 "max_logs", "ttl")

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
        self._mirrors: dict[str, LogMirror[S]] = {}
        self._oldest: LogMirror[S] | None = None  # the least recently used end of the use order
        self._newest: LogMirror[S] | None = None
        self._entries = 0  # sum of the mirrors' `entries`
        self.expired = 0  # mirrors dropped for idling past `ttl`
        self.evicted = 0  # mirrors dropped for `max_logs` or `max_entries`

    def __len__(self) -> int:
        return len(self._mirrors)

    @property
    def entries(self) -> int:
        """Entries held, as of each log's last use (expired entries not measured away yet included)."""
        return self._entries

    def items(self) -> list[tuple[str, LogMirror[S]]]:
        """The table, least recently used first (tests, `copy`)."""
        out: list[tuple[str, LogMirror[S]]] = []
        mirror = self._oldest
        while mirror is not None:
            out.append((mirror.key, mirror))
            mirror = mirror.newer
        return out

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
        mirror = self.live(key, now)
        fresh = mirror is None
        if mirror is None:
            mirror = LogMirror(new_state())
            for entry in read.entries:
                add(mirror.state, entry)
            mirror.appended = read.appended
        elif read.whole:
            # A reply that raced a later one may bring an older whole log: rebuilt from it, the
            # mirror asks from there next time and gets what it lacks.
            if read.appended != mirror.appended:
                # Begun anew in its place, as a new mirror would be: nothing counted, never updated.
                self._entries -= mirror.entries
                mirror.entries = 0
                mirror.updated = 0.0
                mirror.state = state = new_state()
                for entry in read.entries:
                    add(state, entry)
                mirror.appended = read.appended
        else:
            first = read.appended - len(read.entries) + 1  # the append number of entries[0]
            for i in range(max(0, mirror.appended + 1 - first), len(read.entries)):
                add(mirror.state, read.entries[i])
            if read.appended > mirror.appended:
                mirror.appended = read.appended
        self.settle(key, mirror, now, self._size(mirror.state) if self._size is not None else 0, fresh)
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
        """The live mirror of `key`, now the most recently used, or None when there is none or it
        expired (then it is dropped and counted). Follow with `settle`."""
        mirror = self._mirrors.get(key)
        if mirror is None:
            return None
        if now - mirror.updated > self.ttl:
            self._drop(mirror)
            self.expired += 1
            return None
        newest = self._newest
        if mirror is not newest:
            assert newest is not None
            older, newer = mirror.older, mirror.newer
            assert newer is not None  # not the newest
            newer.older = older
            if older is None:
                self._oldest = newer
            else:
                older.newer = newer
            mirror.older = newest
            mirror.newer = None
            newest.newer = mirror
            self._newest = mirror
        return mirror

    def settle(self, key: str, mirror: LogMirror[S], now: float, size: int, fresh: bool) -> None:
        """After `live` (or a new mirror for a log it said None to: `fresh`) and a change to the
        state: count the state's `size` in entries (with `max_entries` only; measured by the caller),
        note the use, restore the bounds (expired and least recently used logs dropped, oldest
        first; never this one), and put a fresh mirror in the table as the most recently used."""
        if self._size is not None:
            self._entries += size - mirror.entries
            mirror.entries = size
        if now > mirror.updated:  # never back: with a clock that steps back (a replay out of order)
            mirror.updated = now  # an entry may be newer than `now`, and must not be dropped before it expires
        # Counted without this log: a live one is in the table already, a fresh one not yet.
        max_logs = self.max_logs if fresh else self.max_logs + 1
        ttl = self.ttl
        max_entries = self.max_entries
        mirrors = self._mirrors
        other = self._oldest
        while other is not None and other is not mirror:
            if now - other.updated > ttl:
                self.expired += 1
            elif len(mirrors) >= max_logs or (max_entries is not None and self._entries > max_entries):
                self.evicted += 1
            else:
                break
            self._drop(other)
            other = self._oldest
        if fresh:
            self._link_newest(key, mirror)

    def copy(self, copy_state: Callable[[S], S]) -> LogMirrors[S]:
        """An independent copy, each state copied by `copy_state` (`DetectorSet.fork`)."""
        other = LogMirrors(self.max_logs, self.ttl, self.max_entries, self._size)
        for key, mirror in self.items():
            twin = LogMirror(copy_state(mirror.state))
            twin.appended, twin.updated, twin.entries = mirror.appended, mirror.updated, mirror.entries
            other._link_newest(key, twin)
        other._entries, other.expired, other.evicted = self._entries, self.expired, self.evicted
        return other

    def clear(self) -> None:
        mirror = self._oldest
        while mirror is not None:  # unlinked, so that each is freed at once rather than by the cycle collector
            newer = mirror.newer
            mirror.older = mirror.newer = None
            mirror = newer
        self._mirrors.clear()
        self._oldest = self._newest = None
        self._entries = 0

    def _link_newest(self, key: str, mirror: LogMirror[S]) -> None:
        """Put a mirror not in the table in it, as the most recently used."""
        mirror.key = key
        self._mirrors[key] = mirror
        newest = self._newest
        mirror.older = newest
        if newest is None:
            self._oldest = mirror
        else:
            newest.newer = mirror
        self._newest = mirror

    def _drop(self, mirror: LogMirror[S]) -> None:
        """Remove a mirror from the table (its entries no longer counted)."""
        del self._mirrors[mirror.key]
        older, newer = mirror.older, mirror.newer
        if older is None:
            self._oldest = newer
        else:
            older.newer = newer
        if newer is None:
            self._newest = older
        else:
            newer.older = older
        mirror.older = mirror.newer = None
        self._entries -= mirror.entries

"""In-process store: bounded tables whose idle entries are swept incrementally.

Memory is the constraint (a million tracked keys must fit in a few dozen MiB), so bucket TATs,
scores and spent tokens live in `LruTable`s (flat arrays, ~34 bytes an entry, see compact.py),
known by a hash of (definition id, client key) (`entry_hash`, `score_hash`). An entry whose TAT
has passed is equivalent to no entry, and `_sweep` removes such entries from the least recently
used end, a bounded number at a time; a score at 0 is no entry too, so reading a score nobody
raised stores nothing. Beyond its bound a table evicts its least recently used entry.

`apply_now` is every decision's store call: GCRA and the decay are inlined there (the same
arithmetic as `gcra.conform_all` and `base.decay`, bit for bit; tests/store/test_memory_model.py).

Bans and allows keep their keys (the control API lists them) in a `DeadlineList`: a dict with a
heap of deadlines, bounded, each entry gone at its deadline.
"""
from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Callable
from typing import Final

from cachetools import LRUCache
from mypy_extensions import i64, mypyc_attr

from ..gcra import BucketLimit, state_after
from .base import (
    Batch,
    BatchResult,
    BucketCheck,
    KeyInspection,
    ListEntry,
    LogAppend,
    LogRead,
    Logs,
    ScoreUpdate,
    decay,
)
from .compact import LruTable

_SWEEP_EVERY: Final = 1.0  # seconds of clock time between incremental sweeps
_SWEEP_BUDGET: Final = 2000  # entries examined per sweep and table
_SPENT_HOLD: Final = 3600.0  # seconds a spent token is remembered at least


def entry_hash(definition: str, key: str) -> i64:
    """The table hash of one bucket's entry: its definition id and client key (the hot path inlines
    it)."""
    return hash((definition, key))


def score_hash(score_id: str, key: str) -> i64:
    """The table hash of one score's entry: the two strings' hashes combined without a tuple (a
    decision updates a handful of scores and session counters; the strings keep their hashes, so
    this is two field reads). Python's str hash is keyed per process, so no client can aim two
    entries at one hash; the inlined copy in `_apply_scores` must stay the same."""
    hs: i64 = hash(score_id)
    hk: i64 = hash(key)
    return hs ^ hk


class DeadlineList:
    """Keys with a deadline, a reason and a creation time: at most `max_entries`, each gone at
    its deadline. When full, the entry with the soonest deadline makes room."""

    __slots__ = ("_deadlines", "_entries", "max_entries")

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: dict[str, ListEntry] = {}
        self._deadlines: list[tuple[float, str]] = []  # a heap; may hold stale pairs (checked on pop)

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def get(self, key: str, now: float) -> ListEntry | None:
        entry = self._entries.get(key)
        if entry is not None and entry.until <= now:
            del self._entries[key]
            return None
        return entry

    def put(self, entry: ListEntry, now: float) -> None:
        self._entries[entry.key] = entry
        heapq.heappush(self._deadlines, (entry.until, entry.key))
        if len(self._entries) > self.max_entries:
            self.expire(now, len(self._deadlines))
            while len(self._entries) > self.max_entries:
                self._pop_soonest()
        if len(self._deadlines) > 2 * len(self._entries) + 64:  # drop stale pairs
            self._deadlines = [(e.until, k) for k, e in self._entries.items()]
            heapq.heapify(self._deadlines)

    def remove(self, key: str) -> bool:
        return self._entries.pop(key, None) is not None

    def expire(self, now: float, budget: int = _SWEEP_BUDGET) -> None:
        heap = self._deadlines
        while heap and budget > 0 and heap[0][0] <= now:
            budget -= 1
            self._pop_soonest()

    def live(self, now: float, limit: int) -> list[ListEntry]:
        """Entries whose deadline is after `now`, soonest first, at most `limit`."""
        return heapq.nsmallest(limit, (e for e in self._entries.values() if e.until > now),
                               key=lambda e: (e.until, e.key))

    def _pop_soonest(self) -> None:
        until, key = heapq.heappop(self._deadlines)
        entry = self._entries.get(key)
        if entry is not None and entry.until == until:
            del self._entries[key]


class EntryLog:
    """One log of `append_logs`: its newest entries and when it is gone."""

    __slots__ = ("appended", "entries", "until")

    def __init__(self, keep: int) -> None:
        self.entries: deque[str] = deque(maxlen=keep)
        self.until = 0.0
        self.appended = 0


# Compiled (accel.py), a class is final unless it says otherwise: stores are extended by subclassing
# (fault injection, a store that answers only through coroutines, counting).
@mypyc_attr(allow_interpreted_subclasses=True)
class MemoryStore:
    name = "memory"

    def __init__(self, max_keys: int = 1_000_000, max_bans: int = 100_000, max_scores: int = 200_000,
                 max_spent: int = 200_000, max_allows: int = 100_000, max_logs: int = 100_000) -> None:
        self._tats = LruTable(max_keys)
        self._scores = LruTable(max_scores, two_values=True)
        self._spent = LruTable(max_spent)
        self._bans = DeadlineList(max_bans)
        self._allows = DeadlineList(max_allows)
        # Definitions seen, for `tags` and `inspect`: bucket id -> (tag, limit), score id -> (tag, half-life).
        self._bucket_defs: dict[str, tuple[int, BucketLimit]] = {}
        self._score_defs: dict[str, tuple[int, float]] = {}
        self._tags = itertools.count()
        self._next_sweep = 0.0
        # Detector logs (`append_logs`): bounded by count, each gone `ttl` after its last append.
        self._logs: LRUCache[str, EntryLog] = LRUCache(max_logs)

    async def connect(self) -> None:
        return None

    # -- the hot path --------------------------------------------------------------------
    def apply_now(self, batch: Batch, now: float) -> BatchResult:
        if now >= self._next_sweep:
            self._sweep(now)
        allowed_key = None
        if batch.ban_keys and (self._bans or self._allows):
            for key in batch.ban_keys:
                if self._allows and self._allows.get(key, now) is not None:
                    if allowed_key is None:
                        allowed_key = key
                    continue
                ban = self._bans.get(key, now) if self._bans else None
                if ban is not None:
                    return BatchResult(key, ban.until, -1, (), (), allowed_key)

        refused = -1
        checks = batch.buckets
        tats: list[float | None] = []
        if checks:
            refused = self._apply_buckets(checks, now, tats)
        scores: tuple[float, ...] = ()
        if batch.scores:
            scores = self._apply_scores(batch.scores, now)
        # The bucket states are computed only if read (a refusal, an explain trace).
        return BatchResult(None, 0.0, refused, None, scores, allowed_key, tats, checks, now)  # BatchResult.of_tats

    def _apply_buckets(self, checks: tuple[BucketCheck, ...], now: float, tats: list[float | None]) -> int:
        """GCRA over the batch's buckets, all or nothing (`gcra.conform_all`, inlined): fills `tats`
        with the TATs after the request (the old ones, None for none, when it is refused);
        returns the index of the first refusing bucket or -1. Every bucket is read before any is
        written, so a bucket twice in one batch is charged once, as in Redis."""
        table = self._tats
        values = table.values  # methods are called through `table`: compiled, a direct native call
        slots: list[int] = []
        refused = -1
        for i, c in enumerate(checks):
            slot = table.find_touch(hash((c.bucket_id, c.key)))  # entry_hash, inlined
            slots.append(slot)
            if refused >= 0:
                continue
            # gcra.conform: start = max(TAT, now); conforms when start - now <= max_ahead
            limit = c.limit
            start = now
            if slot:
                old = values[slot]
                if old > now:
                    start = old
            if start - now > limit.max_ahead:
                refused = i
            else:
                tats.append(start + limit.interval)
        if refused >= 0:
            tats[:] = [values[slot] if slot else None for slot in slots]
            return refused
        fresh = False
        for i in range(len(slots)):  # an index, not zip(): compiled, a native loop
            slot = slots[i]
            if slot:
                new = tats[i]
                assert new is not None  # every bucket conformed
                values[slot] = new
            else:
                fresh = True
        if fresh:  # after the updates: an insert may evict the least recently used entry
            inserted: list[int] = []
            for i, slot in enumerate(slots):
                if not slot:
                    c = checks[i]
                    h = entry_hash(c.bucket_id, c.key)
                    new = tats[i]
                    assert new is not None
                    found = 0
                    if h in inserted:  # the same bucket twice in one batch
                        found = table.find(h)
                    if found:
                        table.values[found] = new  # read again: an insert may have replaced the column
                    else:
                        table.insert(h, new, self._bucket_tag(c))
                        inserted.append(h)
        return -1

    def _apply_scores(self, updates: tuple[ScoreUpdate, ...], now: float) -> tuple[float, ...]:
        """Decay, add and store each score (`base.decay`, inlined). A score at 0 is no entry: a
        missing score that stays at 0 (a read, a negative delta) is not stored."""
        table = self._scores
        values, since = table.values, table.seconds
        out: list[float] = []
        for up in updates:
            hs: i64 = hash(up.score_id)  # score_hash, inlined (as i64s: compiled, a native xor)
            hk: i64 = hash(up.key)
            h = hs ^ hk
            slot = table.find_touch(h)
            if slot:
                value = values[slot]
                last, half_life = since[slot], up.half_life
                if value != 0.0 and now > last and half_life > 0:
                    value *= math.pow(0.5, (now - last) / half_life)
                value += up.delta
                if value < 0.0:
                    value = 0.0
                values[slot] = value
                since[slot] = now
            else:
                value = 0.0 + up.delta  # what a stored 0 would give (0.0 + -0.0 is 0.0)
                if value > 0.0:
                    table.insert(h, value, self._score_tag(up.score_id, up.half_life), now)
                    values, since = table.values, table.seconds  # the insert may have replaced them
                else:
                    value = 0.0
            out.append(value)
        return tuple(out)

    async def apply(self, batch: Batch, now: float) -> BatchResult:
        return self.apply_now(batch, now)

    @property
    def sync_apply(self) -> Callable[[Batch, float], BatchResult] | None:
        return self.apply_now  # in-process: never waits (see Store.sync_apply)

    def append_logs_now(self, appends: tuple[LogAppend, ...], now: float) -> Logs:
        logs = self._logs
        out = []
        for a in appends:
            log = logs.get(a.key)
            if log is None or log.until <= now or log.entries.maxlen != a.keep:
                log = logs[a.key] = EntryLog(a.keep)
            log.entries.append(a.entry)
            log.until = now + a.ttl
            log.appended = n = log.appended + 1
            entries = log.entries
            new = n - a.seen
            if 0 < a.seen < n and new <= len(entries):
                out.append(LogRead(n, tuple(entries)[-new:], False))
            else:
                out.append(LogRead(n, tuple(entries), True))
        return tuple(out)

    async def append_logs(self, appends: tuple[LogAppend, ...], now: float) -> Logs:
        return self.append_logs_now(appends, now)

    @property
    def sync_append_logs(self) -> Callable[[tuple[LogAppend, ...], float], Logs] | None:
        return self.append_logs_now

    def _bucket_tag(self, check: BucketCheck) -> int:
        known = self._bucket_defs.get(check.bucket_id)
        if known is None:
            known = self._bucket_defs[check.bucket_id] = (next(self._tags), check.limit)
        return known[0]

    def _score_tag(self, score_id: str, half_life: float) -> int:
        known = self._score_defs.get(score_id)
        if known is None or known[1] != half_life:
            tag = known[0] if known is not None else next(self._tags)
            known = self._score_defs[score_id] = (tag, half_life)
        return known[0]

    # -- bans, allows, inspection -----------------------------------------------------------
    async def ban(self, key: str, until: float, now: float, reason: str = "") -> None:
        if until <= now:
            return
        current = self._bans.get(key, now)
        if current is None or until > current.until:
            self._bans.put(ListEntry(key, until, reason, now), now)

    async def unban(self, key: str) -> bool:
        return self._bans.remove(key)

    async def bans(self, now: float, limit: int = 100) -> list[ListEntry]:
        return self._bans.live(now, limit)

    async def allow(self, key: str, until: float, now: float, reason: str = "") -> None:
        if until > now:
            self._allows.put(ListEntry(key, until, reason, now), now)
        else:
            self._allows.remove(key)

    async def unallow(self, key: str) -> bool:
        return self._allows.remove(key)

    async def allows(self, now: float, limit: int = 100) -> list[ListEntry]:
        return self._allows.live(now, limit)

    async def inspect(self, key: str, now: float) -> KeyInspection:
        buckets = {}
        for bucket_id, (_tag, limit) in self._bucket_defs.items():
            slot = self._tats.find(entry_hash(bucket_id, key))
            if slot and self._tats.values[slot] > now:
                buckets[bucket_id] = state_after(self._tats.values[slot], now, limit, True)
        scores = {}
        since = self._scores.seconds
        for score_id, (_tag, half_life) in self._score_defs.items():
            slot = self._scores.find(score_hash(score_id, key))
            if slot:
                scores[score_id] = decay(self._scores.values[slot], since[slot], now, half_life)
        return KeyInspection(key, buckets, scores, self._bans.get(key, now), self._allows.get(key, now))

    # -- the rest --------------------------------------------------------------------------
    async def spend_once(self, token_id: str, expires: float, now: float) -> bool:
        # Check-and-set with no await in between: atomic on the event loop. A spent token stays
        # spent for at least an hour, and until `expires` (when it no longer verifies anyway).
        table = self._spent
        h = hash(token_id)
        if table.find(h):
            return False
        table.insert(h, max(expires, now + _SPENT_HOLD))
        return True

    def retain_buckets(self, bucket_ids: frozenset[str]) -> None:
        gone = {tag for bucket_id, (tag, _limit) in self._bucket_defs.items() if bucket_id not in bucket_ids}
        if not gone:
            return
        table = self._tats
        for slot in [s for s in table.lru_slots() if table.tags[s] in gone]:
            table.remove(slot)
        self._bucket_defs = {b: d for b, d in self._bucket_defs.items() if d[0] not in gone}

    def tracked_keys(self) -> int:
        return len(self._tats)

    def status(self) -> dict[str, object]:
        return {"backend": self.name, "buckets": len(self._tats), "bans": len(self._bans),
                "allows": len(self._allows), "scores": len(self._scores), "spent_tokens": len(self._spent),
                "logs": len(self._logs)}

    async def close(self) -> None:
        return None

    def _sweep(self, now: float) -> None:
        """Drop idle entries from the least recently used end, a bounded number per call: exactly
        the entries that deleting the least recently used one at a time, until one is still live,
        would remove."""
        self._next_sweep = now + _SWEEP_EVERY
        for table in (self._tats, self._spent):
            idle: list[int] = []
            values = table.values
            for slot in table.lru_slots():
                if len(idle) >= _SWEEP_BUDGET or values[slot] > now:
                    break
                idle.append(slot)
            for slot in idle:
                table.remove(slot)
        self._bans.expire(now)
        self._allows.expire(now)

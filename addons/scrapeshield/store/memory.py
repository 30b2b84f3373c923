"""In-process store: bounded LRU maps whose idle entries are swept incrementally.

Memory is the constraint (a million tracked keys must fit in a few hundred MB), so each bucket
entry is one float under one compact string key in a cachetools LRUCache; an entry whose TAT
has passed is equivalent to no entry, and `_sweep` removes such entries from the cold end a
bounded number at a time instead of paying TTLCache's per-entry link objects.
"""
from __future__ import annotations

from cachetools import LRUCache, TTLCache

from ..gcra import conform_all, state_after
from .base import Batch, BatchResult, decay

_SEP = "\x1f"
_SWEEP_EVERY = 1.0  # seconds of clock time between incremental sweeps
_SWEEP_BUDGET = 2000  # entries examined per sweep


class MemoryStore:
    name = "memory"

    def __init__(self, max_keys: int = 1_000_000, max_bans: int = 100_000, max_scores: int = 200_000,
                 max_spent: int = 200_000) -> None:
        self._tats: LRUCache[str, float] = LRUCache(max_keys)
        self._bans: LRUCache[str, float] = LRUCache(max_bans)
        self._scores: LRUCache[str, tuple[float, float]] = LRUCache(max_scores)
        self._spent: TTLCache[str, bool] = TTLCache(max_spent, ttl=3600)
        self._next_sweep = 0.0

    # -- the hot path --------------------------------------------------------------------
    def apply_now(self, batch: Batch, now: float) -> BatchResult:
        if now >= self._next_sweep:
            self._sweep(now)
        bans = self._bans
        for key in batch.ban_keys:
            until = bans.get(key)
            if until is not None:
                if until > now:
                    return BatchResult(key, until, -1, (), ())
                del bans[key]

        states: tuple = ()
        refused = -1
        if batch.buckets:
            tats = self._tats
            names = [c.bucket_id + _SEP + c.key for c in batch.buckets]
            old = [tats.get(n) for n in names]
            limits = [c.limit for c in batch.buckets]
            refused, new = conform_all(old, now, limits)
            if refused < 0:
                for n, t in zip(names, new):
                    tats[n] = t  # type: ignore[assignment]
            states = tuple(state_after(t, now, lim, refused < 0) for t, lim in zip(new, limits))

        scores: tuple = ()
        if batch.scores:
            values = []
            table = self._scores
            for up in batch.scores:
                name = up.score_id + _SEP + up.key
                value, since = table.get(name, (0.0, now))
                value = decay(value, since, now, up.half_life) + up.delta
                if value < 0.0:
                    value = 0.0
                table[name] = (value, now)
                values.append(value)
            scores = tuple(values)
        return BatchResult(None, 0.0, refused, states, scores)

    async def apply(self, batch: Batch, now: float) -> BatchResult:
        return self.apply_now(batch, now)

    # -- the rest --------------------------------------------------------------------------
    async def ban(self, key: str, until: float, now: float) -> None:
        if until > self._bans.get(key, 0.0):
            self._bans[key] = until

    def ban_now(self, key: str, until: float) -> None:
        if until > self._bans.get(key, 0.0):
            self._bans[key] = until

    async def spend_once(self, token_id: str, expires: float, now: float) -> bool:
        # Check-and-set with no await in between: atomic on the event loop.
        if token_id in self._spent:
            return False
        self._spent[token_id] = True
        return True

    def retain_buckets(self, bucket_ids: frozenset[str]) -> None:
        stale = [n for n in self._tats if n.partition(_SEP)[0] not in bucket_ids]
        for n in stale:
            del self._tats[n]

    def tracked_keys(self) -> int:
        return len(self._tats)

    def status(self) -> dict[str, object]:
        return {"backend": self.name, "buckets": len(self._tats), "bans": len(self._bans),
                "scores": len(self._scores), "spent_tokens": len(self._spent)}

    async def close(self) -> None:
        return None

    def _sweep(self, now: float) -> None:
        """Drop idle entries from the least recently used end, a bounded number per call."""
        self._next_sweep = now + _SWEEP_EVERY
        for table in (self._tats, self._bans):
            budget = _SWEEP_BUDGET
            data = table
            while budget and data:
                key, value = next(iter(_lru_order(data)))
                if value > now:
                    break
                del data[key]
                budget -= 1


def _lru_order(cache: LRUCache):  # type: ignore[type-arg]
    """Keys from least to most recently used, with their values, without touching the order."""
    order = cache._LRUCache__order  # type: ignore[attr-defined]
    data = cache._Cache__data  # type: ignore[attr-defined]
    return ((k, data[k]) for k in order)

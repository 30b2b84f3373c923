"""In-process store: bounded LRU maps whose idle entries are swept incrementally.

Memory is the constraint (a million tracked keys must fit in a few hundred MB), so each bucket
entry is one float under one compact string key in a cachetools LRUCache; an entry whose TAT
has passed is equivalent to no entry, and `_sweep` removes such entries from the cold end a
bounded number at a time instead of paying TTLCache's per-entry link objects.
"""
from __future__ import annotations

from collections.abc import Callable

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
    # Reads go to the LRUCache's own dict and order (as `_lru_order` does): cachetools' get()
    # is five Python calls per lookup. A hit is moved to the most recent end exactly as
    # LRUCache.__getitem__ does; writes of new keys go through the cache (size and eviction).
    def apply_now(self, batch: Batch, now: float) -> BatchResult:
        if now >= self._next_sweep:
            self._sweep(now)
        if batch.ban_keys:
            bans = self._bans
            bdata = bans._Cache__data  # type: ignore[attr-defined]
            for key in batch.ban_keys:
                until = bdata.get(key)
                if until is not None:
                    bans._LRUCache__order.move_to_end(key)  # type: ignore[attr-defined]
                    if until > now:
                        return BatchResult(key, until, -1, (), ())
                    del bans[key]

        states: tuple = ()
        refused = -1
        checks = batch.buckets
        if checks:
            tats = self._tats
            data = tats._Cache__data  # type: ignore[attr-defined]
            touch = tats._LRUCache__order.move_to_end  # type: ignore[attr-defined]
            names = [c.bucket_id + _SEP + c.key for c in checks]
            old = []
            for n in names:
                t = data.get(n)
                if t is not None:
                    touch(n)
                old.append(t)
            limits = [c.limit for c in checks]
            refused, new = conform_all(old, now, limits)
            if refused < 0:
                for n, t in zip(names, new):
                    if n in data:  # what Cache.__setitem__ + LRUCache.__setitem__ do for a present key
                        data[n] = t
                        touch(n)
                    else:
                        tats[n] = t  # type: ignore[assignment]
                allowed = True
            else:
                allowed = False
            states = tuple([state_after(t, now, lim, allowed) for t, lim in zip(new, limits)])

        scores: tuple = ()
        if batch.scores:
            values = []
            table = self._scores
            sdata = table._Cache__data  # type: ignore[attr-defined]
            stouch = table._LRUCache__order.move_to_end  # type: ignore[attr-defined]
            for up in batch.scores:
                name = up.score_id + _SEP + up.key
                entry = sdata.get(name)
                if entry is None:
                    value, since = 0.0, now
                else:
                    stouch(name)
                    value, since = entry
                value = decay(value, since, now, up.half_life) + up.delta
                if value < 0.0:
                    value = 0.0
                if name in sdata:
                    sdata[name] = (value, now)
                    stouch(name)
                else:
                    table[name] = (value, now)
                values.append(value)
            scores = tuple(values)
        return BatchResult(None, 0.0, refused, states, scores)

    async def apply(self, batch: Batch, now: float) -> BatchResult:
        return self.apply_now(batch, now)

    @property
    def sync_apply(self) -> Callable[[Batch, float], BatchResult] | None:
        return self.apply_now  # in-process: never waits (see Store.sync_apply)

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
            # The idle run at the cold end, up to the budget: exactly the entries that deleting the
            # least recently used one at a time, until one is still live, would remove.
            idle = []
            for key, value in _lru_order(table):
                if len(idle) >= _SWEEP_BUDGET or value > now:
                    break
                idle.append(key)
            for key in idle:
                del table[key]


def _lru_order(cache: LRUCache):  # type: ignore[type-arg]
    """Keys from least to most recently used, with their values, without touching the order."""
    order = cache._LRUCache__order  # type: ignore[attr-defined]
    data = cache._Cache__data  # type: ignore[attr-defined]
    return ((k, data[k]) for k in order)

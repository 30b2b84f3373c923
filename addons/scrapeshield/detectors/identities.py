"""The detectors' identity table: per-identity state, bounded by count and by idle time.

Built on the store's `LruTable` (flat arrays, ~34 bytes an entry): an identity is known by the
64-bit `hash()` of its key (the key string itself is not kept), its entry's value is `renewed`
(the last time its idle TTL was pushed back), and its state object sits in a list at the entry's
slot. `cachetools.TTLCache` did the same job before at ~250 bytes more an identity (its dict, an
OrderedDict entry and a link object per key, plus the key string): a quarter of a one-request
client's whole state. Python's str hash is keyed per process, so clients cannot aim for two
identities sharing one state (about 3e-8 for a million live keys per process lifetime, as in
the store).

Guarantees (the same as TTLCache's):
- at most `max_keys` identities: inserting one more evicts the least recently seen;
- an identity is alive while `now < renewed + ttl`; a lookup never returns an expired one (it
  starts afresh), whether or not it was swept yet;
- expired identities are swept from the least recently seen end on every insert. One seen more
  recently than a live one waits until that one expires or is evicted (`DetectorSet` renews
  every ttl/9, so at most 1/9 ttl longer); `expire()` and `count()` are exact.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

from ..store.compact import NONE, LruTable


class IdentityTable[S]:
    __slots__ = ("_lru", "_states", "max_keys", "ttl")

    def __init__(self, max_keys: int, ttl: float) -> None:
        if max_keys < 1:
            raise ValueError("an IdentityTable holds at least one identity")
        self.max_keys = max_keys
        self.ttl = ttl
        self._lru = LruTable(max_keys)
        self._states: list[S | None] = [None]  # by slot; slot 0 is never used

    def __len__(self) -> int:
        """Identities held, expired ones not swept yet included (see `count`)."""
        return len(self._lru)

    def get(self, key: str, now: float) -> S | None:
        """The live state of `key` (without touching its recency or renewal), or None."""
        lru = self._lru
        slot = lru.find(hash(key))
        if slot == NONE or not now < lru.values[slot] + self.ttl:
            return None
        return self._states[slot]

    def seen(self, key: str, now: float, renew_every: float, new_state: Callable[[], S]) -> tuple[S, bool]:
        """The state of `key`, now the most recently seen: (state, False) if it was alive (its TTL
        renewed from `now` if it was last renewed `renew_every` ago or more), else a fresh
        `new_state()` renewed at `now`, and True."""
        lru = self._lru
        h = hash(key)
        slot = lru.find(h)
        if slot != NONE:
            renewed = lru.values[slot]
            if now < renewed + self.ttl:
                lru.touch(slot)
                if now - renewed >= renew_every:
                    lru.values[slot] = now
                st = self._states[slot]
                assert st is not None
                return st, False
            self._remove(slot)
        st = new_state()
        self._insert(h, st, now)
        return st, True

    def put(self, key: str, st: S, now: float) -> None:
        """Insert (or replace) `key`'s state as the most recently seen, renewed at `now`."""
        h = hash(key)
        slot = self._lru.find(h)
        if slot != NONE:
            self._remove(slot)
        self._insert(h, st, now)

    def renewed(self, key: str) -> float | None:
        """When `key`'s TTL was last pushed back (None if not held)."""
        slot = self._lru.find(hash(key))
        return None if slot == NONE else self._lru.values[slot]

    def states(self, now: float) -> Iterator[S]:
        """Live states, least recently seen first. Do not insert or remove while iterating."""
        lru, states, ttl = self._lru, self._states, self.ttl
        for slot in lru.lru_slots():
            if now < lru.values[slot] + ttl:
                st = states[slot]
                assert st is not None
                yield st

    def expire(self, now: float) -> int:
        """Drop every identity expired as of `now`; returns how many were dropped."""
        lru, ttl = self._lru, self.ttl
        dead = [slot for slot in lru.lru_slots() if not now < lru.values[slot] + ttl]
        for slot in dead:
            self._remove(slot)
        return len(dead)

    def count(self, now: float) -> int:
        """Live identities as of `now`."""
        lru, ttl = self._lru, self.ttl
        values = lru.values
        return sum(1 for slot in lru.lru_slots() if now < values[slot] + ttl)

    def clear(self) -> None:
        self._lru.clear()
        self._states = [None]

    def _insert(self, h: int, st: S, now: float) -> None:
        lru, ttl = self._lru, self.ttl
        values = lru.values
        head = lru.head
        while head != NONE and not now < values[head] + ttl:  # sweep the expired least recently seen
            self._remove(head)
            head = lru.head
        if len(lru) >= self.max_keys:
            self._remove(lru.head)  # least recently seen
        slot = lru.insert(h, now)
        states = self._states
        if slot == len(states):
            states.append(st)
        else:
            states[slot] = st

    def _remove(self, slot: int) -> None:
        self._lru.remove(slot)
        self._states[slot] = None

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

from array import array
from collections.abc import Callable, Iterator

from librt.vecs import vec
from mypy_extensions import i32, mypyc_attr  # compiled (mypyc), a native integer; interpreted, int

from ..store.compact import NONE, LruTable
from .assets import PendingPage
from .distinct import HyperLogLog, hashes_copy, no_hashes
from .probe import ProbeWindow
from .sequence import Walk
from .timing import ArrivalGaps

# IdentityState.parts: which detectors have begun on an identity
DISTINCT = 1
TIMING = 2
LEDGER = 4


@mypyc_attr(acyclic=True)  # never in a reference cycle: not tracked by the GC (compiled)
class IdentityState(ArrivalGaps):
    """Everything the detectors remember about one identity, in ONE object: the fields of a
    `DistinctWindow` (a `DistinctCounts`), an `ArrivalGaps` and an `AssetLedger` (a
    `LedgerFields`) inline, the walks and the probe window by reference. An object per part cost
    ~110 bytes more an identity (their headers and the references to them), a sixth of a
    one-request client's whole state. A part begins on first use (`parts`) exactly as a fresh
    part object would, and its fields hold the fresh object's values until then.

    An `ArrivalGaps` by inheritance (the other parts by a union type): `RegularTiming.observe`
    writes six fields on every page request, and compiled (mypyc) a field of a union is written
    through the generic attribute protocol (a float boxed per write), a base class's in place."""

    __slots__ = ("assets", "documents", "exact", "html_pages", "judged", "known", "known_old", "pages", "parts",
                 "pending", "previous", "probe", "rush", "rush_at", "sketch", "start", "verdicts", "walks")

    def __init__(self) -> None:
        self.parts = 0
        # One walk alone (most identities walk one series, if any), a dict from the second series on.
        self.walks: dict[str, Walk] | Walk | None = None
        self.probe: ProbeWindow | None = None
        # record_rush: the decayed count of record requests, as of rush_at
        self.rush = 0.0
        self.rush_at = 0.0
        # many_distinct_resources (DistinctCounts)
        self.start = 0.0
        self.exact: vec[i32] | None = None
        self.sketch: HyperLogLog | None = None
        self.previous = 0.0
        # regular_timing (ArrivalGaps)
        self.gaps: vec[float] | None = None
        self.index = 0
        self.count = 0
        self.total = 0.0
        self.total_sq = 0.0
        self.last_t = 0.0
        self.last_path = 0
        # no_assets (LedgerFields)
        self.documents = 0
        self.assets = 0
        self.html_pages = 0
        self.pages: list[PendingPage] | None = None
        self.pending: bytearray | None = None
        self.known: array[int] | None = None
        self.known_old: array[int] | None = None
        self.verdicts = 0
        self.judged = 0

    def copy(self) -> IdentityState:
        """An independent copy (`DetectorSet.fork`; compiled classes do not `copy.deepcopy`)."""
        st = IdentityState()
        st.parts = self.parts
        walks = self.walks
        st.walks = walks.copy() if isinstance(walks, Walk) else \
            {series: walk.copy() for series, walk in walks.items()} if walks is not None else None
        st.probe = self.probe.copy() if self.probe is not None else None
        st.rush, st.rush_at = self.rush, self.rush_at
        st.start, st.previous = self.start, self.previous
        st.exact = hashes_copy(self.exact) if self.exact is not None else None
        st.sketch = self.sketch.copy() if self.sketch is not None else None
        st.gaps = vec[float](self.gaps) if self.gaps is not None else None
        st.index, st.count, st.total, st.total_sq = self.index, self.count, self.total, self.total_sq
        st.last_t, st.last_path = self.last_t, self.last_path
        st.documents, st.assets, st.html_pages = self.documents, self.assets, self.html_pages
        st.pages = [page.copy() for page in self.pages] if self.pages is not None else None
        st.pending = bytearray(self.pending) if self.pending is not None else None
        st.known = array("I", self.known) if self.known is not None else None
        st.known_old = array("I", self.known_old) if self.known_old is not None else None
        st.verdicts, st.judged = self.verdicts, self.judged
        return st

    def begin_distinct(self, now: float) -> None:
        """As a fresh `DistinctWindow(now)`."""
        self.parts |= DISTINCT
        self.start = now
        self.exact = no_hashes()
        self.sketch = None
        self.previous = 0.0

    def begin_timing(self, now: float, path_hash: int) -> None:
        """As a fresh `ArrivalGaps(now, path_hash)`."""
        self.parts |= TIMING
        self.last_t = now
        self.last_path = path_hash

    def begin_ledger(self) -> None:
        """As a fresh `AssetLedger()` (its fields are zero until then)."""
        self.parts |= LEDGER


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
        alive = self.get(key, now) is not None
        return self.state(key, now, renew_every, new_state), not alive

    def state(self, key: str, now: float, renew_every: float, new_state: Callable[[], S]) -> S:
        """`seen(...)[0]`: what the detectors ask on every request, without a tuple."""
        lru = self._lru
        h = hash(key)
        slot = lru.find_touch(h)  # touched before it is known alive: an expired one is removed below
        if slot != NONE:
            renewed = lru.values[slot]
            if now < renewed + self.ttl:
                if now - renewed >= renew_every:
                    lru.values[slot] = now
                st = self._states[slot]
                assert st is not None
                return st
            self._remove(slot)
        st = new_state()
        self._insert(h, st, now)
        return st

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

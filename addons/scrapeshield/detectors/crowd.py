"""Cross-session walks: one sequential walk over record ids, spread over many sessions.

A fleet that throws its identity away every few records (a fresh browser context, a new
address, a new session cookie) never shows a long walk per client, so `sequential_ids` stays
quiet. What it cannot hide is the walk itself: the record ids its throw-away sessions fetch,
seen together per client stack (TLS fingerprint + UA class) or per network (/24, /64), form one
dense run -- 1001..1005 by one session, 1006..1010 by the next, ...

Per scope (stack, network) and id series (`/user/{}#0`, `/item?id`) we keep a log of the last
`keep` record requests within `window_s`: (id, time, who), `who` being a hash of the session
(or of the address without one). For the request's id x the run is the chain of distinct ids
through x whose neighbours are at most `max_gap` strides apart, the stride being the distance
from x to its nearest other id (at most `max_stride`). The signal needs:

- the run to be spread: at least `min_sessions` different sessions fetched its ids (a single
  client's walk is `sequential_ids`' job);
- the run to be a walk, not a crowd re-reading a short list: at most `max_repeat_share` of the
  run's requests fetched an id the run already had, and the run was first fetched in id order
  (at least `min_order_share` of its neighbouring ids, in one direction). Many people browsing a
  "newest profiles" list fetch near-sequential ids, but they fetch the same few over and over,
  in whatever order they click; a fleet walking ids fetches each once, one after the other;

and then grows from `start` to `full` distinct ids on the run. Random record ids from a crowd of
people (a busy browser build) are far apart, so their chains stay short. See docs/detectors.md
for the false-positive story and why only requests without standing should pay for it.

The log lives in the shared store when one is configured (every replica sees the whole
stack's walk), else in process; either way a `CrowdIndex` holds it for measuring.
"""
from __future__ import annotations

import functools
from bisect import bisect_left
from dataclasses import dataclass
from typing import Final

from librt.vecs import append, extend, pop, vec
from mypy_extensions import i64, mypyc_attr  # compiled (mypyc), a native integer; interpreted, int

from ..memo import remember
from .strength import MEMO_SIZE, ramp, stable_hash

CrowdEntry = tuple[int, float, int]  # (record id, time, who: a 32-bit hash of the session or address)
# Record ids have at most 15 digits (sequence.extract_ids): below 2**50, so exact as a double, and
# an id shifted left by _COUNT_BITS with its entry count (at most `keep`, 4096) below fits an int64.
_MAX_ID = 10**15
_MAX_WHO = 1 << 32
_COUNT_BITS: Final = 13
_COUNT_MASK: Final = (1 << _COUNT_BITS) - 1
_NEVER: Final = float("inf")  # an empty log's oldest time: nothing in it expires
_GROW: Final = 4  # entries a log's ring grows by
_STEP: Final = 4  # doubles an entry takes in the ring: (time, id, who, previous entry with its id)
_RING_ROOM: Final = vec[float]([0.0] * (_STEP * _GROW))
# Called through a constant: compiled, a module global is looked up in the module dict per call.
_bisect_left: Final = bisect_left
# Compiled (mypyc), this module's `__file__` is the extension module's, not its source.
_COMPILED: Final = not __file__.endswith(".py")
# Interpreted, `vec[i64]` builds its alias on every use (~0.2 us): the class, once. (Compiled code
# writes `vec[i64](...)`, a native operation.)
_I64S: Final = type(vec[i64]())


_TAGS: Final[dict[str, str]] = {}


def series_tag(series: str) -> str:
    """The end of a crowd log's name, for an id series: `log_name` without the scope. Memoised
    (as `stable_hash`): every record request names two logs, and the series are a site's few path
    templates."""
    tag = _TAGS.get(series)
    if tag is None:
        tag = remember(_TAGS, series, f"\x1f{stable_hash(series):x}", MEMO_SIZE)
    return tag


def log_name(scope: str, series: str) -> str:
    """The crowd log of one scope (stack, network) and id series (a path template is client input:
    it is kept short as a hash)."""
    return f"x\x1f{scope}{series_tag(series)}"


def log_entry(value: int, now: float, who: int) -> str:
    return f"{value} {now!r} {who}"


def follow(index: CrowdIndex, entry: str) -> None:
    """Add one shared log entry (`log_entry`) to an index; another version's entries are left out."""
    parts = entry.split(" ")
    if len(parts) == 3:
        try:
            value, t, who = int(parts[0]), float(parts[1]), int(parts[2])
        except ValueError:
            return
        if 0 <= value < _MAX_ID and 0 <= who < _MAX_WHO:  # what `log_entry` writes; anything else is foreign
            index.append(value, t, who)


@dataclass(frozen=True, slots=True)
class CrowdRun:
    """What the detector measured for one request (also what `explain` shows)."""

    ids: int  # distinct ids on the run through the request's id
    sessions: int  # different sessions (or addresses) that fetched them
    repeat_share: float  # share of the run's requests that re-fetched one of its ids
    order_share: float  # share of neighbouring ids on the run first fetched in walk order


NO_RUN = CrowdRun(0, 0, 0.0, 0.0)


@functools.lru_cache(maxsize=64)
def _short_run(ids: int) -> CrowdRun:
    """A run too short to matter (`CrowdRun(ids, 0, 0.0, 0.0)`): one value per length, not one per request."""
    return CrowdRun(ids, 0, 0.0, 0.0)


@mypyc_attr(acyclic=True)  # never in a reference cycle: not tracked by the GC (compiled)
class CrowdIndex:
    """One log's recent record requests, indexed for `CrossSessionWalk.measure`: the entries in
    log order (at most `keep`, none older than `window_s`) and the distinct ids sorted with how
    many entries hold each. Adding, expiring and finding a run cost O(log n) plus the run's length
    (and a shift of the ids after a new one), so the many requests that extend no run (a crowd's
    random ids) stay cheap; who fetched a run's ids and when is read off the entries only for a run
    long enough to matter, and then only off that run's entries: each id's entries are chained,
    newest to oldest, so a run costs its own requests, not the whole log's.

    Compact on purpose: the process keeps up to `cross_walk_max_logs` of these. Two flat vectors
    (`librt.vecs.vec`, as store/compact.py's columns: compiled, an item read or write is a direct
    load or store, where an `array`'s goes through the generic item protocol and makes an int
    object per read):
    - `ring`, the entries: a ring of (time, id, who, previous) quadruples of doubles (exact: ids are
      below 2**50, who below 2**32, entry numbers below 2**53), grown up to `keep` entries and then
      overwritten oldest first, so a full log's append moves no memory. Entries are numbered in log
      order from the first ever added (`base` is the oldest's number); `previous` is the number of
      the entry before it that holds the same id (-1: none);
    - `slots`, the distinct ids sorted, each as `id << 13 | the entries holding it`: an id is
      looked up, added, counted and dropped in one vector (`_search`, `_inserted`);
    - `heads`, beside `slots` (the same positions): the number of the newest entry holding each
      id. An id's `count` entries are its head and the `count - 1` entries its chain of `previous`
      numbers leads to (entries leave the log oldest first, so those are the ones still in it).
    No object per entry or per id, and few objects per log: a full garbage collection visits
    every object a container holds and every tracked object, each a cache miss on a busy heap.
    The distinct ids as a list of int objects, and five arrays a log (ids, times and whos of the
    entries, distinct ids, counts), made the crowd logs two thirds of a full collection's time in
    the engine bench's heap (measured when this changed)."""

    __slots__ = ("base", "cap", "first", "first_t", "heads", "keep", "ring", "room", "size", "slots", "window_s")

    def __init__(self, keep: int, window_s: float) -> None:
        self.keep: i64 = keep
        self.window_s = window_s
        self.ring = vec[float]()  # (time, id, who, previous) per entry
        self.cap: i64 = 0  # the ring's capacity in entries: len(ring) // _STEP (at most `keep`)
        self.first: i64 = 0  # the ring position of the oldest entry
        self.base: i64 = 0  # the oldest entry's number (entries are numbered in log order)
        self.size: i64 = 0  # entries held (at most the ring's capacity, which is at most `keep`)
        self.first_t = _NEVER  # the oldest entry's time (what `expire` compares), _NEVER without one
        self.slots = vec[i64]()  # distinct ids sorted, each `id << _COUNT_BITS | entries holding it`
        self.heads = vec[i64]()  # per slot: the number of the newest entry holding its id
        self.room: i64 = 0  # the capacity of `slots` and `heads` (`_inserted`)

    def copy(self) -> CrowdIndex:
        index = CrowdIndex(self.keep, self.window_s)
        index.ring = vec[float](self.ring)
        index.slots = slots = vec[i64](self.slots)
        index.heads = vec[i64](self.heads)
        index.room = len(slots)
        index.cap, index.first, index.base = self.cap, self.first, self.base
        index.size, index.first_t = self.size, self.first_t
        return index

    def __len__(self) -> int:
        return self.size

    def __contains__(self, value: int) -> bool:
        slots = self.slots
        i = _search(slots, value << _COUNT_BITS)
        return i < len(slots) and slots[i] >> _COUNT_BITS == value

    @property
    def ids(self) -> list[int]:
        """The distinct ids, sorted (tests, debugging)."""
        return [slot >> _COUNT_BITS for slot in self.slots]

    @property
    def counts(self) -> list[int]:
        """How many entries hold each of `ids` (tests, debugging)."""
        return [slot & _COUNT_MASK for slot in self.slots]

    def positions(self) -> range:
        """The entries' ring positions in log order (`p % capacity`, times _STEP for the ring's index)."""
        return range(self.first, self.first + self.size)

    @property
    def entries(self) -> list[CrowdEntry]:
        """The entries in log order (tests, debugging)."""
        ring = self.ring
        cap = self.cap
        out: list[CrowdEntry] = []
        for p in self.positions():
            at = p % cap * _STEP
            out.append((int(ring[at + 1]), ring[at], int(ring[at + 2])))
        return out

    def chain(self, value: int) -> list[CrowdEntry]:
        """The entries holding `value`, newest first, as its chain of `previous` numbers gives them
        (tests, debugging; `CrossSessionWalk._who_and_order` reads the same chains)."""
        slots = self.slots
        i = _search(slots, value << _COUNT_BITS)
        if i == len(slots) or slots[i] >> _COUNT_BITS != value:
            return []
        ring, cap, number = self.ring, self.cap, self.heads[i]
        out: list[CrowdEntry] = []
        for _ in range(slots[i] & _COUNT_MASK):
            at = (self.first + number - self.base) % cap * _STEP
            out.append((int(ring[at + 1]), ring[at], int(ring[at + 2])))
            number = int(ring[at + 3])
        return out

    def add(self, entry: CrowdEntry) -> None:
        self.append(entry[0], entry[1], entry[2])

    def append(self, value: int, t: float, who: int) -> int:
        """`add((value, t, who))`, without the tuple; returns where `value` now is in `slots` (a
        hint for `CrossSessionWalk.strength_at`)."""
        size = self.size
        if size == self.keep:
            self._drop_oldest()  # before, not after as a log would: the same entries and counts after
            size -= 1
        cap = self.cap
        if size == cap:  # no free place in the ring: it grows (up to `keep`)
            self._grow()
            cap = self.cap
        ring = self.ring
        pos = self.first + size
        if pos >= cap:
            pos -= cap
        at = pos * _STEP
        number: i64 = self.base + size
        ring[at] = t
        ring[at + 1] = value  # exact as a double below 2**53
        ring[at + 2] = who
        if size == 0:
            self.first_t = t
        self.size = size + 1
        slots = self.slots
        key: i64 = value << _COUNT_BITS
        i = _search(slots, key)
        if i < len(slots) and slots[i] >> _COUNT_BITS == value:
            slots[i] += 1
            heads = self.heads
            ring[at + 3] = float(heads[i])  # the id's chain: this entry, then the one that was its newest
            heads[i] = number
        else:
            ring[at + 3] = -1.0
            room = self.room
            heads = self.heads
            if len(slots) == room:
                # Grown here by about an eighth (as a list grows): a full vector's own growth doubles it.
                room += (room >> 3) + _GROW
                if room > self.keep:
                    room = self.keep
                self.room = room
                if _COMPILED:  # (interpreted, `_inserted` makes a new vector anyway)
                    slots = vec[i64](slots, capacity=room)
                    heads = vec[i64](heads, capacity=room)
            self.slots = _inserted(slots, i, key | 1, room)
            self.heads = _inserted(heads, i, number, room)
        return i

    def _grow(self) -> None:
        """Room for `_GROW` more entries (fewer up to `keep`): one call instead of one an entry.
        The entries are put in log order first if they wrapped. The new ring is made with exactly
        the room it needs: a vector's own growth (`append`, `extend` past its room) doubles it."""
        more = self.keep - self.cap
        if more > _GROW:
            more = _GROW
        room = _RING_ROOM if more == _GROW else _RING_ROOM[:more * _STEP]
        old = self.ring
        if not self.cap:
            self.ring = vec[float](room)  # a copy: an empty vector extended to exactly its capacity grows past it
        else:
            cut = self.first * _STEP
            if cut:
                ring = extend(vec[float](old[cut:], capacity=len(old) + more * _STEP), old[:cut])
                self.first = 0
            else:
                ring = vec[float](old, capacity=len(old) + more * _STEP)
            self.ring = extend(ring, room)
        self.cap += more

    def expire(self, now: float) -> int:
        """Drop the entries older than the window from the front of the log; returns how many."""
        oldest = now - self.window_s
        dropped = 0
        while self.first_t < oldest:  # _NEVER when empty
            self._drop_oldest()
            dropped += 1
        return dropped

    def _drop_oldest(self) -> None:
        ring = self.ring
        first = self.first
        value: i64 = int(ring[first * _STEP + 1])
        first += 1
        if first == self.cap:
            first = 0
        self.first = first
        self.base += 1
        size = self.size - 1
        self.size = size
        self.first_t = ring[first * _STEP] if size else _NEVER
        slots = self.slots
        key: i64 = value << _COUNT_BITS
        i = _search(slots, key)
        slot = slots[i]
        if slot & _COUNT_MASK == 1:
            self.slots = pop(slots, i)[0]
            self.heads = pop(self.heads, i)[0]
        else:
            slots[i] = slot - 1  # the id's chain now ends one entry earlier: its count says where


def _search(slots: vec[i64], key: i64) -> i64:
    """`bisect_left(slots, key)`: where `key` is, or would be inserted, in the sorted `slots`.
    Compiled, a native loop over the vector's items; interpreted, C's `bisect_left` over a view
    of it (a vector is no sequence to it)."""
    if not _COMPILED:
        return _bisect_left(memoryview(slots), key)
    lo: i64 = 0
    hi: i64 = len(slots)
    while lo < hi:
        mid = (lo + hi) >> 1
        if slots[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _inserted(slots: vec[i64], i: i64, item: i64, room: i64) -> vec[i64]:
    """`slots` with `item` inserted before position `i` (the vector to use from then on; a vector
    has no insert), in a vector of capacity `room` (more than `len(slots)`). Compiled, a native
    loop shifts the items after `i` up by one; interpreted, the vector is rebuilt from its two
    halves in C (a Python loop costs a few microseconds)."""
    if not _COMPILED:
        return extend(append(_I64S(slots[:i], capacity=room), item), slots[i:])
    slots = append(slots, item)
    j = len(slots) - 1
    while j > i:
        slots[j] = slots[j - 1]
        j -= 1
    slots[i] = item
    return slots


class CrossSessionWalk:
    """Detector: one walk, many sessions. Parameters only; the logs are kept elsewhere."""

    __slots__ = ("full", "keep", "max_gap", "max_repeat_share", "max_stride", "min_order_share", "min_sessions",
                 "start", "window_s")

    def __init__(self, *, window_s: float, keep: int, max_stride: int, max_gap: int, min_sessions: int,
                 max_repeat_share: float, min_order_share: float, start: float, full: float) -> None:
        self.window_s = window_s
        self.keep = keep
        self.max_stride = max_stride
        self.max_gap = max_gap
        self.min_sessions = min_sessions
        self.max_repeat_share = max_repeat_share
        self.min_order_share = min_order_share
        self.start = start
        self.full = full

    def new_index(self) -> CrowdIndex:
        return CrowdIndex(self.keep, self.window_s)

    def measure(self, index: CrowdIndex, x: int, now: float) -> CrowdRun:
        """The run through id `x` (the request being decided, already added to `index`): the whole
        analysis, for `explain`, debugging and tests. A request needs only `strength_at`."""
        found = self._run(index, x, now)
        if found is None:
            return NO_RUN
        places, requests = found
        ids = len(places)
        if float(ids) < self.start:
            return _short_run(ids)  # too short to matter: spare the rest
        sessions, order = self._who_and_order(index, places)
        return CrowdRun(ids, sessions, (requests - ids) / requests, order)

    def strength_at(self, index: CrowdIndex, x: int, now: float, at: int = -1) -> float:
        """`strength(measure(index, x, now))`, reading the log's entries only for a run that can still
        score: one at least `start` long (a shorter one has strength 0 whatever it holds) whose repeat
        share -- known from the ids' entry counts -- is within `max_repeat_share`. A crowd paging
        through a listing makes long runs of re-read page numbers: they end here.

        Every record request asks this of two logs, and nearly always the answer is 0: the run is
        measured here as `_run` does (the same steps), but only counted, not listed.

        `at`: where `x` is in the index's ids, as `CrowdIndex.append` just said (-1: unknown); still
        true when expiring drops nothing, which spares a search."""
        dropped = index.expire(now)
        slots = index.slots
        n: i64 = len(slots)
        start = self.start
        if float(n) <= start:
            return 0.0  # the run is at most every distinct id: too short (most logs hold a few ids)
        value: i64 = x
        i: i64
        if at >= 0 and not dropped:
            i = at
        else:
            key: i64 = value << _COUNT_BITS
            i = _search(slots, key)
            if i == n or slots[i] >> _COUNT_BITS != value:
                return 0.0
        max_stride: i64 = self.max_stride
        down: i64 = value - (slots[i - 1] >> _COUNT_BITS) if i > 0 else max_stride + 1
        up: i64 = (slots[i + 1] >> _COUNT_BITS) - value if i + 1 < n else max_stride + 1
        stride = down if down <= up else up
        if stride > max_stride:
            return 0.0
        on_run: i64 = 1
        requests: i64 = slots[i] & _COUNT_MASK
        reach: i64 = self.max_gap * stride
        edge = value
        j = i - 1
        v: i64
        slot: i64
        while j >= 0:
            slot = slots[j]
            v = slot >> _COUNT_BITS
            if v < edge - reach:
                break
            if (edge - v) % stride == 0:
                edge = v
                on_run += 1
                requests += slot & _COUNT_MASK
            j -= 1
        edge = value
        j = i + 1
        while j < n:
            slot = slots[j]
            v = slot >> _COUNT_BITS
            if v > edge + reach:
                break
            if (v - edge) % stride == 0:
                edge = v
                on_run += 1
                requests += slot & _COUNT_MASK
            j += 1
        if float(on_run) <= start or float(requests - on_run) / float(requests) > self.max_repeat_share:
            return 0.0  # at `start` the ramp is 0 too
        # A run that may score (rare, but every request of a fleet's walk under way): its slots
        # listed, and who fetched them read off their entries.
        sessions, order = self._who_and_order(index, _run_slots(slots, i, stride, reach))
        if sessions < self.min_sessions or order < self.min_order_share:
            return 0.0
        return ramp(float(on_run), start, self.full)

    def _run(self, index: CrowdIndex, x: int, now: float) -> tuple[vec[i64], int] | None:
        """The run through `x`: its ids' places in `index.slots` (ascending) and how many of the
        log's entries hold them; None when `x` has no other id within `max_stride`. (`strength_at`
        takes the same steps without listing the run, which it needs only when it may score.)"""
        index.expire(now)
        slots = index.slots
        n: i64 = len(slots)
        value: i64 = x
        i = _search(slots, value << _COUNT_BITS)
        if i == n or slots[i] >> _COUNT_BITS != value or n < 2:
            return None
        max_stride: i64 = self.max_stride
        down: i64 = value - (slots[i - 1] >> _COUNT_BITS) if i > 0 else max_stride + 1
        up: i64 = (slots[i + 1] >> _COUNT_BITS) - value if i + 1 < n else max_stride + 1
        stride = down if down <= up else up
        if stride > max_stride:
            return None
        places = _run_slots(slots, i, stride, self.max_gap * stride)
        requests = 0
        for place in places:
            requests += slots[place] & _COUNT_MASK
        return places, requests

    @staticmethod
    def _who_and_order(index: CrowdIndex, on_run: vec[i64]) -> tuple[int, float]:
        """How many sessions fetched the run's ids, and the share of its neighbouring ids first
        fetched in walk order (one direction): read off the entries of the run's ids, which
        `on_run` gives by their places in `index.slots`, ascending (so the ids are in order).

        Each id's entries are followed down its chain (`CrowdIndex.heads`, then each entry's
        `previous`), the last one reached being its oldest: the cost is the run's requests, where
        reading every entry of the log cost its whole length (up to `keep`) for every request of a
        fleet's walk under way."""
        ring = index.ring
        cap: i64 = index.cap
        offset: i64 = index.first - index.base  # an entry's number plus this is its ring position (mod cap)
        slots = index.slots
        heads = index.heads
        whos: set[int] = set()
        n: i64 = len(on_run)
        ascending: i64 = 0
        before = _NEVER
        for k in range(n):
            place = on_run[k]
            count: i64 = slots[place] & _COUNT_MASK
            number: i64 = heads[place]
            oldest = _NEVER
            while count > 0:
                at: i64 = (number + offset) % cap * _STEP
                whos.add(int(ring[at + 2]))
                oldest = ring[at]
                number = int(ring[at + 3])
                count -= 1
            if k > 0 and before <= oldest:
                ascending += 1
            before = oldest
        pairs: i64 = n - 1
        return len(whos), float(max(ascending, pairs - ascending)) / float(pairs)

    def strength(self, run: CrowdRun) -> float:
        if (run.sessions < self.min_sessions or run.repeat_share > self.max_repeat_share
                or run.order_share < self.min_order_share):
            return 0.0
        return ramp(run.ids, self.start, self.full)


def _run_slots(slots: vec[i64], i: i64, stride: i64, reach: i64) -> vec[i64]:
    """The places in `slots` of the run through the id at place `i` (ascending): from it, down and
    then up, the next id a whole number of `stride`s from the edge within `reach` (the steps
    `CrossSessionWalk.strength_at` counts)."""
    n: i64 = len(slots)
    down = vec[i64]()
    edge: i64 = slots[i] >> _COUNT_BITS
    j: i64 = i - 1
    v: i64
    while j >= 0:
        v = slots[j] >> _COUNT_BITS
        if v < edge - reach:
            break
        if (edge - v) % stride == 0:
            edge = v
            down = append(down, j)
        j -= 1
    out = vec[i64]()
    k: i64 = len(down) - 1
    while k >= 0:
        out = append(out, down[k])
        k -= 1
    out = append(out, i)
    edge = slots[i] >> _COUNT_BITS
    j = i + 1
    while j < n:
        v = slots[j] >> _COUNT_BITS
        if v > edge + reach:
            break
        if (v - edge) % stride == 0:
            edge = v
            out = append(out, j)
        j += 1
    return out

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

from bisect import bisect_left, insort
from collections import deque
from dataclasses import dataclass
from itertools import pairwise

from .strength import ramp

CrowdEntry = tuple[int, float, int]  # (record id, time, who: a 32-bit hash of the session or address)


def log_entry(value: int, now: float, who: int) -> str:
    return f"{value} {now!r} {who}"


def follow(index: CrowdIndex, entry: str) -> None:
    """Add one shared log entry (`log_entry`) to an index; another version's entries are left out."""
    parts = entry.split(" ")
    if len(parts) == 3:
        try:
            index.add((int(parts[0]), float(parts[1]), int(parts[2])))
        except ValueError:
            return


@dataclass(frozen=True, slots=True)
class CrowdRun:
    """What the detector measured for one request (also what `explain` shows)."""

    ids: int  # distinct ids on the run through the request's id
    sessions: int  # different sessions (or addresses) that fetched them
    repeat_share: float  # share of the run's requests that re-fetched one of its ids
    order_share: float  # share of neighbouring ids on the run first fetched in walk order


NO_RUN = CrowdRun(0, 0, 0.0, 0.0)


class CrowdIndex:
    """One log's recent record requests, indexed for `CrossSessionWalk.measure`: the entries in
    log order (at most `keep`, none older than `window_s`), per id its fetch times and fetchers,
    and the distinct ids sorted. Adding, expiring and measuring cost O(log n) plus the run's length,
    so the many requests that extend no run (a crowd's random ids) stay cheap."""

    __slots__ = ("by_id", "entries", "ids", "keep", "window_s")

    def __init__(self, keep: int, window_s: float) -> None:
        self.keep = keep
        self.window_s = window_s
        self.entries: deque[CrowdEntry] = deque()
        self.by_id: dict[int, tuple[list[float], list[int]]] = {}  # id -> (fetch times, fetchers), oldest first
        self.ids: list[int] = []  # distinct ids, sorted

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, entry: CrowdEntry) -> None:
        value, t, who = entry
        self.entries.append(entry)
        seen = self.by_id.get(value)
        if seen is None:
            self.by_id[value] = ([t], [who])
            insort(self.ids, value)
        else:
            seen[0].append(t)
            seen[1].append(who)
        if len(self.entries) > self.keep:
            self._drop_oldest()

    def expire(self, now: float) -> None:
        oldest = now - self.window_s
        entries = self.entries
        while entries and entries[0][1] < oldest:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        value, _, _ = self.entries.popleft()
        times, who = self.by_id[value]
        if len(times) == 1:
            del self.by_id[value]
            del self.ids[bisect_left(self.ids, value)]
        else:
            del times[0], who[0]


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
        """The run through id `x` (the request being decided, already added to `index`)."""
        index.expire(now)
        by_id, ids = index.by_id, index.ids
        if x not in by_id or len(ids) < 2:
            return NO_RUN
        i = bisect_left(ids, x)
        stride = min(x - ids[i - 1] if i > 0 else self.max_stride + 1,
                     ids[i + 1] - x if i + 1 < len(ids) else self.max_stride + 1)
        if stride > self.max_stride:
            return NO_RUN
        run = [x]
        for direction in (-stride, stride):
            edge = x
            while True:
                for k in range(1, self.max_gap + 1):
                    if edge + k * direction in by_id:
                        edge += k * direction
                        run.append(edge)
                        break
                else:
                    break
        if len(run) < self.start:
            return CrowdRun(len(run), 0, 0.0, 0.0)  # too short to matter: spare the rest
        requests = 0
        sessions: set[int] = set()
        for v in run:
            times, who = by_id[v]
            requests += len(times)
            sessions.update(who)
        run.sort()
        ascending = sum(by_id[a][0][0] <= by_id[b][0][0] for a, b in pairwise(run))
        pairs = len(run) - 1
        order = max(ascending, pairs - ascending) / pairs
        return CrowdRun(len(run), len(sessions), (requests - len(run)) / requests, order)

    def strength(self, run: CrowdRun) -> float:
        if (run.sessions < self.min_sessions or run.repeat_share > self.max_repeat_share
                or run.order_share < self.min_order_share):
            return 0.0
        return ramp(run.ids, self.start, self.full)

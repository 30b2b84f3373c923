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
stack's walk), else in process (`CrowdLogs`); both give the same entries.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from cachetools import LRUCache

from .strength import ramp

CrowdEntry = tuple[int, float, int]  # (record id, time, who: a 32-bit hash of the session or address)


def encode_entry(value: int, now: float, who: int) -> str:
    return f"{value} {now:.3f} {who}"


def decode_entries(raw: Iterable[str]) -> list[CrowdEntry]:
    """Entries of a shared log; malformed ones (another version's) are left out."""
    out: list[CrowdEntry] = []
    for item in raw:
        parts = item.split(" ")
        if len(parts) == 3:
            try:
                out.append((int(parts[0]), float(parts[1]), int(parts[2])))
            except ValueError:
                continue
    return out


@dataclass(frozen=True, slots=True)
class CrowdRun:
    """What the detector measured for one request (also what `explain` shows)."""

    ids: int  # distinct ids on the run through the request's id
    sessions: int  # different sessions (or addresses) that fetched them
    repeat_share: float  # share of the run's requests that re-fetched one of its ids
    order_share: float  # share of neighbouring ids on the run first fetched in walk order


NO_RUN = CrowdRun(0, 0, 0.0, 0.0)


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

    def measure(self, entries: Sequence[CrowdEntry], now: float) -> CrowdRun:
        """The run through the newest entry's id (the request being decided)."""
        if len(entries) < 2:
            return NO_RUN
        x = entries[-1][0]
        oldest = now - self.window_s
        fetches: dict[int, int] = {}  # id -> requests for it in the window
        first: dict[int, float] = {}  # id -> when it was first fetched in the window
        for value, t, _ in entries:
            if t >= oldest:
                n = fetches.get(value)
                if n is None:
                    fetches[value] = 1
                    first[value] = t
                else:
                    fetches[value] = n + 1
        stride = 0
        for value in fetches:
            d = value - x if value > x else x - value
            if d and (not stride or d < stride):
                stride = d
        if not stride or stride > self.max_stride:
            return NO_RUN
        run = [x]
        for direction in (-stride, stride):
            edge = x
            while True:
                for k in range(1, self.max_gap + 1):
                    if edge + k * direction in fetches:
                        edge += k * direction
                        run.append(edge)
                        break
                else:
                    break
        on_run = set(run)
        requests = sum(fetches[v] for v in run)
        sessions = {w for value, t, w in entries if value in on_run and t >= oldest}
        run.sort()
        ascending = sum(first[a] <= first[b] for a, b in pairwise(run))
        pairs = len(run) - 1
        order = max(ascending, pairs - ascending) / pairs
        return CrowdRun(len(run), len(sessions), (requests - len(run)) / requests, order)

    def strength(self, run: CrowdRun) -> float:
        if (run.sessions < self.min_sessions or run.repeat_share > self.max_repeat_share
                or run.order_share < self.min_order_share):
            return 0.0
        return ramp(run.ids, self.start, self.full)


class CrowdLog:
    __slots__ = ("entries", "until")

    def __init__(self, keep: int) -> None:
        self.entries: deque[CrowdEntry] = deque(maxlen=keep)
        self.until = 0.0


class CrowdLogs:
    """The in-process logs (no shared store): bounded by count, each gone `window_s` after its
    last entry. A fork (explain) reads its parent's logs and copies one before changing it."""

    __slots__ = ("_keep", "_logs", "_parent", "_ttl")

    def __init__(self, max_logs: int, keep: int, ttl: float, parent: CrowdLogs | None = None) -> None:
        self._logs: LRUCache[str, CrowdLog] = LRUCache(max_logs)
        self._keep = keep
        self._ttl = ttl
        self._parent = parent

    def __len__(self) -> int:
        return len(self._logs)

    def append(self, key: str, entry: CrowdEntry, now: float) -> deque[CrowdEntry]:
        log = self._logs.get(key)
        if log is None and self._parent is not None:
            inherited = self._parent._logs.get(key)
            if inherited is not None:
                log = CrowdLog(self._keep)
                log.entries.extend(inherited.entries)
                log.until = inherited.until
        if log is None or log.until <= now:
            log = CrowdLog(self._keep)
        self._logs[key] = log
        log.entries.append(entry)
        log.until = now + self._ttl
        return log.entries

    def clear(self) -> None:
        self._logs.clear()

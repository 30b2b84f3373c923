"""Sequential-ID walks: /user/1001, /user/1002, ... or ?id=500, ?id=490, ...

Numeric IDs are pulled from path segments (`1001`, `item-1001.html`) and from
query values (`?id=1001`). Each ID position of a path *template* is its own
series: `/user/{}/photos/{}` has series `#0` (user) and `#1` (photo), and
`?id=` on `/item` is the series `/item?id`.

Per series we follow one walk: a base ID, a constant stride (ascending,
descending, or strided like +10) and the furthest lattice position reached
(the frontier). The walk's run length counts the distinct IDs on it. It
tolerates what real harvesters do:
- skipped IDs: the frontier may jump up to `max_gap` strides;
- out-of-order requests from concurrent workers: IDs behind the frontier
  (last 64 positions) count once, and a first stride that was too coarse
  (1001, 1003, 1002) is refined to the gcd if the walk stays dense;
- repeats (reloads) neither count nor break the walk.
Anything else restarts the walk from the last two IDs. A walk also ends
after `max_pause_s` without a step.
"""
from __future__ import annotations

import math
import re
from typing import Final

from mypy_extensions import mypyc_attr

from ..memo import remember
from .strength import ramp

_DIGIT = re.compile(r"[0-9]")
# A segment holding an id: one run of at most _MAX_ID_DIGITS ASCII digits, with at most _MAX_AFFIX
# other characters before and after it: `1001`, `item-1001.html`, `p42`.
_MAX_ID_DIGITS: Final = 15
_MAX_AFFIX: Final = 32
_SEEN_MASK = (1 << 64) - 1
MAX_IDS_PER_REQUEST = 8


_SERIES: Final[dict[str, str]] = {}
_MAX_SERIES_NAMES: Final = 4096


def _one_copy(series: str) -> str:
    """One string object per series name in use: every identity's walks dict keys it, so a hundred
    thousand identities on one template share one string instead of holding one each. Bounded
    (emptied when full, as `strength.stable_hash`'s memo: a dict lookup, not an lru_cache call)."""
    kept = _SERIES.get(series)
    if kept is None:
        kept = remember(_SERIES, series, series, _MAX_SERIES_NAMES)
    return kept


def extract_ids(path: str, query: str) -> list[tuple[str, int]]:
    """(series, id) pairs of a request. Segments with several digit runs (UUIDs,
    hashes, dates) become `*` in the template and are not tracked."""
    ids: list[tuple[str, int]] = []
    if _DIGIT.search(path) is None:
        template = path
    else:
        parts = path.split("/")
        positions: list[int] = []
        for i, segment in enumerate(parts):
            if not segment or segment.isalpha():  # no digit in it: most segments (`products`, `user`)
                continue
            if segment.isascii() and segment.isdigit():
                if len(segment) <= _MAX_ID_DIGITS:
                    positions.append(int(segment))
                    parts[i] = "{}"
                else:
                    parts[i] = "*"
                continue
            start, end = _digit_run(segment)
            if start < 0:
                if end < 0:
                    parts[i] = "*"
            elif start > _MAX_AFFIX or end - start > _MAX_ID_DIGITS or len(segment) - end > _MAX_AFFIX:
                parts[i] = "*"
            else:
                positions.append(int(segment[start:end]))
                parts[i] = segment[:start] + "{}" + segment[end:]
        template = "/".join(parts)
        for j, number in enumerate(positions[:MAX_IDS_PER_REQUEST]):
            ids.append((_one_copy(f"{template}#{j}"), number))
    if query and _DIGIT.search(query) is not None:
        for pair in query.split("&"):
            name, _, value = pair.partition("=")
            if value and len(value) <= _MAX_ID_DIGITS and value.isascii() and value.isdigit():
                ids.append((_one_copy(f"{template}?{name}"), int(value)))
                if len(ids) >= MAX_IDS_PER_REQUEST:
                    break
    return ids


def _digit_run(segment: str) -> tuple[int, int]:
    """(start, end) of the segment's one run of ASCII digits; (-1, 0) without a digit, (-1, -1)
    with two runs or more. A character loop: compiled, a fraction of the cost of the regex calls
    it replaces (`([^0-9]{0,32})([0-9]{1,15})([^0-9]{0,32})` and a digit search)."""
    n = len(segment)
    start = 0
    while start < n and not 48 <= ord(segment[start]) <= 57:
        start += 1
    if start == n:
        return -1, 0
    end = start + 1
    while end < n and 48 <= ord(segment[end]) <= 57:
        end += 1
    for k in range(end + 1, n):
        if 48 <= ord(segment[k]) <= 57:
            return -1, -1
    return start, end


@mypyc_attr(acyclic=True)  # never in a reference cycle: not tracked by the GC (compiled)
class Walk:
    """The current walk of one series."""

    __slots__ = ("base", "frontier", "last_id", "last_t", "run", "seen", "series", "stride")

    def __init__(self, first_id: int, now: float, series: str = "") -> None:
        self.series = series  # set when an identity's only walk is kept without a dict (DetectorSet)
        self.last_id = first_id
        self.last_t = now
        # restart(first_id), inlined: a walk begins on many record requests
        self.base = first_id
        self.stride = 0
        self.frontier = 0
        self.seen = 1
        self.run = 1

    def restart(self, first_id: int) -> None:
        self.base = first_id
        self.stride = 0  # unknown until a second distinct ID arrives
        self.frontier = 0  # furthest lattice index reached: base + frontier * stride
        self.seen = 1  # bit i set: position frontier - i was visited
        self.run = 1  # distinct IDs on the walk

    def copy(self) -> Walk:
        walk = Walk(self.base, self.last_t, self.series)
        walk.last_id, walk.stride, walk.frontier, walk.seen, walk.run = (
            self.last_id, self.stride, self.frontier, self.seen, self.run)
        return walk


@mypyc_attr(acyclic=True)  # never in a reference cycle: not tracked by the GC (compiled)
class LoggedWalk:
    """The walk of one series as the entries of a shared log make it (`SequentialIds.follow`)."""

    __slots__ = ("walk",)

    def __init__(self) -> None:
        self.walk: Walk | None = None


def log_entry(value: int, now: float) -> str:
    return f"{value} {now!r}"


class SequentialIds:
    """Detector: signal grows from `start` to `full` IDs on one walk."""

    __slots__ = ("full", "max_gap", "max_pause_s", "max_series", "max_stride", "start")

    def __init__(
        self, max_pause_s: float, max_stride: int, max_gap: int, max_series: int, start: float, full: float
    ) -> None:
        self.max_pause_s = max_pause_s
        self.max_stride = max_stride
        self.max_gap = max_gap
        self.max_series = max_series
        self.start = start
        self.full = full

    def observe(self, walks: dict[str, Walk], ids: list[tuple[str, int]], now: float) -> float:
        """Feed one request's `extract_ids`; `walks` is the identity's series -> walk map (LRU order)."""
        longest = 0
        for series, value in ids:
            walk = walks.get(series)
            if walk is None:
                if len(walks) >= self.max_series:
                    del walks[next(iter(walks))]
                walk = Walk(value, now)
            else:
                del walks[series]  # put back last: the most recently used
                self._step(walk, value, now)
            walks[series] = walk
            if walk.run > longest:
                longest = walk.run
        return ramp(longest, self.start, self.full)

    def step(self, walk: Walk, x: int, now: float) -> float:
        """Feed id `x` of the walk's own series (`observe` for one series, without a dict)."""
        self._step(walk, x, now)
        return ramp(walk.run, self.start, self.full)

    def follow(self, log: LoggedWalk, entry: str) -> None:
        """Step a walk kept from a shared log by one entry (`log_entry`), in log order."""
        value, _, t = entry.partition(" ")
        try:
            x, now = int(value), float(t)
        except ValueError:
            return  # another version's entry
        if log.walk is None:
            log.walk = Walk(x, now)
        else:
            self._step(log.walk, x, now)

    def _step(self, w: Walk, x: int, now: float) -> None:
        if now - w.last_t > self.max_pause_s:
            w.restart(x)
        elif w.stride == 0:
            if x != w.base:
                self._restart_from(w, w.base, x)
        else:
            k, r = divmod(x - w.base, w.stride)
            if r == 0 and k >= 0:
                ahead = k - w.frontier
                if ahead > 0:
                    if ahead <= self.max_gap:
                        w.frontier = k
                        w.seen = ((w.seen << ahead) | 1) & _SEEN_MASK
                        w.run += 1
                    else:
                        self._restart_from(w, w.last_id, x)
                elif ahead > -64:  # behind the frontier: reordered or revisited
                    bit = 1 << -ahead
                    if not w.seen & bit:
                        w.seen |= bit
                        w.run += 1
            elif not self._refine(w, x):
                self._restart_from(w, w.last_id, x)
        w.last_id = x
        w.last_t = now

    def _restart_from(self, w: Walk, previous: int, x: int) -> None:
        d = x - previous
        if d != 0 and -self.max_stride <= d <= self.max_stride:
            w.base = previous
            w.stride = d
            w.frontier = 1
            w.seen = 0b11
            w.run = 2
        else:
            w.restart(x)

    def _refine(self, w: Walk, x: int) -> bool:
        """x is off the lattice: try the gcd stride, if the walk stays dense."""
        offset = x - w.base
        if (offset > 0) != (w.stride > 0):
            return False
        step = abs(w.stride)
        g = math.gcd(step, abs(offset))
        scale = step // g
        frontier = w.frontier * scale
        k = abs(offset) // g
        if k - frontier > self.max_gap:
            return False
        if (max(k, frontier) + 1) > (w.run + 1) * self.max_gap:
            return False  # too sparse to still call it a walk
        seen = 0
        bits = w.seen
        while bits:
            low = bits & -bits
            j = (low.bit_length() - 1) * scale
            if j < 64:
                seen |= 1 << j
            bits ^= low
        if k > frontier:
            seen = ((seen << (k - frontier)) | 1) & _SEEN_MASK
            frontier = k
        elif frontier - k < 64:
            seen |= 1 << (frontier - k)
        w.stride = g if w.stride > 0 else -g
        w.frontier = frontier
        w.seen = seen
        w.run += 1
        return True

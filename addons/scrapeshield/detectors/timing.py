"""Inter-arrival regularity: the coefficient of variation (stdev / mean) of the
gaps between an identity's recent page requests.

A loop with `sleep(1)` has a CV near 0.05; people reading pages have CVs near
or above 1 (long tails of reading time). Only *page* requests are sampled:
non-asset requests (documents and API calls) whose path differs from the
previous sampled one. Why:
- assets arrive in bursts right after a page and can be evenly spaced (a
  gallery of 40 thumbnails), which would read as "perfectly regular";
- an open tab polling one endpoint (`/api/notifications?since=...`) is regular
  by design; skipping repeats of the same path keeps it out. The price is that
  a harvester walking `?id=` on one path is not sampled here; sequential_ids
  and many_distinct_resources see it instead.
The signal also needs `min_samples` gaps and a mean gap below `max_mean_s`, so
slow, steady reading or polling never fires.

The last `samples` gaps live in a ring buffer (a `librt.vecs.vec[float]`: compiled,
a native load and store per gap, where an `array`'s went through the generic item
protocol) with running sums, re-summed exactly each time the ring wraps so float
error can't build up.
"""
from __future__ import annotations

import math

from librt.vecs import vec
from mypy_extensions import mypyc_attr

from .strength import ramp


@mypyc_attr(acyclic=True)  # never in a reference cycle: not tracked by the GC (compiled)
class ArrivalGaps:
    """One identity's recent gaps. Also the base of the detectors' per-identity state
    (`identities.IdentityState`), which holds these fields inline: one object less an identity."""

    __slots__ = ("count", "gaps", "index", "last_path", "last_t", "total", "total_sq")

    def __init__(self, now: float, path_hash: int) -> None:
        # The ring is made with the first gap: most identities make one page request, and a
        # ring of 16 doubles is most of an idle identity's memory.
        self.gaps: vec[float] | None = None
        self.index = 0
        self.count = 0
        self.total = 0.0
        self.total_sq = 0.0
        self.last_t = now
        self.last_path = path_hash


@mypyc_attr(acyclic=True)  # never in a reference cycle: not tracked by the GC (compiled)
class LoggedArrivals:
    """An identity's arrivals as the entries of a shared log make them (`RegularTiming.follow`)."""

    __slots__ = ("gaps", "strength")

    def __init__(self) -> None:
        self.gaps: ArrivalGaps | None = None
        self.strength = 0.0  # of the latest arrival


def log_entry(now: float, path_hash: int) -> str:
    return f"{now!r} {path_hash}"


class RegularTiming:
    """Detector: signal grows as the CV falls from `cv_start` to `cv_full`."""

    __slots__ = ("cv_full", "cv_start", "max_mean_s", "min_samples", "samples")

    def __init__(self, samples: int, min_samples: int, max_mean_s: float, cv_start: float, cv_full: float) -> None:
        self.samples = samples
        self.min_samples = min_samples
        self.max_mean_s = max_mean_s
        self.cv_start = cv_start
        self.cv_full = cv_full

    def new_state(self, now: float, path_hash: int) -> ArrivalGaps:
        return ArrivalGaps(now, path_hash)

    def observe(self, g: ArrivalGaps, path_hash: int, now: float) -> float:
        if path_hash == g.last_path:
            return self.strength(g)
        gap = now - g.last_t
        if gap < 0.0:
            gap = 0.0  # out-of-order replay
        g.last_t = now
        g.last_path = path_hash
        gaps = g.gaps
        if gaps is None:
            g.gaps = gaps = vec[float]([0.0] * self.samples)
        i = g.index
        old = gaps[i]
        gaps[i] = gap
        i += 1
        if i == self.samples:
            i = 0
        g.index = i
        n = g.count
        if n < self.samples:
            g.count = n = n + 1
            total = g.total = g.total + gap
            total_sq = g.total_sq = g.total_sq + gap * gap
        elif i == 0:
            total = g.total = math.fsum(gaps)
            total_sq = g.total_sq = math.fsum(x * x for x in gaps)
        else:
            total = g.total = g.total + gap - old
            total_sq = g.total_sq = g.total_sq + gap * gap - old * old
        # strength(), inlined: this runs on every page request
        if n < self.min_samples:
            return 0.0
        mean = total / n
        if mean > self.max_mean_s or mean <= 1e-6:
            return 0.0
        variance = total_sq / n - mean * mean
        return ramp(math.sqrt(variance) / mean if variance > 0.0 else 0.0, self.cv_start, self.cv_full)

    def follow(self, log: LoggedArrivals, entry: str) -> None:
        """Feed arrivals kept from a shared log one entry (`log_entry`), in log order."""
        t, _, path = entry.partition(" ")
        try:
            now, path_hash = float(t), int(path)
        except ValueError:
            return  # another version's entry
        if log.gaps is None:
            log.gaps = self.new_state(now, path_hash)
            log.strength = 0.0
        else:
            log.strength = self.observe(log.gaps, path_hash, now)

    def cv(self, g: ArrivalGaps) -> float | None:
        """Coefficient of variation of the sampled gaps; None while too few or all zero."""
        n = g.count
        if n < 2:
            return None
        mean = g.total / n
        if mean <= 1e-6:
            return None
        variance = g.total_sq / n - mean * mean
        return math.sqrt(variance) / mean if variance > 0.0 else 0.0

    def strength(self, g: ArrivalGaps) -> float:
        if g.count < self.min_samples or g.total / g.count > self.max_mean_s:
            return 0.0
        cv = self.cv(g)
        return 0.0 if cv is None else ramp(cv, self.cv_start, self.cv_full)

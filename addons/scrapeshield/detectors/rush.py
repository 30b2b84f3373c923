"""Record rush: records read faster than a person reads them.

A person reads a record (a profile, an item) in tens of seconds; tabs opened at once make a short
burst. A harvester that shows a person's history and then reads a record a second from each
identity, dropping the identity before any per-session limit (BENCHMARKS.md, "The mimic fleet"),
reads each identity's records at many times a person's pace. The evidence is the identity's record
requests (non-asset requests with a numeric id) counted with exponential decay, half-life
`half_life_s`: at a steady r records a second the count settles at r * half_life / ln 2 (30 s:
43 at one a second, 8.7 at twelve a minute, 2.5 at a person's three or four), and n records at
once count n. The signal ramps from `start` to `full` on that count.

State: two floats of the identity (`IdentityState.rush`, `.rush_at`).
"""
from __future__ import annotations

from math import exp, log

from .strength import ramp


class RecordRush:
    """Detector: the decayed count of an identity's record requests, ramped."""

    __slots__ = ("_per_s", "full", "half_life", "start")

    def __init__(self, half_life: float, start: float, full: float) -> None:
        self.half_life = half_life
        self._per_s = log(2.0) / half_life  # the decay's rate
        self.start = start
        self.full = full

    def count(self, previous: float, previous_at: float, now: float) -> float:
        """The count after one more record at `now`, from the count `previous` at `previous_at`."""
        elapsed = now - previous_at
        if elapsed <= 0.0:
            return previous + 1.0
        return previous * exp(-elapsed * self._per_s) + 1.0

    def decayed(self, previous: float, previous_at: float, now: float) -> float:
        """The count as of `now`, without a new record (describe)."""
        elapsed = now - previous_at
        return previous if elapsed <= 0.0 else previous * exp(-elapsed * self._per_s)

    def strength(self, count: float) -> float:
        return ramp(count, self.start, self.full)

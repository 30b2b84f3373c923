"""Injected time. The core never calls time.time() itself: it asks a Clock.

Wall-clock seconds (epoch) are used everywhere so that replayed flows (whose
timestamps are epoch seconds) and replicas sharing Redis agree on one time base.
"""
from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...


class SystemClock:
    __slots__ = ()

    def now(self) -> float:
        return time.time()


class MonotonicClock:
    """Seconds that never go back (time.monotonic), for ages kept in this process only."""

    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock tests and replay move by hand."""

    __slots__ = ("t",)

    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def set(self, t: float) -> None:
        self.t = t

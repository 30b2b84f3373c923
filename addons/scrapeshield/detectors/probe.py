"""Probe rate: share of "not found / not allowed / bad request" answers.

Enumerators walk ID ranges with holes (deleted records -> 404), guess URLs and
poke at endpoints they may not use (403, 400). The last `window` responses of
an identity are one integer used as a shift register (bit set = probe
status), so the state is two small ints and the share is a popcount.
Responses to asset requests should not be fed: a page with broken images is
the site's fault, not the visitor's.
"""
from __future__ import annotations

from mypy_extensions import mypyc_attr

from .strength import ramp


@mypyc_attr(acyclic=True)  # never in a reference cycle: not tracked by the GC (compiled)
class ProbeWindow:
    __slots__ = ("bits", "count")

    def __init__(self) -> None:
        self.bits = 0
        self.count = 0

    def copy(self) -> ProbeWindow:
        window = ProbeWindow()
        window.bits, window.count = self.bits, self.count
        return window


class ProbeRate:
    """Detector: signal grows from share `start` to `full` over the last `window` responses."""

    __slots__ = ("_mask", "full", "min_responses", "start", "statuses", "window")

    def __init__(
        self, statuses: frozenset[int], window: int, min_responses: int, start: float, full: float
    ) -> None:
        self.statuses = statuses
        self.window = window
        self.min_responses = min_responses
        self.start = start
        self.full = full
        self._mask = (1 << window) - 1

    def new_state(self) -> ProbeWindow:
        return ProbeWindow()

    def observe(self, w: ProbeWindow, status: int) -> None:
        w.bits = ((w.bits << 1) | (status in self.statuses)) & self._mask
        if w.count < self.window:
            w.count += 1

    def share(self, w: ProbeWindow) -> float:
        return w.bits.bit_count() / w.count if w.count else 0.0

    def strength(self, w: ProbeWindow) -> float:
        if w.count < self.min_responses:
            return 0.0
        return ramp(w.bits.bit_count() / w.count, self.start, self.full)

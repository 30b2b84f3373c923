"""Turning a measurement into a signal strength in [0, 1]."""
from __future__ import annotations


def ramp(value: float, start: float, full: float) -> float:
    """0 at `start`, 1 at `full`, linear between, clamped.

    Works in both directions: with `full < start` (a coefficient of variation,
    where *lower* is more suspicious) strength grows as `value` falls.
    `DetectorConfig` guarantees `start != full`.
    """
    x = (value - start) / (full - start)
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    return x

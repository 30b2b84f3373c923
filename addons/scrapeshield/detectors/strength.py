"""Turning a measurement into a signal strength in [0, 1]."""
from __future__ import annotations

import functools
from hashlib import blake2b


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


@functools.lru_cache(maxsize=16384)  # pure; paths and asset names repeat on every page view
def stable_hash(text: str) -> int:
    """A 32-bit hash that is the same in every process (Python's str hash is salted per process),
    so replaying the same flows gives the same detector state and the same decisions."""
    return int.from_bytes(blake2b(text.encode("utf-8", "surrogatepass"), digest_size=4).digest(), "little")

"""Turning a measurement into a signal strength in [0, 1]."""
from __future__ import annotations

from hashlib import blake2b
from typing import Final


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


# Memo tables of pure functions of client input, bounded by emptying them when full: a plain dict
# lookup is several times cheaper per call than `functools.lru_cache`'s wrapper (which the hot path
# paid for on every record request), and a table refilled after a burst of new paths costs only
# the recomputation it would have paid anyway.
MEMO_SIZE: Final = 16384
_HASHES: Final[dict[str, int]] = {}


def stable_hash(text: str) -> int:
    """A 32-bit hash that is the same in every process (Python's str hash is salted per process),
    so replaying the same flows gives the same detector state and the same decisions. Memoised:
    paths, sessions and asset names repeat on every page view."""
    h = _HASHES.get(text)
    if h is None:
        if len(_HASHES) >= MEMO_SIZE:
            _HASHES.clear()
        h = _HASHES[text] = int.from_bytes(
            blake2b(text.encode("utf-8", "surrogatepass"), digest_size=4).digest(), "little")
    return h

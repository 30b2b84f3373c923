"""Turning a measurement into a signal strength in [0, 1]."""
from __future__ import annotations

from hashlib import blake2b
from typing import Final

from ..memo import remember


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
        h = remember(_HASHES, text, _blake2b_32(text), MEMO_SIZE)
    return h


_EMPTY_BLAKE2B_32: Final = blake2b(digest_size=4)


def unmemoised_hash(text: str) -> int:
    """`stable_hash` without its memo, for text that seldom repeats (a record's path: one of
    thousands of ids). The same value; it spares the memo a lookup that misses and an entry that
    would crowd out the paths that do repeat (the memo is emptied when full)."""
    return _blake2b_32(text)


def _blake2b_32(text: str) -> int:
    """The first 4 bytes of BLAKE2b of `text` in UTF-8 (lone surrogates encoded as such), as a
    little-endian int. A copy of an empty hasher is updated: about a third cheaper than building
    one with its `digest_size` keyword, and the plain encoding is tried first for the same reason
    (it differs from "surrogatepass" only where it fails)."""
    try:
        data = text.encode()
    except UnicodeEncodeError:  # a lone surrogate (a path decoded with surrogateescape)
        data = text.encode("utf-8", "surrogatepass")
    hasher = _EMPTY_BLAKE2B_32.copy()
    hasher.update(data)
    return int.from_bytes(hasher.digest(), "little")

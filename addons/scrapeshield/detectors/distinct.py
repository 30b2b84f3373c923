"""Distinct resources touched per identity in a sliding window.

A harvester touches a new record on nearly every request; a person revisits
(home, category, back button). Exact counting up to `exact_cap` distinct
resources in a sorted vector of 32-bit hashes (4 bytes each, room for at most an
eighth more); beyond it, a HyperLogLog sketch of 2**precision one-byte registers
takes over, so a heavy identity costs at most about max(4.5 * exact_cap,
2**precision) bytes of counting state.

The exact hashes are a `librt.vecs.vec[i32]` (each hash less 2**31: the same order), as the crowd
logs' ids (crowd.py): compiled, searching and inserting are native loops over it, where an
`array`'s `bisect_left` and `insert` were generic calls making an int object per item read.

The window is a "sliding window counter": the count of the current fixed
window plus the previous window's count weighted by how much of it still
overlaps the sliding window. Cheap, and exact enough for a threshold.
"""
from __future__ import annotations

import math
from bisect import bisect_left
from typing import TYPE_CHECKING, Final

from librt.vecs import append, extend, vec
from mypy_extensions import i32, i64, mypyc_attr  # compiled (mypyc), native integers; interpreted, int

from .strength import ramp, stable_hash

if TYPE_CHECKING:  # identities.py imports this module
    from .identities import IdentityState

# Called through a constant: compiled, a module global is looked up in the module dict per call.
_bisect_left: Final = bisect_left
# Compiled (mypyc), this module's `__file__` is the extension module's, not its source.
_COMPILED: Final = not __file__.endswith(".py")
_HALF: Final = 1 << 31  # a 32-bit hash less this is an i32, in the same order
# Interpreted, `vec[i32]` builds its alias on every use (~0.2 us): the class, once. (Compiled code
# writes `vec[i32](...)`, a native operation.)
_I32S: Final = type(vec[i32]())


def no_hashes() -> vec[i32]:
    """An empty set of exact hashes (a fresh window's)."""
    return vec[i32]() if _COMPILED else _I32S()


def _room(n: i64) -> i64:
    """The capacity a set of `n` exact hashes is kept in: `n` rounded up to a multiple of 4, from 64
    on of a power of two between a sixteenth and an eighth of `n` (a vector's own growth doubles
    its capacity)."""
    step: i64 = 4
    while step * 16 <= n:
        step *= 2
    return (n + step - 1) // step * step


def _search(hashes: vec[i32], key: i32) -> i64:
    """`bisect_left(hashes, key)`. Compiled, a native loop; interpreted, C's `bisect_left` over a
    view of the vector (a vector is no sequence to it)."""
    if not _COMPILED:
        return _bisect_left(memoryview(hashes), key)
    lo: i64 = 0
    hi: i64 = len(hashes)
    while lo < hi:
        mid = (lo + hi) >> 1
        if hashes[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _inserted(hashes: vec[i32], i: i64, key: i32) -> vec[i32]:
    """`hashes` with `key` inserted before position `i`, in a vector of capacity `_room` (the vector
    to use from then on). Compiled, a native loop shifts the items after `i`; interpreted, the
    vector is rebuilt from its two halves in C."""
    n: i64 = len(hashes)
    if not _COMPILED:
        return extend(append(_I32S(hashes[:i], capacity=_room(n + 1)), key), hashes[i:])
    if _room(n) == n:  # full
        hashes = vec[i32](hashes, capacity=_room(n + 1))
    hashes = append(hashes, key)
    j = n
    while j > i:
        hashes[j] = hashes[j - 1]
        j -= 1
    hashes[i] = key
    return hashes


def hashes_copy(hashes: vec[i32]) -> vec[i32]:
    """An independent copy, in the capacity `_inserted` expects."""
    return vec[i32](hashes, capacity=_room(len(hashes)))


def resource_hash(resource: str) -> int:
    """32-bit hash of a resource (path plus query). Per-process salt is fine: state is in memory."""
    return stable_hash(resource)


@mypyc_attr(acyclic=True)  # never in a reference cycle: not tracked by the GC (compiled)
class HyperLogLog:
    """Cardinality sketch over 32-bit hashes; O(1) add and O(1) estimate.

    The sum of 2**-register is kept incrementally (its terms are powers of two,
    so the float sum stays exact), which makes `estimate()` constant time.
    Standard error is about 1.04 / sqrt(2**precision): 6.5% at precision 8.
    """

    __slots__ = ("_alpha_mm", "_inverse_sum", "_precision", "_registers", "_zeros")

    def __init__(self, precision: int) -> None:
        m = 1 << precision
        self._precision = precision
        self._registers = bytearray(m)
        self._inverse_sum = float(m)
        self._zeros = m
        alpha = {16: 0.673, 32: 0.697, 64: 0.709}.get(m, 0.7213 / (1.0 + 1.079 / m))
        self._alpha_mm = alpha * m * m

    def copy(self) -> HyperLogLog:
        sketch = HyperLogLog(self._precision)
        sketch._registers[:] = self._registers
        sketch._inverse_sum = self._inverse_sum
        sketch._zeros = self._zeros
        return sketch

    def add(self, h: int) -> None:
        rest = 32 - self._precision
        index = h >> rest
        rank = rest - (h & ((1 << rest) - 1)).bit_length() + 1
        old = self._registers[index]
        if rank > old:
            self._registers[index] = rank
            self._inverse_sum += 2.0 ** -rank - 2.0 ** -old
            if old == 0:
                self._zeros -= 1

    def estimate(self) -> float:
        m = len(self._registers)
        e = self._alpha_mm / self._inverse_sum
        if e <= 2.5 * m and self._zeros:
            return m * math.log(m / self._zeros)  # linear counting for small sets
        if e > 2.0 ** 32 / 30.0:
            return -(2.0 ** 32) * math.log(1.0 - e / 2.0 ** 32)
        return e


# What `DistinctResources` reads and writes: a `DistinctWindow`, or the detectors' per-identity state, which
# holds the same fields inline (one object less an identity). A union of the two classes, not a
# Protocol: compiled (mypyc), a field of either is then read in place instead of looked up by name.
type DistinctCounts = DistinctWindow | IdentityState


def current(w: DistinctCounts) -> float:
    """Distinct resources counted in the current fixed window."""
    if w.exact is not None:
        return float(len(w.exact))
    assert w.sketch is not None
    return w.sketch.estimate()


@mypyc_attr(acyclic=True)  # never in a reference cycle: not tracked by the GC (compiled)
class DistinctWindow:
    """One identity's counting state."""

    __slots__ = ("exact", "previous", "sketch", "start")

    def __init__(self, now: float) -> None:
        self.start = now
        self.exact: vec[i32] | None = no_hashes()
        self.sketch: HyperLogLog | None = None
        self.previous = 0.0  # distinct count of the previous fixed window

    def current(self) -> float:
        return current(self)


class DistinctResources:
    """Detector: signal grows from `start` to `full` distinct resources per window."""

    __slots__ = ("exact_cap", "full", "precision", "start", "window_s")

    def __init__(self, window_s: float, exact_cap: int, precision: int, start: float, full: float) -> None:
        self.window_s = window_s
        self.exact_cap = exact_cap
        self.precision = precision
        self.start = start
        self.full = full

    def new_state(self, now: float) -> DistinctWindow:
        return DistinctWindow(now)

    def count(self, w: DistinctCounts, now: float) -> float:
        """Estimated distinct resources in the sliding window ending at `now`."""
        overlap = 1.0 - (now - w.start) / self.window_s
        return current(w) + (w.previous * overlap if overlap > 0.0 else 0.0)

    def observe(self, w: DistinctCounts, h: int, now: float) -> float:
        window = self.window_s
        elapsed = now - w.start
        if elapsed >= window:
            if elapsed < 2.0 * window:
                w.previous = current(w)
                w.start += window
            else:
                w.previous = 0.0
                w.start = now
            w.exact = no_hashes()
            w.sketch = None
        exact = w.exact
        if exact is not None:
            key: i32 = h - _HALF
            i = _search(exact, key)
            if i == len(exact) or exact[i] != key:
                if len(exact) < self.exact_cap:
                    w.exact = _inserted(exact, i, key)
                else:
                    sketch = HyperLogLog(self.precision)
                    for x in exact:
                        sketch.add(int(x) + _HALF)
                    sketch.add(h)
                    w.sketch = sketch
                    w.exact = None
            count = float(len(w.exact)) if w.exact is not None else current(w)
        else:
            assert w.sketch is not None
            w.sketch.add(h)
            count = w.sketch.estimate()
        overlap = 1.0 - (now - w.start) / window
        if overlap > 0.0 and w.previous:
            count += w.previous * overlap
        return ramp(count, self.start, self.full)

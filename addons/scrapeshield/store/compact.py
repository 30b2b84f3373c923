"""A bounded, least-recently-used map from key hashes to floats, in flat arrays.

`MemoryStore` must hold a million tracked keys in a few dozen MiB. A Python dict of string keys
and float objects costs ~300 bytes an entry (the key string, a float object, the dict slot and an
LRU link object); this table costs ~34 bytes an entry and allocates no object per entry:

    index     int32    open addressing (linear probing), 2 positions per entry   8 bytes/entry
    hashes    int64    the 64-bit hash of the entry's key                        8
    values    float64  the entry's float (a TAT, a deadline, a score value)      8
    seconds   float64  an optional second float (a score's `since`)             (8)
    tags      int32    a small int naming the entry's definition                 4
    prev/next int32    the LRU list: head is least, tail most recently used      8

The arrays are `librt.vecs.vec`s (mypyc's packed vectors): compiled, an item read or write is a
direct load or store (a memoryview's goes through the generic buffer C API, ~10x slower);
interpreted, a vec is a C sequence as fast as a memoryview. They grow with the table instead of
being sized for `max_entries` up front, so a small table costs little: the per-slot columns double
(zero-filled, at most to `max_entries` + 1 slots) when the slots handed out reach their end, and
the index grows fourfold, rehashing the live entries, whenever it would become more than half
full (fourfold: a table filling up places each entry about a third of a time more, not once) --
at most up to the smallest power of two >= 2 x `max_entries`, the size it always had. A full
table holds exactly what it held before. Entry slots are numbered from 1 so that 0 means "none"
everywhere (an empty index position, no neighbour).

A column read into a local is a snapshot: an `insert` may replace the column (growth), so code
that inserts reads the column from the table again afterwards.

An entry is known by `hash(key)` only. Python's str hash is SipHash with a per-process random
key, so clients cannot aim for a collision, and two of a million live keys share a hash with a
probability of about 3e-8 per process lifetime (they would then share one entry). Deletion
shifts the probe run back (no tombstones), so lookups stay short however much churn there is.
Freed slots are reused through a free list, so RSS is steady under churn.

Index positions and hashes are `i64`, slots `int` (they are stored as int32): compiled with mypyc
both are native integers (the arithmetic and comparisons cost no objects); interpreted, plain
ints, with no conversion calls on the way.
"""
from __future__ import annotations

import mmap
from collections.abc import Iterator
from typing import Final

from librt.vecs import extend, vec
from mypy_extensions import i32, i64  # compiled (mypyc), native integers; interpreted, int

NONE: Final = 0  # no slot: an empty index position, the end of the LRU list, "not found"
_MIN_INDEX: Final = 8  # index positions of an empty table
_MIN_SLOTS: Final = 64  # slots of a table's first columns (slot 0 included)


# Zeros to make or extend a vec from: an anonymous map's zero pages are read, never made resident,
# so the copy in the vec is all the memory it costs.
def _int_zeros(count: i64, size: i64) -> memoryview[int]:
    return memoryview(mmap.mmap(-1, count * size)).cast("q" if size == 8 else "i")


def _float_zeros(count: i64) -> memoryview[float]:
    return memoryview(mmap.mmap(-1, count * 8)).cast("d")


def _zeroed_index(count: i64) -> vec[i32]:
    return vec[i32](_int_zeros(count, 4))


class LruTable:
    __slots__ = ("_free", "_index", "_index_bound", "_mask", "_size", "_two_values", "_used", "hashes", "head",
                 "max_entries", "next", "prev", "seconds", "tags", "tail", "values")

    def __init__(self, max_entries: int, two_values: bool = False) -> None:
        if max_entries < 1:
            raise ValueError("an LruTable holds at least one entry")
        self.max_entries: i64 = max_entries
        self._two_values = two_values
        bound: i64 = _MIN_INDEX
        while bound < 2 * self.max_entries:
            bound *= 2
        self._index_bound = bound  # the index of a full table: at most half full
        self._allocate()

    def _allocate(self) -> None:
        self._index = _zeroed_index(_MIN_INDEX)
        self._mask: i64 = _MIN_INDEX - 1
        # Slot 0 is never used; the columns grow as slots are handed out (`_grow_columns`).
        self.hashes = vec[i64]()
        self.values = vec[float]()
        self.seconds = vec[float]()  # stays empty unless `two_values`
        self.tags = vec[i32]()
        self.prev = vec[i32]()
        self.next = vec[i32]()
        self.head: int = NONE  # least recently used
        self.tail: int = NONE  # most recently used
        self._free: int = NONE  # free slots, chained through `next`
        self._used: int = 0  # slots ever handed out (the high-water mark)
        self._size: i64 = 0

    def __len__(self) -> int:
        return self._size

    def find(self, h: i64) -> int:
        """The slot holding hash `h`, or NONE (0). Does not touch the LRU order."""
        index, hashes, mask = self._index, self.hashes, self._mask
        i: i64 = h & mask
        slot: int
        while True:
            slot = index[i]
            if slot == NONE or hashes[slot] == h:
                return slot
            i = (i + 1) & mask

    def touch(self, slot: int) -> None:
        """Make `slot` the most recently used entry."""
        if slot == self.tail:
            return
        prev, nxt = self.prev, self.next
        before: int = prev[slot]
        after: int = nxt[slot]
        if before == NONE:
            self.head = after
        else:
            nxt[before] = after
        prev[after] = before  # `after` exists: slot is not the tail
        tail = self.tail
        nxt[tail] = slot
        prev[slot] = tail
        nxt[slot] = NONE
        self.tail = slot

    def find_touch(self, h: i64) -> int:
        """`find(h)`, and when found `touch` it: the store's read-modify-write of an entry in one
        call instead of two (the two methods' code, inlined)."""
        index, hashes, mask = self._index, self.hashes, self._mask
        i: i64 = h & mask
        slot: int
        while True:
            slot = index[i]
            if slot == NONE:
                return NONE
            if hashes[slot] == h:
                break
            i = (i + 1) & mask
        tail = self.tail
        if slot != tail:
            prev, nxt = self.prev, self.next
            before: int = prev[slot]
            after: int = nxt[slot]
            if before == NONE:
                self.head = after
            else:
                nxt[before] = after
            prev[after] = before  # `after` exists: slot is not the tail
            nxt[tail] = slot
            prev[slot] = tail
            nxt[slot] = NONE
            self.tail = slot
        return slot

    def insert(self, h: i64, value: float, tag: int = 0, second: float = 0.0) -> int:
        """Add an entry for hash `h` (not present) as the most recently used; evicts the least
        recently used entry when the table is full. Returns the entry's slot. May replace the
        columns (see the module's docstring)."""
        if self._size >= self.max_entries:
            self.remove(self.head)
        if 2 * (self._size + 1) > self._mask + 1:
            self._grow_index()
        slot = self._free
        if slot != NONE:
            self._free = self.next[slot]
        else:
            self._used += 1
            slot = self._used
            if slot >= len(self.hashes):
                self._grow_columns()
        self.hashes[slot] = h
        self.values[slot] = value
        if self._two_values:
            self.seconds[slot] = second
        self.tags[slot] = tag
        tail = self.tail
        self.prev[slot] = tail
        self.next[slot] = NONE
        if tail == NONE:
            self.head = slot
        else:
            self.next[tail] = slot
        self.tail = slot
        index, mask = self._index, self._mask
        i: i64 = h & mask
        while index[i] != NONE:
            i = (i + 1) & mask
        index[i] = slot
        self._size += 1
        return slot

    def _grow_columns(self) -> None:
        """Double the per-slot columns (zero-filled), to at most `max_entries` + 1 slots."""
        have: i64 = len(self.hashes)
        more: i64 = min(max(have, _MIN_SLOTS), self.max_entries + 1 - have)
        self.hashes = extend(self.hashes, _int_zeros(more, 8))
        self.values = extend(self.values, _float_zeros(more))
        if self._two_values:
            self.seconds = extend(self.seconds, _float_zeros(more))
        self.tags = extend(self.tags, _int_zeros(more, 4))
        self.prev = extend(self.prev, _int_zeros(more, 4))
        self.next = extend(self.next, _int_zeros(more, 4))

    def _grow_index(self) -> None:
        """Grow the index fourfold (to at most its bound) and place every live entry in it again."""
        size: i64 = min(4 * (self._mask + 1), self._index_bound)
        index = _zeroed_index(size)
        mask: i64 = size - 1
        hashes, nxt = self.hashes, self.next
        slot = self.head
        i: i64
        while slot != NONE:
            i = hashes[slot] & mask
            while index[i] != NONE:
                i = (i + 1) & mask
            index[i] = slot
            slot = nxt[slot]
        self._index = index
        self._mask = mask

    def remove(self, slot: int) -> None:
        """Delete the entry in `slot`."""
        prev, nxt = self.prev, self.next
        before: int = prev[slot]
        after: int = nxt[slot]
        if before == NONE:
            self.head = after
        else:
            nxt[before] = after
        if after == NONE:
            self.tail = before
        else:
            prev[after] = before
        nxt[slot] = self._free
        prev[slot] = NONE
        self._free = slot
        self._size -= 1
        # Find the slot in the index, then shift later members of its probe run back into the gap.
        index, hashes, mask = self._index, self.hashes, self._mask
        i: i64 = hashes[slot] & mask
        while index[i] != slot:
            i = (i + 1) & mask
        j: i64 = i
        other: int
        home: i64
        while True:
            j = (j + 1) & mask
            other = index[j]
            if other == NONE:
                break
            home = hashes[other] & mask
            # `other` may move to the gap at i only if its home is not cyclically within (i, j].
            if (i < j and i < home <= j) or (i > j and (home > i or home <= j)):
                continue
            index[i] = other
            i = j
        index[i] = NONE

    def lru_slots(self) -> Iterator[int]:
        """Slots from least to most recently used. Do not insert or remove while iterating."""
        slot = self.head
        nxt = self.next
        while slot != NONE:
            yield slot
            slot = nxt[slot]

    def clear(self) -> None:
        self._allocate()

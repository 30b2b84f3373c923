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

The arrays are typed views of anonymous memory maps sized for `max_entries`: the kernel hands
out zeroed pages only when they are first written, so an idle or small table costs next to
nothing, and a full one never reallocates. Entry slots are numbered from 1 so that 0, the value
of an untouched page, means "none" everywhere (an empty index position, no neighbour).

An entry is known by `hash(key)` only. Python's str hash is SipHash with a per-process random
key, so clients cannot aim for a collision, and two of a million live keys share a hash with a
probability of about 3e-8 per process lifetime (they would then share one entry). Deletion
shifts the probe run back (no tombstones), so lookups stay short however much churn there is.
Freed slots are reused through a free list, so RSS is steady under churn.

Slots, hashes and the list ends are typed `i64`: compiled with mypyc they are native integers
(the arithmetic and comparisons cost no objects); interpreted, `i64` is `int`.
"""
from __future__ import annotations

import mmap
from collections.abc import Iterator
from typing import Final

from mypy_extensions import i64  # compiled (mypyc), a native 64-bit integer; interpreted, int

NONE: Final = 0  # no slot: an empty index position, the end of the LRU list, "not found"


def _zeroed(count: int, size: int) -> mmap.mmap:
    return mmap.mmap(-1, max(1, count) * size)  # anonymous: zero pages, committed when first written


def _ints(count: int) -> memoryview[int]:
    return memoryview(_zeroed(count, 4)).cast("i")


def _int64s(count: int) -> memoryview[int]:
    return memoryview(_zeroed(count, 8)).cast("q")


def _floats(count: int) -> memoryview[float]:
    return memoryview(_zeroed(count, 8)).cast("d")


class LruTable:
    __slots__ = ("_free", "_index", "_mask", "_size", "_used", "hashes", "head", "max_entries", "next", "prev",
                 "seconds", "tags", "tail", "values")

    def __init__(self, max_entries: int, two_values: bool = False) -> None:
        if max_entries < 1:
            raise ValueError("an LruTable holds at least one entry")
        self.max_entries: i64 = max_entries
        self._allocate(two_values)

    def _allocate(self, two_values: bool) -> None:
        size: i64 = 8
        while size < 2 * self.max_entries:
            size *= 2
        self._index = _ints(size)
        self._mask: i64 = size - 1
        slots = self.max_entries + 1  # slot 0 is never used
        self.hashes = _int64s(slots)
        self.values = _floats(slots)
        self.seconds: memoryview[float] | None = _floats(slots) if two_values else None
        self.tags = _ints(slots)
        self.prev = _ints(slots)
        self.next = _ints(slots)
        self.head: i64 = NONE  # least recently used
        self.tail: i64 = NONE  # most recently used
        self._free: i64 = NONE  # free slots, chained through `next`
        self._used: i64 = 0  # slots ever handed out (the high-water mark)
        self._size: i64 = 0

    def __len__(self) -> int:
        return self._size

    def find(self, h: i64) -> i64:
        """The slot holding hash `h`, or NONE (0). Does not touch the LRU order."""
        index, hashes, mask = self._index, self.hashes, self._mask
        i: i64 = h & mask
        slot: i64
        while True:
            slot = index[i]
            if slot == NONE or hashes[slot] == h:
                return slot
            i = (i + 1) & mask

    def touch(self, slot: i64) -> None:
        """Make `slot` the most recently used entry."""
        if slot == self.tail:
            return
        prev, nxt = self.prev, self.next
        before: i64 = prev[slot]
        after: i64 = nxt[slot]
        if before == NONE:
            self.head = after
        else:
            nxt[before] = after
        prev[after] = before  # `after` exists: slot is not the tail
        tail: i64 = self.tail
        nxt[tail] = slot
        prev[slot] = tail
        nxt[slot] = NONE
        self.tail = slot

    def find_touch(self, h: i64) -> i64:
        """`find(h)`, and when found `touch` it: the store's read-modify-write of an entry in one
        call instead of two (the two methods' code, inlined)."""
        index, hashes, mask = self._index, self.hashes, self._mask
        i: i64 = h & mask
        slot: i64
        while True:
            slot = index[i]
            if slot == NONE:
                return NONE
            if hashes[slot] == h:
                break
            i = (i + 1) & mask
        tail: i64 = self.tail
        if slot != tail:
            prev, nxt = self.prev, self.next
            before: i64 = prev[slot]
            after: i64 = nxt[slot]
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

    def insert(self, h: i64, value: float, tag: i64 = 0, second: float = 0.0) -> i64:
        """Add an entry for hash `h` (not present) as the most recently used; evicts the least
        recently used entry when the table is full. Returns the entry's slot."""
        if self._size >= self.max_entries:
            self.remove(self.head)
        slot: i64 = self._free
        if slot != NONE:
            self._free = self.next[slot]
        else:
            self._used += 1
            slot = self._used
        self.hashes[slot] = h
        self.values[slot] = value
        if self.seconds is not None:
            self.seconds[slot] = second
        self.tags[slot] = tag
        tail: i64 = self.tail
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

    def remove(self, slot: i64) -> None:
        """Delete the entry in `slot`."""
        prev, nxt = self.prev, self.next
        before: i64 = prev[slot]
        after: i64 = nxt[slot]
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
        other: i64
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
        slot: i64 = self.head
        nxt = self.next
        while slot != NONE:
            yield slot
            slot = nxt[slot]

    def clear(self) -> None:
        self._allocate(self.seconds is not None)

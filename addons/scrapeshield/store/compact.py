"""A bounded, least-recently-used map from key hashes to floats, in flat arrays.

`MemoryStore` must hold a million tracked keys in a few dozen MiB. A Python dict of string keys
and float objects costs ~300 bytes an entry (the key string, a float object, the dict slot and an
LRU link object); this table costs ~34 bytes an entry and allocates no object per entry:

    index     array('i')  open addressing (linear probing), 2 slots per entry   8 bytes/entry
    hashes    array('q')  the 64-bit hash of the entry's key                    8
    values    array('d')  the entry's float (a TAT, a deadline, a score value)  8
    seconds   array('d')  an optional second float (a score's `since`)         (8)
    tags      array('i')  a small int naming the entry's definition             4
    prev/next array('i')  the LRU list: head is least, tail most recently used  8

An entry is known by `hash(key)` only. Python's str hash is SipHash with a per-process random
key, so clients cannot aim for a collision, and two of a million live keys share a hash with a
probability of about 3e-8 per process lifetime (they would then share one entry). Deletion
shifts the probe run back (no tombstones), so lookups stay short however much churn there is.
Freed entry slots are reused through a free list; the arrays grow by doubling up to the bound
and never shrink, so RSS is steady under churn.
"""
from __future__ import annotations

from array import array
from collections.abc import Iterator

_EMPTY = -1
_FIRST_CAPACITY = 1024


class LruTable:
    __slots__ = ("_free", "_index", "_mask", "_size", "_used", "hashes", "head", "max_entries", "next", "prev",
                 "seconds", "tags", "tail", "values")

    def __init__(self, max_entries: int, two_values: bool = False) -> None:
        if max_entries < 1:
            raise ValueError("an LruTable holds at least one entry")
        self.max_entries = max_entries
        self._allocate(two_values)

    def _allocate(self, two_values: bool) -> None:
        max_entries = self.max_entries
        size = 8
        while size < 2 * max_entries:
            size *= 2
        self._index = array("i", [_EMPTY]) * size
        self._mask = size - 1
        capacity = min(_FIRST_CAPACITY, max_entries)
        self.hashes = array("q", [0]) * capacity
        self.values = array("d", [0.0]) * capacity
        self.seconds: array[float] | None = array("d", [0.0]) * capacity if two_values else None
        self.tags = array("i", [0]) * capacity
        self.prev = array("i", [_EMPTY]) * capacity
        self.next = array("i", [_EMPTY]) * capacity
        self.head = _EMPTY  # least recently used
        self.tail = _EMPTY  # most recently used
        self._free = _EMPTY  # free entry slots, chained through `next`
        self._used = 0  # entry slots ever handed out (the high-water mark)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def find(self, h: int) -> int:
        """The entry slot holding hash `h`, or -1. Does not touch the LRU order."""
        index, hashes, mask = self._index, self.hashes, self._mask
        i = h & mask
        while True:
            slot = index[i]
            if slot == _EMPTY or hashes[slot] == h:
                return slot
            i = (i + 1) & mask

    def touch(self, slot: int) -> None:
        """Make `slot` the most recently used entry."""
        if slot == self.tail:
            return
        prev, nxt = self.prev, self.next
        before, after = prev[slot], nxt[slot]
        if before == _EMPTY:
            self.head = after
        else:
            nxt[before] = after
        prev[after] = before  # `after` exists: slot is not the tail
        tail = self.tail
        nxt[tail] = slot
        prev[slot] = tail
        nxt[slot] = _EMPTY
        self.tail = slot

    def insert(self, h: int, value: float, tag: int = 0, second: float = 0.0) -> int:
        """Add an entry for hash `h` (not present) as the most recently used; evicts the least
        recently used entry when the table is full. Returns the entry's slot."""
        if self._size >= self.max_entries:
            self.remove(self.head)
        slot = self._free
        if slot != _EMPTY:
            self._free = self.next[slot]
        else:
            slot = self._used
            if slot == len(self.hashes):
                self._grow()
            self._used += 1
        self.hashes[slot] = h
        self.values[slot] = value
        if self.seconds is not None:
            self.seconds[slot] = second
        self.tags[slot] = tag
        tail = self.tail
        self.prev[slot] = tail
        self.next[slot] = _EMPTY
        if tail == _EMPTY:
            self.head = slot
        else:
            self.next[tail] = slot
        self.tail = slot
        index, mask = self._index, self._mask
        i = h & mask
        while index[i] != _EMPTY:
            i = (i + 1) & mask
        index[i] = slot
        self._size += 1
        return slot

    def remove(self, slot: int) -> None:
        """Delete the entry in `slot`."""
        prev, nxt = self.prev, self.next
        before, after = prev[slot], nxt[slot]
        if before == _EMPTY:
            self.head = after
        else:
            nxt[before] = after
        if after == _EMPTY:
            self.tail = before
        else:
            prev[after] = before
        nxt[slot] = self._free
        prev[slot] = _EMPTY
        self._free = slot
        self._size -= 1
        # Find the slot in the index, then shift later members of its probe run back into the gap.
        index, hashes, mask = self._index, self.hashes, self._mask
        i = hashes[slot] & mask
        while index[i] != slot:
            i = (i + 1) & mask
        j = i
        while True:
            j = (j + 1) & mask
            other = index[j]
            if other == _EMPTY:
                break
            home = hashes[other] & mask
            # `other` may move to the gap at i only if its home is not cyclically within (i, j].
            if (i < j and i < home <= j) or (i > j and (home > i or home <= j)):
                continue
            index[i] = other
            i = j
        index[i] = _EMPTY

    def lru_slots(self) -> Iterator[int]:
        """Slots from least to most recently used. Do not insert or remove while iterating."""
        slot, nxt = self.head, self.next
        while slot != _EMPTY:
            yield slot
            slot = nxt[slot]

    def clear(self) -> None:
        self._allocate(self.seconds is not None)

    def _grow(self) -> None:
        extra = min(len(self.hashes), self.max_entries - len(self.hashes))
        self.hashes.extend(array("q", [0]) * extra)
        self.values.extend(array("d", [0.0]) * extra)
        if self.seconds is not None:
            self.seconds.extend(array("d", [0.0]) * extra)
        self.tags.extend(array("i", [0]) * extra)
        self.prev.extend(array("i", [_EMPTY]) * extra)
        self.next.extend(array("i", [_EMPTY]) * extra)

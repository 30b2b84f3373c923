"""Bounded memo tables: a pure function's answers remembered in a plain dict, emptied when full.

The hot path remembers many small pure answers (a string's hash, an address's prefix, a page's
tag, a User-Agent's rule hits). A plain dict read is the cheapest lookup there is, compiled or
not, and emptying the table when it is full keeps it bounded at the price of recomputing what
is still in use -- a few hundred nanoseconds, once. An LRU would keep the hot entries, but pays on
every hit for the bookkeeping that a miss this rare does not need.

Callers read with `memo.get(key)` themselves (a miss is theirs to compute) and store with
`remember`, so the bound is written once.
"""
from __future__ import annotations


def remember[K, V](memo: dict[K, V], key: K, value: V, limit: int) -> V:
    """Store `value` under `key`, emptying `memo` first when it holds `limit` entries; returns `value`."""
    if len(memo) >= limit:
        memo.clear()
    memo[key] = value
    return value

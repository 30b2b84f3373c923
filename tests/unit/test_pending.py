"""`Pending`: the addon's flow id -> DecisionContext map, bounded in count and age."""
from __future__ import annotations

import pytest
from cachetools import TTLCache
from hypothesis import given, settings
from hypothesis import strategies as st

from scrapeshield.clock import FakeClock
from scrapeshield.pending import Pending


def test_an_entry_is_kept_until_taken_out() -> None:
    clock = FakeClock(0.0)
    pending: Pending[str, int] = Pending(10, 600.0, clock)
    pending.put("a", 1)
    clock.advance(599.0)
    assert pending.get("a") == 1 and len(pending) == 1
    assert pending.pop("a") == 1
    assert pending.pop("a") is None and not pending


def test_an_entry_past_its_age_is_never_returned_and_is_dropped_by_the_next_put() -> None:
    clock = FakeClock(0.0)
    pending: Pending[str, int] = Pending(10, 600.0, clock)
    pending.put("old", 1)
    pending.put("older?", 2)
    clock.advance(600.0)
    assert pending.get("old") is None  # dropped as it is read
    assert len(pending) == 1
    pending.put("new", 3)  # drops "older?" from the front
    assert len(pending) == 1 and pending.pop("new") == 3


def test_when_full_the_oldest_goes_first_and_a_stored_again_key_is_young_again() -> None:
    clock = FakeClock(0.0)
    pending: Pending[str, int] = Pending(3, 600.0, clock)
    for key in "abc":
        pending.put(key, ord(key))
        clock.advance(1.0)
    pending.put("a", 0)  # replaces "a", no eviction, and "a" is now the youngest
    assert len(pending) == 3
    pending.put("d", 4)  # full: "b" is the oldest now
    assert pending.get("b") is None
    assert [pending.get(k) for k in "acd"] == [0, ord("c"), 4]


@pytest.mark.parametrize(("maxsize", "ttl"), [(0, 1.0), (1, 0.0), (-1, 5.0)])
def test_bounds_must_be_positive(maxsize: int, ttl: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        Pending(maxsize, ttl, FakeClock())


_OPS = st.lists(st.tuples(st.sampled_from(["put", "get", "pop", "wait"]), st.integers(0, 7),
                          st.sampled_from([0.0, 0.5, 1.0, 3.0, 4.0])), max_size=80)


class _Model:
    """The guarantees, written the slow and obvious way: (key, stored at, value) in storing order."""

    def __init__(self, maxsize: int, ttl: float, clock: FakeClock) -> None:
        self.maxsize, self.ttl, self.clock = maxsize, ttl, clock
        self.entries: list[tuple[int, float, int]] = []

    def live(self) -> list[tuple[int, float, int]]:
        return [e for e in self.entries if e[1] > self.clock.now() - self.ttl]

    def put(self, key: int, value: int) -> None:
        self.entries = [e for e in self.live() if e[0] != key]
        del self.entries[:max(0, len(self.entries) - self.maxsize + 1)]  # the oldest, to make room
        self.entries.append((key, self.clock.now(), value))

    def get(self, key: int) -> int | None:
        return next((e[2] for e in self.live() if e[0] == key), None)

    def pop(self, key: int) -> int | None:
        found = self.get(key)
        self.entries = [e for e in self.entries if e[0] != key]
        return found


@settings(max_examples=300, deadline=None)
@given(ops=_OPS, maxsize=st.integers(1, 5))
def test_it_answers_as_the_obvious_model_does(ops: list[tuple[str, int, float]], maxsize: int) -> None:
    clock = FakeClock(0.0)
    pending: Pending[int, int] = Pending(maxsize, 4.0, clock)
    model = _Model(maxsize, 4.0, clock)
    for n, (op, key, dt) in enumerate(ops):
        if op == "wait":
            clock.advance(dt)
        elif op == "put":
            pending.put(key, n)
            model.put(key, n)
        elif op == "get":
            assert pending.get(key) == model.get(key)
        else:
            assert pending.pop(key) == model.pop(key)
        assert len(pending) <= maxsize
        assert [pending.get(k) for k in range(8)] == [model.get(k) for k in range(8)]


@settings(max_examples=200, deadline=None)
@given(ops=_OPS, maxsize=st.integers(1, 5))
def test_it_answers_as_cachetools_ttlcache_did_for_flows(ops: list[tuple[str, int, float]], maxsize: int) -> None:
    """As the addon uses it (a flow's context read at most once between its store and its pop), the
    answers of the TTLCache it replaced. TTLCache, when full, drops the entry read least recently
    rather than the one stored first: the same entry when nothing is read before it is dropped."""
    clock = FakeClock(0.0)
    pending: Pending[int, int] = Pending(maxsize, 4.0, clock)
    reference: TTLCache[int, int] = TTLCache(maxsize=maxsize, ttl=4.0, timer=clock.now)
    for n, (op, key, dt) in enumerate(ops):
        if op == "wait":
            clock.advance(dt)
        elif op in ("put", "get"):  # a store; a read is a store's own key read back at once
            pending.put(key, n)
            reference[key] = n
            if op == "get":
                assert pending.get(key) == reference.get(key) == n
        else:
            assert pending.pop(key) == reference.pop(key, None)
        assert [k in pending for k in range(8)] == [k in reference for k in range(8)]

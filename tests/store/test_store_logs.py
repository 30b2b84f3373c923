"""Detector logs (`Store.append_logs`): what every backend must do, and their bounds.

The sequence and cross-session detectors keep their recent record ids in these logs, so that two
replicas on one Redis see the walk one shield would see (docs/detectors.md).
"""
from __future__ import annotations

import asyncio

import pytest

from harness import free_port
from scrapeshield.clock import FakeClock
from scrapeshield.store.base import LogAppend, LogRead, Store, StoreError
from scrapeshield.store.memory import MemoryStore
from scrapeshield.store.redis import RedisStore
from scrapeshield.store.resilient import ResilientStore
from store.conftest import RedisStoreFactory


async def test_a_log_answers_its_entries_oldest_first_after_each_append(store: Store, clock: FakeClock) -> None:
    now = clock.now()
    first = await store.append_logs((LogAppend("seq:a", "1", 4, 60.0),), now)
    second = await store.append_logs((LogAppend("seq:a", "2", 4, 60.0),), now + 1)
    assert first == (LogRead(1, ("1",), True),)
    assert second == (LogRead(2, ("1", "2"), True),)


async def test_a_log_keeps_only_its_newest_entries(store: Store, clock: FakeClock) -> None:
    now = clock.now()
    for i in range(10):
        logs = await store.append_logs((LogAppend("seq:b", str(i), 3, 60.0),), now + i)
    assert logs == (LogRead(10, ("7", "8", "9"), True),)


async def test_a_caller_that_says_what_it_has_seen_gets_only_what_is_new(store: Store, clock: FakeClock) -> None:
    now = clock.now()
    for i in range(5):
        await store.append_logs((LogAppend("seq:c", str(i), 4, 60.0),), now)
    assert await store.append_logs((LogAppend("seq:c", "5", 4, 60.0, seen=5),), now) == (LogRead(6, ("5",), False),)
    assert await store.append_logs((LogAppend("seq:c", "6", 4, 60.0, seen=4),), now) == \
        (LogRead(7, ("4", "5", "6"), False),)
    # further behind than the log keeps, or ahead of a log that began anew: the whole log
    assert await store.append_logs((LogAppend("seq:c", "7", 4, 60.0, seen=2),), now) == \
        (LogRead(8, ("4", "5", "6", "7"), True),)
    assert await store.append_logs((LogAppend("seq:d", "x", 4, 60.0, seen=50),), now) == (LogRead(1, ("x",), True),)


async def test_one_call_appends_to_several_logs_independently(store: Store, clock: FakeClock) -> None:
    now = clock.now()
    await store.append_logs((LogAppend("x:1", "a", 8, 60.0), LogAppend("x:2", "b", 8, 60.0)), now)
    logs = await store.append_logs((LogAppend("x:2", "c", 8, 60.0), LogAppend("x:1", "d", 8, 60.0),
                                    LogAppend("x:3", "e", 8, 60.0)), now + 1)
    assert [read.entries for read in logs] == [("b", "c"), ("a", "d"), ("e",)]


async def test_concurrent_appends_to_one_log_lose_nothing(store: Store, clock: FakeClock) -> None:
    now = clock.now()
    await asyncio.gather(*(store.append_logs((LogAppend("busy", str(i), 100, 60.0),), now) for i in range(40)))
    (read,) = await store.append_logs((LogAppend("busy", "end", 100, 60.0),), now)
    log = read.entries
    # Nothing lost. (redis-py's cluster client may send a script again after a connection error
    # it retries, so on a cluster an entry can be there twice: a repeat the detectors ignore.)
    assert set(log[:-1]) == {str(i) for i in range(40)} and log[-1] == "end"
    assert read.appended == len(log) >= 41


async def test_two_stores_on_one_redis_share_a_log(redis_store_factory: RedisStoreFactory, clock: FakeClock) -> None:
    a = redis_store_factory(key_prefix="shared-log:")
    b = redis_store_factory(key_prefix="shared-log:")
    now = clock.now()
    await a.append_logs((LogAppend("walk", "1001", 64, 60.0),), now)
    (read,) = await b.append_logs((LogAppend("walk", "1002", 64, 60.0),), now)
    assert read.entries == ("1001", "1002")


async def test_a_redis_log_expires_its_ttl_after_the_last_append(redis_store_factory: RedisStoreFactory,
                                                                 clock: FakeClock) -> None:
    store = redis_store_factory(expiry_slack=0.001)
    now = clock.now()
    await store.append_logs((LogAppend("short", "1", 8, 0.05),), now)
    await asyncio.sleep(0.3)  # Redis expires by its own clock
    assert await store.append_logs((LogAppend("short", "2", 8, 0.05, seen=1),), now) == (LogRead(1, ("2",), True),)


def test_a_memory_log_is_gone_its_ttl_after_the_last_append() -> None:
    store = MemoryStore()
    store.append_logs_now((LogAppend("k", "1", 8, 10.0),), 100.0)
    assert store.append_logs_now((LogAppend("k", "2", 8, 10.0),), 109.0)[0].entries == ("1", "2")
    assert store.append_logs_now((LogAppend("k", "3", 8, 10.0),), 120.0)[0].entries == ("3",)


def test_memory_logs_are_bounded_by_count() -> None:
    store = MemoryStore(max_logs=50)
    for i in range(500):
        store.append_logs_now((LogAppend(f"k{i}", "x", 8, 600.0),), 100.0)
    assert store.status()["logs"] == 50


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
async def test_logs_follow_the_fail_mode_when_redis_is_gone(clock: FakeClock, fail_mode: str) -> None:
    dead = RedisStore.from_url(f"redis://127.0.0.1:{free_port('127.0.0.1')}/0", timeout=0.5)  # nobody listens
    store = ResilientStore(dead, MemoryStore(), fail_mode)
    appended = store.append_logs((LogAppend("k", "1", 8, 60.0),), clock.now())
    if fail_mode == "open":
        assert (await appended)[0].entries == ("1",)  # the replica's own log meanwhile
    else:
        with pytest.raises(StoreError):
            await appended
    await store.close()

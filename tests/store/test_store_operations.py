"""The operator side of every store backend (the control API builds on it): the penalty box with
reasons, the allow list, listing, unban/unallow, inspection, and `allowed_key` in `apply`.
Runs on memory, Redis, Redis without the local cache and Redis behind a ResilientStore."""
from __future__ import annotations

import pytest

from scrapeshield.clock import FakeClock
from scrapeshield.gcra import parse_rate
from scrapeshield.store.base import Batch, BucketCheck, ListEntry, ScoreUpdate, Store
from scrapeshield.store.memory import MemoryStore

KEY = "ip:203.0.113.7"
OTHER = "ip:198.51.100.1"
LIMIT = parse_rate("1/s burst 2")


async def test_a_ban_carries_its_reason_and_creation_time(store: Store, clock: FakeClock) -> None:
    now = clock.now()
    await store.ban(KEY, now + 60, now, reason="scraping /products")
    assert await store.bans(now) == [ListEntry(KEY, now + 60, "scraping /products", now)]


async def test_bans_are_listed_soonest_first_up_to_the_limit(store: Store, clock: FakeClock) -> None:
    now = clock.now()
    for i, seconds in enumerate([30, 10, 20]):
        await store.ban(f"ip:192.0.2.{i}", now + seconds, now, reason=str(i))
    listed = await store.bans(now, limit=2)
    assert [(e.key, e.until) for e in listed] == [("ip:192.0.2.1", now + 10), ("ip:192.0.2.2", now + 20)]


async def test_an_expired_ban_is_not_listed(store: Store, clock: FakeClock) -> None:
    now = clock.now()
    await store.ban(KEY, now + 5, now)
    assert await store.bans(now + 6) == []


async def test_unban_lifts_a_ban_at_once(store: Store, clock: FakeClock) -> None:
    now = clock.now()
    await store.ban(KEY, now + 60, now)
    assert (await store.apply(Batch(ban_keys=(KEY,)), now)).banned_key == KEY
    assert await store.unban(KEY) is True
    assert (await store.apply(Batch(ban_keys=(KEY,)), now)).banned_key is None
    assert await store.bans(now) == []
    assert await store.unban(KEY) is False


async def test_an_allowed_key_is_reported_and_never_banned(store: Store, clock: FakeClock) -> None:
    # given a banned key that is also on the allow list
    now = clock.now()
    await store.ban(KEY, now + 60, now)
    await store.allow(KEY, now + 30, now, reason="our monitoring")
    # when a request carries it
    res = await store.apply(Batch(ban_keys=(KEY,), buckets=(BucketCheck("b", KEY, LIMIT),)), now)
    # then the result names it as allowed, not banned, and its buckets were applied as usual
    assert (res.allowed_key, res.banned_key, res.refused) == (KEY, None, -1)
    assert res.buckets[0].remaining == 2


async def test_an_allowed_key_does_not_lift_another_keys_ban(store: Store, clock: FakeClock) -> None:
    now = clock.now()
    await store.allow(KEY, now + 30, now)
    await store.ban(OTHER, now + 60, now)
    res = await store.apply(Batch(ban_keys=(KEY, OTHER)), now)
    assert (res.allowed_key, res.banned_key) == (KEY, OTHER)


async def test_an_allow_ends_on_unallow_and_at_its_deadline(store: Store, clock: FakeClock) -> None:
    now = clock.now()
    await store.allow(KEY, now + 30, now, reason="r")
    await store.allow(OTHER, now + 30, now)
    assert await store.unallow(OTHER) is True
    assert (await store.apply(Batch(ban_keys=(OTHER,)), now)).allowed_key is None
    assert await store.allows(now) == [ListEntry(KEY, now + 30, "r", now)]
    assert await store.unallow(OTHER) is False
    assert (await store.apply(Batch(ban_keys=(KEY,)), now + 31)).allowed_key is None
    assert await store.allows(now + 31) == []


async def test_inspect_shows_buckets_scores_ban_and_allow(store: Store, clock: FakeClock) -> None:
    # given a key with one request on a bucket, a score, a ban and an allow
    now = clock.now()
    await store.apply(Batch(buckets=(BucketCheck("b", KEY, LIMIT),), scores=(ScoreUpdate("abuse", KEY, 4.0, 10.0),)),
                      now)
    await store.ban(KEY, now + 60, now, reason="why")
    await store.allow(KEY, now + 30, now)
    # when it is inspected ten seconds later (one half-life)
    seen = await store.inspect(KEY, now + 0.5)
    # then each part is there, as of that moment
    assert seen.key == KEY
    assert set(seen.buckets) == {"b"} and seen.buckets["b"].remaining == 2
    assert seen.scores == {"abuse": pytest.approx(4.0 * 0.5 ** (0.5 / 10.0))}
    assert seen.ban == ListEntry(KEY, now + 60, "why", now)
    assert seen.allow is not None and seen.allow.until == now + 30
    # and a key nobody has seen has nothing
    empty = await store.inspect(OTHER, now)
    assert (empty.buckets, empty.scores, empty.ban, empty.allow) == ({}, {}, None, None)


def test_the_memory_penalty_box_is_bounded_and_keeps_the_longest_bans() -> None:
    import asyncio

    store = MemoryStore(max_bans=3)
    now = 1_700_000_000.0
    for i in range(5):
        asyncio.run(store.ban(f"ip:192.0.2.{i}", now + 10 + i, now))
    listed = asyncio.run(store.bans(now))
    assert [e.key for e in listed] == ["ip:192.0.2.2", "ip:192.0.2.3", "ip:192.0.2.4"]


def test_a_new_bucket_twice_in_one_memory_batch_is_one_entry_as_if_asked_once() -> None:
    # given two fresh memory stores
    twice, once = MemoryStore(), MemoryStore()
    now = 1_700_000_000.0
    a, b = BucketCheck("a", KEY, LIMIT), BucketCheck("b", KEY, LIMIT)
    # when one is asked for bucket a twice in one batch (two rules sharing a limit), the other once
    for store, checks in ((twice, (a, b, a)), (once, (a, b))):
        assert store.apply_now(Batch(buckets=checks), now).refused < 0
        assert store.apply_now(Batch(buckets=(a,)), now).refused < 0
    # then both hold one entry a bucket, in the same state
    assert twice.tracked_keys() == once.tracked_keys() == 2
    assert twice.apply_now(Batch(buckets=(a,)), now) == once.apply_now(Batch(buckets=(a,)), now)

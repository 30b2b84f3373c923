"""What every store backend must do, asserted once and run against each (memory, Redis).

Time is a fake clock passed as `now`; Redis is a real server (see conftest.py).
"""
from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from scrapeshield.clock import FakeClock
from scrapeshield.gcra import BucketLimit, parse_rate
from scrapeshield.store.base import Batch, BatchResult, BucketCheck, ScoreUpdate, Store
from scrapeshield.store.memory import MemoryStore
from scrapeshield.store.redis import RedisStore

RedisStoreFactory = Callable[..., RedisStore]  # the redis_store_factory fixture (conftest.py)


def bucket(rate: str, key: str = "ip:203.0.113.7", bucket_id: str = "rule") -> BucketCheck:
    return BucketCheck(bucket_id, key, parse_rate(rate))


async def accepted(store: Store, check: BucketCheck, now: float, times: int) -> int:
    batch = Batch(buckets=(check,))
    results = [await store.apply(batch, now) for _ in range(times)]
    return sum(r.refused < 0 for r in results)


# -- nginx limit_req arithmetic -------------------------------------------------------------

@pytest.mark.parametrize(("rate", "burst_of", "expected"), [
    ("10/s burst 0", 5, 1),
    ("10/s burst 5", 3, 3),
    ("10/s burst 5", 6, 6),
    ("10/s burst 5", 20, 6),
    ("2/s burst 10", 11, 11),
    ("2/s burst 10", 50, 11),
    ("1/m burst 9", 30, 10),
    ("100/s burst 50", 200, 51),
    ("1000/h", 1500, 1000),
])
async def test_an_instant_burst_on_an_idle_key_accepts_min_of_m_and_burst_plus_one(
        store: Store, clock: FakeClock, rate: str, burst_of: int, expected: int) -> None:
    assert await accepted(store, bucket(rate), clock.now(), burst_of) == expected


@pytest.mark.parametrize(("rate", "seconds"), [("5/s burst 10", 10.0), ("2/s burst 0", 7.0), ("60/m burst 3", 20.0)])
async def test_steady_excess_over_t_seconds_accepts_burst_plus_one_plus_rate_times_t(
        store: Store, clock: FakeClock, rate: str, seconds: float) -> None:
    check = bucket(rate)
    limit = check.limit
    step = limit.interval / 10  # ten times the allowed rate
    total = 0
    start = clock.now()
    while clock.now() - start < seconds:
        total += await accepted(store, check, clock.now(), 1)
        clock.advance(step)
    expected = limit.burst + 1 + seconds / limit.interval
    assert abs(total - expected) <= 1


async def test_a_refused_request_consumes_nothing(store: Store, clock: FakeClock) -> None:
    check = bucket("1/s burst 2")
    t0 = clock.now()
    assert await accepted(store, check, t0, 3) == 3
    assert await accepted(store, check, t0 + 0.5, 100) == 0

    # Exactly one interval after the burst, one request conforms: the 100 refusals took nothing.
    assert await accepted(store, check, t0 + 1.0, 2) == 1


async def test_bucket_states_describe_remaining_and_retry_after(store: Store, clock: FakeClock) -> None:
    check = bucket("4/s burst 2")  # interval 0.25 s, tolerance 0.5 s
    now = clock.now()

    first = await store.apply(Batch(buckets=(check,)), now)
    assert first.refused == -1
    assert first.buckets[0].allowed and first.buckets[0].remaining == 2
    assert first.buckets[0].reset == pytest.approx(0.25)

    await accepted(store, check, now, 2)
    refused = await store.apply(Batch(buckets=(check,)), now)
    assert refused.refused == 0
    state = refused.buckets[0]
    assert not state.allowed and state.remaining == 0
    assert state.retry_after == pytest.approx(0.25)
    assert state.reset == pytest.approx(0.75)


async def test_a_request_consumes_from_all_buckets_or_none(store: Store, clock: FakeClock) -> None:
    tight, loose = bucket("1/s burst 0", bucket_id="tight"), bucket("10/s burst 4", bucket_id="loose")
    now = clock.now()
    both = Batch(buckets=(loose, tight))
    assert (await store.apply(both, now)).refused == -1

    refused = await store.apply(both, now)
    assert refused.refused == 1  # the index of the refusing bucket
    assert [s.allowed for s in refused.buckets] == [False, False]

    # The loose bucket gave 1 of its 5 to the first request, and nothing to the refused one.
    assert await accepted(store, loose, now, 10) == 4


async def test_the_first_refusing_bucket_is_reported(store: Store, clock: FakeClock) -> None:
    a, b = bucket("1/s burst 0", bucket_id="a"), bucket("1/s burst 0", bucket_id="b")
    now = clock.now()
    assert (await store.apply(Batch(buckets=(a, b)), now)).refused == -1
    assert (await store.apply(Batch(buckets=(a, b)), now)).refused == 0
    assert (await store.apply(Batch(buckets=(b, a)), now)).refused == 0


async def test_keys_and_bucket_definitions_are_independent(store: Store, clock: FakeClock) -> None:
    now = clock.now()
    assert await accepted(store, bucket("1/s burst 1", key="ip:192.0.2.1"), now, 5) == 2
    assert await accepted(store, bucket("1/s burst 1", key="ip:192.0.2.2"), now, 5) == 2
    assert await accepted(store, bucket("1/s burst 1", key="ip:192.0.2.1", bucket_id="other"), now, 5) == 2


async def test_an_idle_key_gets_its_whole_burst_back_after_its_window(store: Store, clock: FakeClock) -> None:
    check = bucket("2/s burst 3")
    now = clock.now()
    assert await accepted(store, check, now, 10) == 4
    assert await accepted(store, check, now + check.limit.window, 10) == 4


# -- bans -------------------------------------------------------------------------------------

async def test_a_ban_is_checked_before_buckets_and_scores_and_applies_nothing(store: Store, clock: FakeClock) -> None:
    check = bucket("1/s burst 1")
    score = ScoreUpdate("suspicion", "ip:203.0.113.7", 5.0, half_life=60.0)
    now = clock.now()
    await store.ban("ip:203.0.113.7", now + 60, now)

    result = await store.apply(Batch(ban_keys=("ip:203.0.113.7",), buckets=(check,), scores=(score,)), now + 1)
    assert result == BatchResult("ip:203.0.113.7", now + 60, -1, (), ())

    after = await store.apply(Batch(ban_keys=("ip:203.0.113.7",), buckets=(check,), scores=(score,)), now + 61)
    assert after.banned_key is None and after.refused == -1
    assert after.buckets[0].remaining == 1  # the whole burst but this request: nothing was taken while banned
    assert after.scores == (5.0,)  # the score starts from nothing


async def test_a_ban_expires_at_its_deadline(store: Store, clock: FakeClock) -> None:
    now = clock.now()
    await store.ban("ip:198.51.100.1", now + 10, now)
    batch = Batch(ban_keys=("ip:198.51.100.1",))
    assert (await store.apply(batch, now + 9.9)).banned_key == "ip:198.51.100.1"
    assert (await store.apply(batch, now + 10)).banned_key is None


async def test_a_ban_is_never_shortened(store: Store, clock: FakeClock) -> None:
    now = clock.now()
    await store.ban("ip:198.51.100.2", now + 100, now)
    await store.ban("ip:198.51.100.2", now + 10, now + 1)
    result = await store.apply(Batch(ban_keys=("ip:198.51.100.2",)), now + 50)
    assert (result.banned_key, result.banned_until) == ("ip:198.51.100.2", now + 100)


async def test_a_ban_can_be_lengthened(store: Store, clock: FakeClock) -> None:
    now = clock.now()
    await store.ban("ip:198.51.100.3", now + 10, now)
    await store.ban("ip:198.51.100.3", now + 100, now + 1)
    result = await store.apply(Batch(ban_keys=("ip:198.51.100.3",)), now + 50)
    assert (result.banned_key, result.banned_until) == ("ip:198.51.100.3", now + 100)


async def test_the_first_banned_key_of_a_request_is_reported(store: Store, clock: FakeClock) -> None:
    now = clock.now()
    await store.ban("fp:abc", now + 30, now)
    await store.ban("subnet:192.0.2.0/24", now + 30, now)
    batch = Batch(ban_keys=("ip:192.0.2.9", "subnet:192.0.2.0/24", "fp:abc"))
    assert (await store.apply(batch, now)).banned_key == "subnet:192.0.2.0/24"


# -- scores -----------------------------------------------------------------------------------

async def test_a_score_halves_every_half_life(store: Store, clock: FakeClock) -> None:
    def update(delta: float) -> Batch:
        return Batch(scores=(ScoreUpdate("suspicion", "ip:203.0.113.9", delta, half_life=10.0),))

    now = clock.now()
    assert (await store.apply(update(8.0), now)).scores == (8.0,)
    assert (await store.apply(update(0.0), now + 10)).scores[0] == pytest.approx(4.0)
    assert (await store.apply(update(1.0), now + 30)).scores[0] == pytest.approx(2.0)


async def test_a_score_never_goes_below_zero(store: Store, clock: FakeClock) -> None:
    update = Batch(scores=(ScoreUpdate("suspicion", "ip:203.0.113.10", -3.0, half_life=10.0),))
    assert (await store.apply(update, clock.now())).scores == (0.0,)


async def test_scores_are_updated_even_when_a_bucket_refuses(store: Store, clock: FakeClock) -> None:
    check = bucket("1/s burst 0")
    batch = Batch(buckets=(check,), scores=(ScoreUpdate("hits", "ip:203.0.113.7", 1.0, half_life=3600.0),))
    now = clock.now()
    results = [await store.apply(batch, now) for _ in range(3)]
    assert [r.refused for r in results] == [-1, 0, 0]
    assert [r.scores[0] for r in results] == pytest.approx([1.0, 2.0, 3.0])


# -- single-use tokens ------------------------------------------------------------------------

async def test_a_token_is_spent_once(store: Store, clock: FakeClock) -> None:
    now = clock.now()
    assert await store.spend_once("token-1", now + 300, now) is True
    assert await store.spend_once("token-1", now + 300, now + 1) is False
    assert await store.spend_once("token-2", now + 300, now + 1) is True


async def test_of_50_concurrent_spends_of_one_token_exactly_one_wins(store: Store, clock: FakeClock) -> None:
    now = clock.now()
    wins = await asyncio.gather(*(store.spend_once("token-race", now + 300, now) for _ in range(50)))
    assert wins.count(True) == 1


async def test_concurrent_requests_never_overdraw_a_bucket(store: Store, clock: FakeClock) -> None:
    batch = Batch(buckets=(bucket("1/s burst 9"),))
    results = await asyncio.gather(*(store.apply(batch, clock.now()) for _ in range(50)))
    assert sum(r.refused < 0 for r in results) == 10


async def test_an_empty_batch_changes_nothing(store: Store, clock: FakeClock) -> None:
    assert await store.apply(Batch(), clock.now()) == BatchResult(None, 0.0, -1, (), ())


# -- Redis answers exactly what memory answers --------------------------------------------------

def random_workload(seed: int, steps: int = 600) -> list[tuple[str, object, float]]:
    """A seeded mix of applies (bans, several buckets, scores), bans and token spends."""
    rng = random.Random(seed)
    limits = [BucketLimit(5, 1.0, 3), BucketLimit(1, 1.0, 0), BucketLimit(30, 60.0, 10), BucketLimit(3, 0.7, 2)]
    keys = [f"ip:192.0.2.{i}" for i in range(4)] + ["subnet:192.0.2.0/24"]
    ops: list[tuple[str, object, float]] = []
    now = 1_700_000_000.0 + rng.random()
    for _ in range(steps):
        now += rng.choice([0.0, 0.0, 0.001, 0.05, 0.13, 0.4, 1.7])
        roll = rng.random()
        key = rng.choice(keys)
        if roll < 0.04:
            ops.append(("ban", (key, now + rng.choice([0.5, 3.0, 20.0])), now))
        elif roll < 0.08:
            ops.append(("spend", f"token-{rng.randrange(20)}", now))
        else:
            checks = tuple(BucketCheck(f"b{i}", rng.choice(keys[:2]) if i == 3 else key, limits[i])
                           for i in sorted(rng.sample(range(4), rng.randint(0, 4))))
            scores = tuple(ScoreUpdate(f"s{i}", key, rng.choice([-1.0, 0.5, 1.0, 2.5]), half_life=[5.0, 30.0][i])
                           for i in range(rng.randint(0, 2)))
            ban_keys = tuple(rng.sample([key, "subnet:192.0.2.0/24"], rng.randint(0, 2)))
            ops.append(("apply", Batch(ban_keys, checks, scores), now))
    return ops


async def run_workload(store: Store, ops: list[tuple[str, object, float]]) -> list[object]:
    answers: list[object] = []
    for op, arg, now in ops:
        if op == "apply":
            answers.append(await store.apply(arg, now))  # type: ignore[arg-type]
        elif op == "ban":
            key, until = arg  # type: ignore[misc]
            answers.append(await store.ban(key, until, now))
        else:
            answers.append(await store.spend_once(arg, now + 60, now))  # type: ignore[arg-type]
    return answers


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_lua_script_answers_exactly_what_memory_answers(
        redis_store_factory: RedisStoreFactory, seed: int) -> None:
    ops = random_workload(seed)
    redis = redis_store_factory(local_cache_max=0)
    assert await run_workload(redis, ops) == await run_workload(MemoryStore(), ops)


@pytest.mark.parametrize("seed", [4, 5])
async def test_the_local_cache_gives_the_same_decisions_as_memory(
        redis_store_factory: RedisStoreFactory, seed: int) -> None:
    def decisions(answers: list[object]) -> list[object]:
        return [(a.banned_key, a.banned_until, a.refused, a.scores) if isinstance(a, BatchResult) else a
                for a in answers]

    ops = random_workload(seed)
    redis = redis_store_factory(local_cache_max=10_000)
    assert decisions(await run_workload(redis, ops)) == decisions(await run_workload(MemoryStore(), ops))
    assert redis.local_hits > 0

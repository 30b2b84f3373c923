"""The Redis store when Redis misbehaves: gone, hung, restarted, scripts flushed; and its local cache.

Each test has its own real redis-server, stopped, paused and restarted by pid.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from redis_server import RedisServer, start_or_fail
from scrapeshield.gcra import parse_rate
from scrapeshield.store.base import Batch, BucketCheck, ScoreUpdate, StoreError
from scrapeshield.store.memory import MemoryStore
from scrapeshield.store.redis import RedisStore, redact_url
from scrapeshield.store.resilient import ResilientStore

TIMEOUT = 0.25  # the production default is 0.05 s; more here, or a loaded CI machine times out spuriously
MARGIN = 0.5  # scheduling noise on a busy CI machine
NOW = 1_700_000_000.0

LIMIT = parse_rate("1/s burst 1")
BATCH = Batch(ban_keys=("ip:203.0.113.7",), buckets=(BucketCheck("rule", "ip:203.0.113.7", LIMIT),))


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    srv = start_or_fail(workdir=tmp_path_factory.mktemp("redis"))
    yield srv
    srv.close()


@pytest.fixture
async def store(server: RedisServer) -> AsyncIterator[RedisStore]:
    s = RedisStore.from_url(server.url, timeout=TIMEOUT, expiry_slack=600)
    yield s
    await s.close()


async def raises_store_error_within(seconds: float, call: object) -> StoreError:
    start = time.monotonic()
    with pytest.raises(StoreError) as info:
        await call  # type: ignore[misc]
    assert time.monotonic() - start < seconds
    return info.value


# -- a bare RedisStore ------------------------------------------------------------------------

async def test_a_killed_server_gives_store_error_fast(server: RedisServer, store: RedisStore) -> None:
    assert (await store.apply(BATCH, NOW)).refused == -1
    server.kill()
    for i in range(5):
        await raises_store_error_within(TIMEOUT + MARGIN, store.apply(BATCH, NOW + i))
    await raises_store_error_within(TIMEOUT + MARGIN, store.ban("ip:203.0.113.7", NOW + 60, NOW))
    await raises_store_error_within(TIMEOUT + MARGIN, store.spend_once("token", NOW + 60, NOW))
    assert store.status()["errors"] == 7


async def test_a_hung_server_gives_store_error_within_the_timeout(server: RedisServer, store: RedisStore) -> None:
    assert (await store.apply(BATCH, NOW)).refused == -1
    server.pause()
    try:
        errors = await asyncio.gather(*(raises_store_error_within(TIMEOUT + MARGIN, store.apply(BATCH, NOW))
                                        for _ in range(10)))
        assert f"no answer within {TIMEOUT:g}s" in str(errors[0])
    finally:
        server.resume()
    # The connections that timed out were dropped, so no late reply is taken for a new call's answer.
    assert (await store.spend_once("after-the-hang", NOW + 60, NOW)) is True
    assert (await store.apply(Batch(ban_keys=("ip:198.51.100.1",)), NOW)).banned_key is None


async def test_the_deadline_sweep_fails_a_hung_call_one_tick_after_its_timeout(server: RedisServer,
                                                                               store: RedisStore) -> None:
    """TIMEOUT is 5 ticks of the deadlines' 50 ms period: the calls have no timer of their own,
    and the tick cancels each one its timeout has passed, within a period of it."""
    assert (await store.apply(BATCH, NOW)).refused == -1
    lag = store._lag
    assert lag.SWEEP_ABOVE * lag.period <= TIMEOUT
    server.pause()
    try:
        start = time.monotonic()
        errors = await asyncio.gather(*(raises_store_error_within(TIMEOUT + MARGIN, store.apply(BATCH, NOW))
                                        for _ in range(5)))
        took = time.monotonic() - start
    finally:
        server.resume()
    assert f"no answer within {TIMEOUT:g}s" in str(errors[0])
    assert took >= TIMEOUT
    assert lag.swept == 5 and not lag._tracked
    assert (await store.apply(Batch(ban_keys=("ip:198.51.100.1",)), NOW)).banned_key is None


async def test_a_short_timeout_keeps_a_deadline_of_its_own(server: RedisServer) -> None:
    short = RedisStore.from_url(server.url, timeout=0.06, expiry_slack=600)
    try:
        assert (await short.apply(BATCH, NOW)).refused == -1
        server.pause()
        try:
            start = time.monotonic()
            error = await raises_store_error_within(0.06 + MARGIN, short.apply(BATCH, NOW))
            assert time.monotonic() - start >= 0.06
        finally:
            server.resume()
        assert "no answer within 0.06s" in str(error)
        assert short._lag.swept == 0
    finally:
        await short.close()


async def test_a_call_cancelled_by_its_caller_stays_cancelled(server: RedisServer, store: RedisStore) -> None:
    """Only the sweep's own cancellation becomes a StoreTimeout: a request whose client went away
    (its task cancelled) while Redis hung is cancelled, not counted as a Redis failure."""
    assert (await store.apply(BATCH, NOW)).refused == -1
    server.pause()
    try:
        task = asyncio.ensure_future(store.apply(BATCH, NOW))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        server.resume()
    assert store._lag.swept == 0 and not store._lag._tracked
    assert store.status()["errors"] == 0


async def test_an_unreachable_address_gives_store_error_fast(server: RedisServer) -> None:
    port = server.port
    server.kill()
    store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0", timeout=TIMEOUT)
    try:
        await raises_store_error_within(TIMEOUT + MARGIN, store.apply(BATCH, NOW))
    finally:
        await store.close()


async def test_a_restarted_server_is_used_again(server: RedisServer, store: RedisStore) -> None:
    await store.apply(BATCH, NOW)
    port = server.port
    server.stop()
    with pytest.raises(StoreError):
        await store.apply(BATCH, NOW)
    server.start()
    assert server.port == port
    assert (await store.apply(BATCH, NOW)).refused == -1  # a fresh server: nothing remembered


async def test_noscript_after_script_flush_is_handled(server: RedisServer, store: RedisStore) -> None:
    assert (await store.apply(BATCH, NOW)).refused == -1
    admin = aioredis.Redis.from_url(server.url)
    await admin.script_flush()
    assert (await store.apply(BATCH, NOW)).refused == -1  # burst 1: the second of two
    assert (await store.apply(BATCH, NOW)).refused == 0
    await admin.aclose()


async def test_unix_socket_urls_work(tmp_path_factory: pytest.TempPathFactory) -> None:
    srv = start_or_fail(workdir=tmp_path_factory.mktemp("redis-unix"), unix_socket=True)
    store = RedisStore.from_url(srv.unix_url, timeout=TIMEOUT)
    try:
        assert await store.spend_once("token", NOW + 60, NOW) is True
        assert await store.spend_once("token", NOW + 60, NOW) is False
    finally:
        await store.close()
        srv.close()


def test_status_never_shows_a_password() -> None:
    assert redact_url("redis://user:s3cret@cache:6379/0") == "redis://user:***@cache:6379/0"
    assert redact_url("redis://:s3cret@cache:6379/0") == "redis://:***@cache:6379/0"
    assert "s3cret" not in redact_url("unix:///run/redis.sock?db=0&password=s3cret")
    store = RedisStore.from_url("rediss://user:s3cret@cache.example:6380/2")
    assert "s3cret" not in str(store.status())


# -- the local cache --------------------------------------------------------------------------

async def test_a_locally_known_ban_is_answered_without_a_round_trip(store: RedisStore) -> None:
    await store.ban("ip:203.0.113.7", NOW + 60, NOW)
    trips = store.round_trips
    results = [await store.apply(BATCH, NOW + i * 0.1) for i in range(20)]
    assert {r.banned_key for r in results} == {"ip:203.0.113.7"}
    assert store.round_trips == trips
    assert store.local_hits == 20


async def test_a_ban_set_by_another_replica_is_cached_after_one_round_trip(server: RedisServer) -> None:
    one = RedisStore.from_url(server.url, timeout=TIMEOUT)
    two = RedisStore.from_url(server.url, timeout=TIMEOUT)
    try:
        await one.ban("ip:203.0.113.7", NOW + 60, NOW)
        trips = two.round_trips
        for i in range(10):
            assert (await two.apply(BATCH, NOW + i * 0.1)).banned_key == "ip:203.0.113.7"
        assert two.round_trips == trips + 1
    finally:
        await one.close()
        await two.close()


async def test_a_locally_cached_ban_is_confirmed_with_redis_now_and_then(server: RedisServer) -> None:
    store = RedisStore.from_url(server.url, timeout=TIMEOUT, local_ban_recheck=5.0)
    admin = aioredis.Redis.from_url(server.url)
    try:
        await store.ban("ip:203.0.113.7", NOW + 600, NOW)
        await admin.delete("ss:ban:ip:203.0.113.7")  # an operator lifts the ban
        assert (await store.apply(BATCH, NOW + 4)).banned_key == "ip:203.0.113.7"
        assert (await store.apply(BATCH, NOW + 5)).banned_key is None
    finally:
        await store.close()
        await admin.aclose()


async def test_an_over_limit_bucket_is_answered_locally_until_it_conforms(store: RedisStore) -> None:
    batch = Batch(buckets=(BucketCheck("rule", "ip:203.0.113.7", LIMIT),))  # interval 1 s, tolerance 1 s
    assert [(await store.apply(batch, NOW)).refused for _ in range(3)] == [-1, -1, 0]
    trips = store.round_trips

    local = [await store.apply(batch, NOW + 0.1 * i) for i in range(9)]  # TAT NOW+2: refused until NOW+1
    assert {r.refused for r in local} == {0}
    assert local[0].buckets[0].retry_after == pytest.approx(1.0)
    assert store.round_trips == trips

    assert (await store.apply(batch, NOW + 1.0)).refused == -1  # conforms again: asked Redis
    assert store.round_trips == trips + 1


async def test_a_batch_with_scores_always_goes_to_redis(store: RedisStore) -> None:
    batch = Batch(buckets=(BucketCheck("rule", "ip:203.0.113.7", LIMIT),),
                  scores=(ScoreUpdate("hits", "ip:203.0.113.7", 1.0, half_life=60.0),))
    results = [await store.apply(batch, NOW) for _ in range(5)]
    assert [r.refused for r in results] == [-1, -1, 0, 0, 0]
    assert [r.scores[0] for r in results] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert store.local_hits == 0


async def test_the_local_cache_can_be_turned_off(server: RedisServer) -> None:
    store = RedisStore.from_url(server.url, timeout=TIMEOUT, local_cache_max=0)
    try:
        await store.ban("ip:203.0.113.7", NOW + 60, NOW)
        for _ in range(3):
            assert (await store.apply(BATCH, NOW)).banned_key == "ip:203.0.113.7"
        assert store.round_trips == 4 and store.local_hits == 0
    finally:
        await store.close()


# -- ResilientStore ---------------------------------------------------------------------------

def outage_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test.store"]


async def test_resilient_store_falls_back_logs_once_and_recovers(
        server: RedisServer, store: RedisStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="test.store")
    changes: list[bool] = []
    shield = ResilientStore(store, MemoryStore(), "open", logging.getLogger("test.store"), on_change=changes.append)
    assert (await shield.apply(BATCH, NOW)).refused == -1 and not shield.degraded

    # when Redis goes away
    server.stop()
    start = time.monotonic()
    results = [await shield.apply(BATCH, NOW + 0.1 * i) for i in range(5)]
    # then requests are answered from local state, quickly, and the outage is logged once
    assert time.monotonic() - start < TIMEOUT + MARGIN
    assert [r.refused for r in results] == [-1, -1, 0, 0, 0]  # a fresh local bucket of burst 1
    assert shield.degraded and shield.outages == 1 and changes == [True]
    assert shield.last_error is not None and "redis" in shield.last_error
    logged = outage_records(caplog)
    assert len(logged) == 1 and "unavailable" in logged[0] and "fail: open" in logged[0]

    # while Redis is down, only one probe per second waits on it
    failed = shield.failed_calls
    await shield.apply(BATCH, NOW + 1.5)  # the probe
    await shield.apply(BATCH, NOW + 1.6)
    await shield.apply(BATCH, NOW + 1.7)
    assert shield.failed_calls == failed + 1

    # when Redis is back on the same port, the next probe finds it
    server.start()
    trips = store.round_trips
    await shield.apply(BATCH, NOW + 2.0)  # before the next probe is due
    assert store.round_trips == trips and shield.degraded
    await shield.apply(BATCH, NOW + 2.6)
    assert store.round_trips == trips + 1
    assert not shield.degraded and changes == [True, False]
    logged = outage_records(caplog)
    assert len(logged) == 2 and "answers again" in logged[1]

    # and calls go to Redis again
    await shield.apply(BATCH, NOW + 2.7)
    assert store.round_trips == trips + 2
    assert shield.status()["degraded"] is False and shield.status()["outages"] == 1


async def test_resilient_store_fail_closed_raises_at_once_during_an_outage(
        server: RedisServer, store: RedisStore) -> None:
    shield = ResilientStore(store, MemoryStore(), "closed", logging.getLogger("test.store"))
    await shield.apply(BATCH, NOW)
    server.kill()
    with pytest.raises(StoreError, match="fail: closed"):
        await shield.apply(BATCH, NOW)
    trips = store.round_trips
    for i in range(5):
        await raises_store_error_within(MARGIN, shield.apply(BATCH, NOW + 0.1 * i))
        await raises_store_error_within(MARGIN, shield.spend_once("token", NOW + 60, NOW))
    assert store.round_trips == trips  # nobody waited on the dead server
    assert shield.degraded and shield.fail_mode == "closed"


async def test_only_one_probe_is_in_flight_at_a_time(server: RedisServer, store: RedisStore) -> None:
    shield = ResilientStore(store, MemoryStore(), "open", logging.getLogger("test.store"))
    await shield.apply(BATCH, NOW)
    server.pause()
    try:
        for _ in range(shield.outage_after):  # timeouts in a row: the outage begins
            await shield.apply(BATCH, NOW)
        assert shield.degraded
        trips = store.round_trips
        start = time.monotonic()
        await asyncio.gather(*(shield.apply(BATCH, NOW + 1.5) for _ in range(20)))
        assert time.monotonic() - start < TIMEOUT + MARGIN
        assert store.round_trips == trips + 1
        assert shield.degraded
    finally:
        server.resume()


async def test_resilient_store_never_raises_when_failing_open(server: RedisServer, store: RedisStore) -> None:
    shield = ResilientStore(store, MemoryStore(), "open", logging.getLogger("test.store"))
    server.kill()
    await shield.ban("ip:203.0.113.7", NOW + 60, NOW)
    assert (await shield.apply(BATCH, NOW + 1)).banned_key == "ip:203.0.113.7"  # the local ban
    assert await shield.spend_once("token", NOW + 60, NOW) is True
    assert await shield.spend_once("token", NOW + 60, NOW) is False


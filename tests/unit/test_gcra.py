"""GCRA with nginx `limit_req` arithmetic, through the memory store, and the store's bounded state.

A bucket of rate r and burst b accepts, on an idle key, an instant burst of min(M, b + 1), and
over T seconds of steady excess about b + 1 + r*T requests -- the figures nginx documents.
"""
from __future__ import annotations

import asyncio

import pytest

from scrapeshield.clock import FakeClock
from scrapeshield.gcra import BucketLimit, conform, parse_rate
from scrapeshield.store.base import Batch, BucketCheck
from scrapeshield.store.memory import MemoryStore


def check(limit: BucketLimit, key: str = "ip=198.51.100.7", bucket_id: str = "b0") -> BucketCheck:
    return BucketCheck(bucket_id, key, limit)


def send(store: MemoryStore, clock: FakeClock, *checks: BucketCheck) -> bool:
    """One request through the store; True when every bucket accepted it."""
    return store.apply_now(Batch(buckets=checks), clock.now()).refused < 0


# -- burst on an idle key -------------------------------------------------------------------

@pytest.mark.parametrize(
    ("rate", "burst", "offered", "accepted"),
    [
        (1, 0, 5, 1),  # burst 0: one at a time, nginx smoothing
        (10, 0, 5, 1),
        (10, 5, 3, 3),  # fewer than the burst: all pass
        (10, 5, 6, 6),  # exactly b + 1
        (10, 5, 50, 6),
        (10, 20, 100, 21),
        (3, 7, 100, 8),  # an interval (1/3 s) that is not exact in binary
        (100, 99, 1000, 100),
    ],
)
def test_an_instant_burst_on_an_idle_key_accepts_min_of_offered_and_burst_plus_one(
    rate: int, burst: int, offered: int, accepted: int
) -> None:
    # given an idle key
    store, clock = MemoryStore(), FakeClock()
    limit = parse_rate(f"{rate}/s burst {burst}")
    # when `offered` requests arrive at the same instant
    got = sum(send(store, clock, check(limit)) for _ in range(offered))
    # then min(offered, burst + 1) pass
    assert got == accepted == min(offered, burst + 1)


# -- steady excess ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("rate", "burst", "seconds"),
    [
        (1, 0, 30),
        (2, 5, 20),
        (10, 0, 10),
        (10, 20, 10),
        (5, 10, 60),
    ],
)
def test_steady_excess_over_t_seconds_accepts_about_burst_plus_one_plus_rate_times_t(
    rate: int, burst: int, seconds: int
) -> None:
    # given an idle key and a client sending three times the rate
    store, clock = MemoryStore(), FakeClock()
    limit = parse_rate(f"{rate}/s burst {burst}")
    step = 1.0 / (3 * rate)
    # when it keeps that up for `seconds`
    got = 0
    for _ in range(3 * rate * seconds):
        got += send(store, clock, check(limit))
        clock.advance(step)
    # then about b + 1 + r*T requests pass (the last interval may or may not fit)
    expected = burst + 1 + rate * seconds
    assert expected - 1 <= got <= expected


def test_a_refused_request_does_not_consume_capacity() -> None:
    # given a bucket of 1/s, burst 0, whose one request was just spent
    store, clock = MemoryStore(), FakeClock()
    limit = parse_rate("1/s burst 0")
    assert send(store, clock, check(limit))
    # when a hundred requests are refused during the next second
    for _ in range(100):
        clock.advance(0.009)
        assert not send(store, clock, check(limit))
    # then the bucket conforms again exactly one interval after the accepted request
    clock.advance(1.0 - 100 * 0.009)
    assert send(store, clock, check(limit))


def test_a_refused_request_reports_when_it_would_conform() -> None:
    # given a bucket of 1/s, burst 0, just spent
    store, clock = MemoryStore(), FakeClock()
    limit = parse_rate("1/s burst 0")
    send(store, clock, check(limit))
    clock.advance(0.25)
    # when the next request is refused
    result = store.apply_now(Batch(buckets=(check(limit),)), clock.now())
    # then it says how long to wait and that nothing remains
    (state,) = result.buckets
    assert result.refused == 0
    assert not state.allowed
    assert state.remaining == 0
    assert state.retry_after == pytest.approx(0.75)


def test_an_accepted_request_reports_what_remains_of_the_burst() -> None:
    # given an idle bucket of 10/s burst 4 (five at once)
    store, clock = MemoryStore(), FakeClock()
    limit = parse_rate("10/s burst 4")
    # when two requests are accepted
    send(store, clock, check(limit))
    result = store.apply_now(Batch(buckets=(check(limit),)), clock.now())
    # then three remain and the bucket is full again after two intervals
    (state,) = result.buckets
    assert state.allowed and state.remaining == 3
    assert state.reset == pytest.approx(0.2)
    assert state.retry_after == 0.0


def test_different_keys_have_independent_buckets() -> None:
    store, clock = MemoryStore(), FakeClock()
    limit = parse_rate("1/s burst 0")
    assert send(store, clock, check(limit, key="ip=192.0.2.1"))
    assert send(store, clock, check(limit, key="ip=192.0.2.2"))
    assert not send(store, clock, check(limit, key="ip=192.0.2.1"))


# -- several buckets --------------------------------------------------------------------------

def test_a_request_consumes_from_every_bucket_or_from_none() -> None:
    # given a roomy bucket A (3 at once) and a tight bucket B (1 at once) on one key
    store, clock = MemoryStore(), FakeClock()
    roomy = check(parse_rate("3/s burst 2"), bucket_id="A")
    tight = check(parse_rate("1/s burst 0"), bucket_id="B")
    # when one request passes both, and four more are refused by B
    assert send(store, clock, roomy, tight)
    for _ in range(4):
        result = store.apply_now(Batch(buckets=(roomy, tight)), clock.now())
        assert result.refused == 1
    # then A was charged only for the request that passed: two of its three remain
    assert send(store, clock, roomy)
    assert send(store, clock, roomy)
    assert not send(store, clock, roomy)


def test_the_first_refusing_bucket_is_reported() -> None:
    store, clock = MemoryStore(), FakeClock()
    tight = check(parse_rate("1/s burst 0"), bucket_id="A")
    roomy = check(parse_rate("100/s burst 100"), bucket_id="B")
    send(store, clock, tight, roomy)
    result = store.apply_now(Batch(buckets=(tight, roomy)), clock.now())
    assert result.refused == 0
    assert [s.allowed for s in result.buckets] == [False, False]


def test_conform_leaves_the_state_alone_when_it_refuses() -> None:
    limit = parse_rate("1/s burst 0")
    assert conform(None, 100.0, limit) == pytest.approx(101.0)
    assert conform(101.0, 100.5, limit) is None
    assert conform(101.0, 101.0, limit) == pytest.approx(102.0)


# -- rate syntax ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "count", "period", "burst"),
    [
        ("10/s", 10, 1.0, 9),  # no burst: the whole count at once
        ("10/s burst 20", 10, 1.0, 20),
        ("10/s burst 0", 10, 1.0, 0),
        ("1000/h", 1000, 3600.0, 999),
        ("5/10s", 5, 10.0, 4),
        ("60/10m", 60, 600.0, 59),
        ("30/m burst 5", 30, 60.0, 5),
        ("2/d", 2, 86400.0, 1),
        ("  7/s   burst   3 ", 7, 1.0, 3),
    ],
)
def test_parse_rate_reads_count_period_and_burst(text: str, count: int, period: float, burst: int) -> None:
    assert parse_rate(text) == BucketLimit(count, period, burst)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must look like"),
        ("10/s burst", "must look like"),
        ("10/s bursts 5", "must look like"),
        ("10/s burst 5 extra", "must look like"),
        ("ten/s", "count must be a positive integer"),
        ("0/s", "count must be a positive integer"),
        ("-1/s", "count must be a positive integer"),
        ("10", "period must be s, m, h or d"),
        ("10/w", "period must be s, m, h or d"),
        ("10/0s", "period must be s, m, h or d"),
        ("10/1.5s", "period must be s, m, h or d"),
        ("10/s burst many", "burst must be a non-negative integer"),
        ("10/s burst -1", "burst must be a non-negative integer"),
    ],
)
def test_parse_rate_rejects_malformed_rates_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rate(text)


@pytest.mark.parametrize(
    ("text", "described"),
    [("10/s burst 20", "10/s burst 20"), ("1000/h", "1000/h burst 999"), ("5/10s", "5/10s burst 4")],
)
def test_a_limit_describes_itself_in_rate_syntax(text: str, described: str) -> None:
    assert parse_rate(text).describe() == described


# -- bounded state ----------------------------------------------------------------------------

def test_a_flood_of_unique_keys_never_tracks_more_than_max_keys() -> None:
    # given a store bounded to 1000 keys
    store, clock = MemoryStore(max_keys=1000), FakeClock()
    limit = parse_rate("1/h burst 5")
    # when 100k distinct clients arrive within one second
    for i in range(100_000):
        send(store, clock, check(limit, key=f"ip={i}"))
        if i % 1000 == 999:
            clock.advance(0.01)
    # then the store never holds more than its bound
    assert store.tracked_keys() == 1000


def test_idle_bucket_entries_are_swept_once_their_state_has_passed() -> None:
    # given 500 keys with one request each on a 1/s burst 1 bucket (idle again after 2 s)
    store, clock = MemoryStore(), FakeClock()
    limit = parse_rate("1/s burst 1")
    for i in range(500):
        send(store, clock, check(limit, key=f"ip={i}"))
    assert store.tracked_keys() == 500
    # when the clock passes their window and one new client arrives
    clock.advance(limit.window + 1.0)
    send(store, clock, check(limit, key="ip=new"))
    # then only the new client is still tracked
    assert store.tracked_keys() == 1


def test_a_sweep_keeps_entries_whose_state_is_still_live() -> None:
    # given one idle-soon key and one key far ahead of the clock
    store, clock = MemoryStore(), FakeClock()
    short, long = parse_rate("1/s burst 0"), parse_rate("1/h burst 0")
    send(store, clock, check(short, key="ip=a", bucket_id="s"))
    send(store, clock, check(long, key="ip=b", bucket_id="l"))
    # when a sweep runs after the short window
    clock.advance(5.0)
    send(store, clock)
    # then the long bucket still remembers its client
    assert store.tracked_keys() == 1
    assert not send(store, clock, check(long, key="ip=b", bucket_id="l"))


def test_expired_bans_are_swept() -> None:
    # given a ban that ends in ten seconds
    store, clock = MemoryStore(), FakeClock()
    asyncio.run(store.ban("ip=192.0.2.9", clock.now() + 10, clock.now()))
    assert store.status()["bans"] == 1
    # when the clock passes it and any request arrives
    clock.advance(11)
    send(store, clock)
    # then the ban is gone
    assert store.status()["bans"] == 0

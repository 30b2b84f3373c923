"""Detector state shared through the store: replicas on one store see what one process sees.

The store here is an in-process `MemoryStore` that answers like a networked one (no synchronous
answers), so the engine treats it as shared; the real Redis pair is tests/redis_e2e/test_shared_detectors.py.
"""
from __future__ import annotations

import random
import textwrap
from collections.abc import Callable

from scrapeshield.clock import FakeClock
from scrapeshield.detectors import REGULAR_TIMING, SEQUENTIAL_IDS, DetectorSet, Observation
from scrapeshield.detectors.mirror import LogMirrors
from scrapeshield.engine import Engine
from scrapeshield.facts import RequestFacts
from scrapeshield.policy.compiler import compile_bytes
from scrapeshield.store.base import Batch, BatchResult, LogAppend, LogRead, Logs
from scrapeshield.store.memory import MemoryStore

T0 = 1_700_000_000.0


class NetworkedMemoryStore(MemoryStore):
    """Memory answering only through coroutines, as Redis does: engines on it share detector logs."""

    @property
    def sync_apply(self) -> Callable[[Batch, float], BatchResult] | None:
        return None

    @property
    def sync_append_logs(self) -> Callable[[tuple[LogAppend, ...], float], Logs] | None:
        return None


def page(path: str, now: float, query: str = "") -> Observation:
    return Observation(path=path, query=query, method="GET", is_document=True, is_asset=False, now=now)


def feed(detectors: DetectorSet, key: str, obs: Observation, store: MemoryStore | None) -> dict[str, float]:
    ids = detectors.record_ids(obs)
    plan = detectors.log_plan(key, obs, ids)
    logs = store.append_logs_now(plan.appends, obs.now) if plan is not None and store is not None else ()
    return dict(detectors.observe_request(key, obs, ids, None, plan, logs))


def scraper_paths(rng: random.Random, n: int) -> list[tuple[str, str, float]]:
    """(path, query, gap): a walk with skips, reorders, a second series and a query shape."""
    out = []
    value = 5000
    for i in range(n):
        value += rng.choice([1, 1, 1, 2, -1, 3])
        if i % 7 == 3:
            out.append(("/item", f"id={value * 10}", rng.uniform(0.4, 0.6)))
        else:
            out.append((f"/user/{value}", "", rng.uniform(0.4, 0.6)))
    return out


def test_sequential_ids_and_regular_timing_are_the_same_on_two_replicas_sharing_logs_as_on_one() -> None:
    rng = random.Random(11)
    traffic = scraper_paths(rng, 60)
    one = DetectorSet()
    store = MemoryStore()
    replicas = [DetectorSet(shared=True), DetectorSet(shared=True)]
    t = T0
    seen = {SEQUENTIAL_IDS: 0.0, REGULAR_TIMING: 0.0}
    for i, (path, query, gap) in enumerate(traffic):
        alone = feed(one, "c", page(path, t, query), None)
        shared = feed(replicas[i % 2], "c", page(path, t, query), store)
        for name in seen:
            assert shared[name] == alone[name], (i, name)
            seen[name] = max(seen[name], alone[name])
        t += gap
    assert seen[SEQUENTIAL_IDS] > 0.5 and seen[REGULAR_TIMING] > 0  # the comparison saw both signals fire


def test_a_walk_pausing_longer_than_max_pause_starts_over_in_the_shared_log_too() -> None:
    store = MemoryStore()
    shared, local = DetectorSet(shared=True), DetectorSet()
    times = [T0 + i for i in range(10)] + [T0 + 200 + i for i in range(10)]  # 191 s pause > 120 s
    for i, t in enumerate(times):
        a = feed(shared, "c", page(f"/user/{100 + i}", t), store)[SEQUENTIAL_IDS]
        b = feed(local, "c", page(f"/user/{100 + i}", t), None)[SEQUENTIAL_IDS]
        assert a == b
    assert 0 < b < 1  # the second walk is 10 long, not 20


POLICY = textwrap.dedent("""\
    version: 1
    name: shared-detectors
    detectors: {key: ip}
    scores:
      - name: harvest
        key: ip
        half_life: 10m
        weights: {sequential_ids: 6, regular_timing: 3}
        thresholds:
          - {at: 30, action: challenge}
""").encode()


async def decisions(engines: list[Engine], clock: FakeClock, n: int) -> list[str]:
    out = []
    for i in range(n):
        facts = RequestFacts(peer_ip="203.0.113.9", path=f"/user/{1000 + i}", query="",
                             headers=(("Host", "shop.example"), ("Accept", "*/*")))
        out.append((await engines[i % len(engines)].decide(facts)).action.value)
        clock.advance(0.5)
    return out


async def test_a_scraper_alternating_between_two_engines_on_one_store_is_challenged_when_one_would_be() -> None:
    policy = compile_bytes(POLICY, "shared.yaml")
    clock = FakeClock(T0)
    one = await decisions([Engine(policy, MemoryStore(), clock)], clock, 30)

    store = NetworkedMemoryStore()
    clock = FakeClock(T0)
    pair = [Engine(policy, store, clock), Engine(policy, store, clock)]
    assert all(e.detectors is not None and e.detectors.shared for e in pair)
    assert await decisions(pair, clock, 30) == one
    assert "challenge" in one

    clock = FakeClock(T0)
    apart = [Engine(policy, MemoryStore(), clock), Engine(policy, MemoryStore(), clock)]
    assert await decisions(apart, clock, 30) != one  # the finding of #12: each on its own sees half


# -- a replica's mirror of one log ----------------------------------------------------------------

def mirrored(reads: list[LogRead]) -> list[str]:
    """The entries a mirror applied, in order, after the given store answers."""
    mirrors: LogMirrors[list[str]] = LogMirrors(16, 60)
    state: list[str] = []
    for read in reads:
        state = mirrors.apply("log", read, T0, list, list.append)
    return state


def test_a_mirror_applies_what_is_new_once_and_in_log_order() -> None:
    # its own append after another replica's two: the store answers the three since what it had seen
    assert mirrored([LogRead(2, ("a", "b"), True), LogRead(5, ("c", "d", "e"), False)]) == ["a", "b", "c", "d", "e"]
    # two concurrent requests answered out of order: the later answer covers the earlier one
    assert mirrored([LogRead(1, ("a",), True), LogRead(3, ("b", "c"), False), LogRead(2, ("b",), False)]) == \
        ["a", "b", "c"]


def test_a_mirror_rebuilds_from_a_whole_log() -> None:
    # fallen behind further than the log keeps, or the log began anew: the store sends it whole
    assert mirrored([LogRead(3, ("a", "b", "c"), True), LogRead(90, ("x", "y"), True)]) == ["x", "y"]
    assert mirrored([LogRead(40, ("a", "b"), True), LogRead(1, ("z",), True)]) == ["z"]


def test_a_mirror_asks_for_the_whole_log_after_hearing_nothing_for_its_ttl() -> None:
    mirrors: LogMirrors[list[str]] = LogMirrors(16, 60)
    mirrors.apply("log", LogRead(7, ("a",), True), T0, list, list.append)
    assert mirrors.seen("log", T0 + 59) == 7
    assert mirrors.seen("log", T0 + 60) == 0  # the log may have expired and begun anew
    assert mirrors.seen("other", T0) == 0

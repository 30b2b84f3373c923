"""cross_session_walk: one sequential walk over record ids spread over many sessions of one client
stack (or one network), and the crowds that must not look like one (docs/detectors.md)."""
from __future__ import annotations

import gc
import random
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scrapeshield.detectors import CROSS_SESSION_WALK, CrowdView, DetectorConfig, DetectorSet, Observation, crowd
from scrapeshield.detectors.crowd import CrossSessionWalk, CrowdEntry, CrowdIndex, CrowdRun
from scrapeshield.store.memory import MemoryStore

T0 = 1_700_000_000.0
STACK = "stack\x1ft13d1516h2_8daaf6152771_02713d6af862|chrome"


def record(path: str, now: float) -> Observation:
    return Observation(path=path, query="", method="GET", is_document=True, is_asset=False, now=now)


def signal(detectors: DetectorSet, who: str, path: str, now: float, net: str = "net\x1f198.51.100.0/24",
           store: MemoryStore | None = None) -> float:
    """One record request through the detectors as the engine sends it (shared logs if `store`)."""
    obs = record(path, now)
    ids = detectors.record_ids(obs)
    crowd = CrowdView(who, (STACK, net))
    plan = detectors.log_plan(who, obs, ids, crowd)
    logs = store.append_logs_now(plan.appends, now) if plan is not None and store is not None else ()
    return detectors.observe_request(who, obs, ids, crowd, plan, logs)[CROSS_SESSION_WALK]


def fleet_walk(start_id: int, records: int, per_session: int, t0: float,
               gap: float) -> Iterator[tuple[str, str, float]]:
    """(session, path, time): a fleet walking /user/N with a fresh session every `per_session` records."""
    for i in range(records):
        yield f"fleet-{i // per_session}", f"/user/{start_id + i}", t0 + i * gap


def crowd_browsing(rng: random.Random, people: int, minutes: float, t0: float) -> list[tuple[str, str, float]]:
    """People on one browser build, each opening a few random profiles among 100,000, spread over `minutes`."""
    visits = []
    for p in range(people):
        t = t0 + rng.uniform(0, minutes * 60)
        for _ in range(rng.randint(1, 6)):
            visits.append((f"person-{p}", f"/user/{rng.randint(1, 100_000)}", t))
            t += rng.uniform(2, 30)
    return sorted(visits, key=lambda v: v[2])


# -- the measure --------------------------------------------------------------------------------

def measure(walk: CrossSessionWalk, entries: list[CrowdEntry], now: float) -> CrowdRun:
    """The run through the last entry's id, the entries added to an index in order."""
    index = walk.new_index()
    for entry in entries:
        index.add(entry)
    return walk.measure(index, entries[-1][0], now)


def test_a_full_index_holds_no_object_for_the_garbage_collector_to_visit() -> None:
    """A full collection visits every object a tracked container holds; a crowd log's ids were
    once a list of int objects (a cache miss each, per collection). Now the index's entries and
    ids are two flat vectors holding no object, and compiled the index itself is not tracked
    (`acyclic`: the collector never visits it)."""
    index = CrowdIndex(128, 600.0)
    for i in range(200):  # full, wrapped and grown
        index.append(1_000_000 + 7919 * i, T0 + i, i)
    assert gc.is_tracked(index) is not crowd._COMPILED
    for part in (index.ring, index.slots, index.heads):
        assert not gc.is_tracked(part)
        assert [o for o in gc.get_referents(part) if not isinstance(o, type)] == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.integers(0, 30), st.sampled_from([0.0, 0.5, 3.0, 12.0, -4.0]),
                                    st.integers(0, 5)),
                          st.just(None)), max_size=200),
       st.integers(8, 24))
def test_an_index_holds_the_newest_entries_of_its_log_within_its_window(
        steps: list[tuple[int, float, int] | None], keep: int) -> None:
    """Given appends (a clock that also steps back) and expiries (None) in any order, the index holds
    what a plain log would: its last `keep` entries less those that expired from its front, in log
    order, every distinct id with how many of them hold it, and each id's chain leading through
    exactly its entries -- whether its ring wrapped, grew or was emptied."""
    index = CrowdIndex(keep, 10.0)
    log: list[CrowdEntry] = []
    now = T0
    for step in steps:
        if step is None:
            index.expire(now)
            while log and log[0][1] < now - 10.0:
                log.pop(0)
        else:
            value, dt, who = step
            now += dt
            index.append(value, now, who)
            log = [*log, (value, now, who)][-keep:]
        assert index.entries == log
        assert len(index) == len(log)
        assert list(index.ids) == sorted({v for v, _, _ in log})
        assert list(index.counts) == [sum(v == i for v, _, _ in log) for i in index.ids]
        for value in {v for v, _, _ in log} | {31}:  # each id's chain: its entries, newest first
            assert index.chain(value) == [e for e in reversed(log) if e[0] == value]
        copied = index.copy()
        assert copied.entries == log
        assert all(copied.chain(value) == index.chain(value) for value in index.ids)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.sampled_from([0.0, 1.0, 4.0, 30.0, -8.0]), st.integers(0, 9)),
                min_size=1, max_size=150),
       st.integers(2, 10), st.integers(1, 3))
def test_the_strength_of_a_request_just_added_is_the_same_with_the_position_append_gave(
        steps: list[tuple[int, float, int]], start: int, max_stride: int) -> None:
    """What the detectors do per record request (append, then `strength_at` told where the id went)
    says what `strength_at` says searching for it -- with entries expiring in between or not."""
    cross = CrossSessionWalk(window_s=20.0, keep=32, max_stride=max_stride, max_gap=2, min_sessions=2,
                             max_repeat_share=0.5, min_order_share=0.5, start=start, full=start + 6)
    hinted, searched = cross.new_index(), cross.new_index()
    now = T0
    for value, dt, who in steps:
        now += dt
        at = hinted.append(value, now, who)
        searched.append(value, now, who)
        assert hinted.ids[at] == value
        assert cross.strength_at(hinted, value, now, at) == cross.strength_at(searched, value, now)
        assert hinted.entries == searched.entries


def test_a_run_counts_distinct_ids_through_the_newest_id_and_the_sessions_that_fetched_them() -> None:
    walk = CrossSessionWalk(window_s=600, keep=128, max_stride=1000, max_gap=3, min_sessions=3,
                            max_repeat_share=0.5, min_order_share=0.8, start=8, full=24)
    entries: list[CrowdEntry] = [(1000 + i, T0 + i, i // 4) for i in range(12)]  # 3 sessions of 4
    entries += [(55_555, T0 + 13, 99), (1012, T0 + 14, 3)]
    run = measure(walk, entries, T0 + 14)
    assert (run.ids, run.sessions, run.repeat_share, run.order_share) == (13, 4, 0.0, 1.0)


def test_skipped_ids_and_strides_still_make_one_run() -> None:
    walk = CrossSessionWalk(window_s=600, keep=128, max_stride=1000, max_gap=3, min_sessions=3,
                            max_repeat_share=0.5, min_order_share=0.8, start=8, full=24)
    ids = [500, 510, 530, 540, 550, 580, 590]  # stride 10, holes of up to 3 strides (deleted records)
    run = measure(walk, [(v, T0, i) for i, v in enumerate(ids)], T0)
    assert run.ids == len(ids)
    assert measure(walk, [(v, T0, i) for i, v in enumerate([500, 510, 550])], T0).ids == 2  # 4 strides: a break


def test_requests_older_than_the_window_are_forgotten() -> None:
    walk = CrossSessionWalk(window_s=60, keep=128, max_stride=1000, max_gap=3, min_sessions=3,
                            max_repeat_share=0.5, min_order_share=0.8, start=8, full=24)
    entries: list[CrowdEntry] = [(1000 + i, T0 + i, i) for i in range(20)]
    assert measure(walk, entries, T0 + 19).ids == 20
    assert measure(walk, [*entries, (1020, T0 + 75, 20)], T0 + 75).ids == 6  # only 1015.. are within 60 s


# -- fleets -------------------------------------------------------------------------------------

def test_a_fleet_with_a_fresh_session_every_five_records_is_seen_within_its_first_thirty_records() -> None:
    detectors = DetectorSet()
    strengths = [signal(detectors, who, path, t) for who, path, t in fleet_walk(1001, 40, 5, T0, 1.5)]
    assert strengths[:8] == [0.0] * 8  # no evidence before the run is long enough
    assert 0 < strengths[10] < 1
    assert strengths[24:] == [1.0] * 16


def test_a_fleet_from_many_networks_is_seen_per_stack() -> None:
    detectors = DetectorSet()
    strengths = [signal(detectors, who, path, t, net=f"net\x1f10.{i}.0.0/24")
                 for i, (who, path, t) in enumerate(fleet_walk(1001, 30, 5, T0, 1.0))]
    assert strengths[-1] == 1.0


def test_a_fleet_walking_inside_a_crowd_of_the_same_browser_is_still_seen() -> None:
    rng = random.Random(7)
    traffic = crowd_browsing(rng, people=120, minutes=5, t0=T0)
    traffic += list(fleet_walk(40_001, 40, 4, T0 + 60, 3.0))
    detectors = DetectorSet()
    fleet = [signal(detectors, who, path, t) for who, path, t in sorted(traffic, key=lambda v: v[2])
             if who.startswith("fleet")]
    assert max(fleet) == 1.0


def test_one_client_walking_alone_is_left_to_sequential_ids() -> None:
    detectors = DetectorSet()
    strengths = [signal(detectors, "one-session", f"/user/{1000 + i}", T0 + i) for i in range(40)]
    assert max(strengths) == 0.0


# -- crowds ---------------------------------------------------------------------------------------

def test_a_crowd_on_one_browser_build_browsing_random_profiles_never_trips_it() -> None:
    rng = random.Random(1)
    detectors = DetectorSet()
    strengths = [signal(detectors, who, path, t) for who, path, t in crowd_browsing(rng, people=400, minutes=10,
                                                                                      t0=T0)]
    assert len(strengths) > 1000 and max(strengths) == 0.0


@pytest.mark.parametrize(("listed", "favour_the_top"), [(20, True), (50, False)])
def test_a_crowd_clicking_through_the_newest_profiles_is_not_a_walk(listed: int, favour_the_top: bool) -> None:
    """Many people opening the newest profiles (a listing of the latest ids) fetch near-sequential
    ids: but the same ones again and again, and in whatever order they click."""
    rng = random.Random(3)
    newest = [100_000 - i for i in range(listed)]
    weights = [1 / (rank + 1) if favour_the_top else 1.0 for rank in range(listed)]
    detectors = DetectorSet()
    strengths = []
    t = T0
    for person in range(300):
        for path_id in rng.choices(newest, weights, k=rng.randint(1, 4)):
            strengths.append(signal(detectors, f"person-{person}", f"/user/{path_id}", t))
            t += rng.uniform(0.2, 3)
    assert max(strengths) == 0.0


def test_a_fleet_of_parallel_workers_taking_blocks_of_ids_is_still_a_walk() -> None:
    """Four workers, each with its own session, fetching ids 1001.. in blocks of five at once."""
    rng = random.Random(5)
    detectors = DetectorSet()
    strengths = []
    for block in range(8):
        at = T0 + block * 2
        requests = [(f"worker-{block % 4}-{block}", 1001 + block * 5 + i, at + i * 0.3 + rng.uniform(0, 0.2))
                    for i in range(5)]
        for who, value, t in sorted(requests, key=lambda r: r[2]):
            strengths.append(signal(detectors, who, f"/user/{value}", t))
    assert strengths[-1] == 1.0


# -- shared through a store ---------------------------------------------------------------------------

def test_two_replicas_sharing_the_logs_see_the_walk_one_process_sees() -> None:
    traffic = list(fleet_walk(1001, 40, 5, T0, 1.0))
    one = DetectorSet()
    alone = [signal(one, who, path, t) for who, path, t in traffic]

    store = MemoryStore()  # the shared store (Redis behaves the same: tests/store/test_store_logs.py)
    replicas = [DetectorSet(shared=True), DetectorSet(shared=True)]
    pair = [signal(replicas[i % 2], who, path, t, store=store) for i, (who, path, t) in enumerate(traffic)]
    assert pair == alone

    unshared = [DetectorSet(), DetectorSet()]
    split = [signal(unshared[i % 2], who, path, t) for i, (who, path, t) in enumerate(traffic)]
    assert sum(split) < sum(alone)  # each replica on its own sees half the walk


def test_config_refuses_a_run_longer_than_its_log() -> None:
    try:
        DetectorConfig(cross_walk_keep=16, cross_walk_full=24)
    except ValueError as exc:
        assert "cross_walk_full must be <= cross_walk_keep" in str(exc)
    else:
        raise AssertionError("accepted")

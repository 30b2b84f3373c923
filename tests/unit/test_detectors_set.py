"""DetectorSet: the engine-facing surface, people vs harvesters end to end, and bounded state."""
from __future__ import annotations

import dataclasses
import random

import pytest

from scrapeshield.clock import FakeClock
from scrapeshield.detectors import (
    NO_ASSETS,
    REGULAR_TIMING,
    SEQUENTIAL_IDS,
    SIGNAL_NAMES,
    CrowdView,
    DetectorConfig,
    DetectorSet,
    Observation,
)
from scrapeshield.detectors.identities import DISTINCT, LEDGER
from scrapeshield.detectors.synthetic import browse, harvest, page_signals, person_pages, play

T0 = 1_700_000_000.0


def page(path: str, now: float, query: str = "") -> Observation:
    return Observation(path=path, query=query, method="GET", is_document=True, is_asset=False, now=now)


# -- surface -----------------------------------------------------------------------------------

def test_every_request_reports_all_signal_names_in_unit_range() -> None:
    signals = DetectorSet().observe_request("c", page("/user/1", T0))
    assert tuple(signals) == SIGNAL_NAMES
    assert all(0.0 <= v <= 1.0 for v in signals.values())


def test_asset_requests_report_zeros() -> None:
    detectors = DetectorSet()
    for i in range(40):
        detectors.observe_request("c", page(f"/user/{i}", T0 + i))
    signals = detectors.observe_request("c", Observation("/a.css", "", "GET", False, True, T0 + 41))
    assert set(signals.values()) == {0.0}


def test_observation_is_an_immutable_value() -> None:
    obs = page("/", T0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        obs.path = "/other"  # type: ignore[misc]


def test_a_disabled_detector_reports_zero_and_keeps_no_state() -> None:
    detectors = DetectorSet(DetectorConfig(sequence_enabled=False))
    for i in range(50):
        signals = detectors.observe_request("c", page(f"/user/{i}", T0 + i))
    assert signals[SEQUENTIAL_IDS] == 0.0
    assert "walks" not in detectors.describe("c")  # type: ignore[operator]


# -- people vs harvesters ----------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("bodies", [True, False], ids=["live", "replay"])
def test_a_person_browsing_is_never_flagged(seed: int, bodies: bool) -> None:
    # given a person: home, category, products with their assets, random profiles, pauses of seconds
    rng = random.Random(seed)
    events = browse(rng, person_pages(rng), T0)
    # then no signal ever rises above zero
    signals = play(DetectorSet(), "person", events, bodies=bodies)
    assert {name: max(s[name] for s in signals) for name in SIGNAL_NAMES} == dict.fromkeys(SIGNAL_NAMES, 0.0)


@pytest.mark.parametrize("seed", range(4))
def test_a_brisk_person_paging_quickly_is_not_flagged(seed: int) -> None:
    # given a person clicking through 40 pages with 1.5-6 s pauses
    rng = random.Random(seed)
    pages = [f"/product/{rng.choice(['a', 'b', 'c', 'd'])}-{rng.randint(1, 10**6)}" for _ in range(40)]
    events = browse(rng, pages, T0, pause=(1.5, 6.0))
    signals = play(DetectorSet(), "person", events)
    assert max(max(s.values()) for s in signals) == 0.0


def test_an_enumerating_harvester_is_flagged_on_three_signals_within_30_records() -> None:
    # given /user/1..150 at 1 per second, no assets
    events = harvest([f"/user/{i}" for i in range(1, 151)], T0, 1.0)
    signals = page_signals(events, play(DetectorSet(), "h", events))
    # then by the 30th record sequential_ids, no_assets and regular_timing are all at full strength
    for name in (SEQUENTIAL_IDS, NO_ASSETS, REGULAR_TIMING):
        assert all(s[name] == 1.0 for s in signals[29:100]), name


def test_a_slow_jittered_harvester_is_still_flagged_before_100_records() -> None:
    # given a polite harvester: one record every 3 +- 1.5 s, hitting holes (404) in the ID range
    missing = frozenset(f"/user/{i}" for i in range(1, 151) if i % 5 == 0)
    events = harvest([f"/user/{i}" for i in range(1, 151)], T0, 3.0, rng=random.Random(5), jitter=1.5,
                     missing=missing)
    signals = page_signals(events, play(DetectorSet(), "h", events))
    assert signals[40][SEQUENTIAL_IDS] == 1.0 and signals[40][NO_ASSETS] == 1.0


# -- bounded state -----------------------------------------------------------------------------

def test_a_flood_of_unique_identities_never_grows_past_max_keys() -> None:
    # given 100k identities, each sending one page; every 10th gets an HTML body with a unique ref
    detectors = DetectorSet(DetectorConfig(max_keys=5_000, assets_shared_max_refs=1_000))
    for i in range(100_000):
        key = f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}"
        detectors.observe_request(key, page(f"/user/{i}", T0 + i * 0.001))
        if i % 10 == 0:
            detectors.observe_response(key, 200, "text/html", b'<img src="/u/%d.png">' % i, T0 + i * 0.001)
    # then the identity table and the shared reference table are at their caps
    assert detectors.stats() == {"identities": 5_000, "shared_asset_refs": 1_000, "crowd_logs": 0,
                                  "crowd_log_entries": 0, "crowd_logs_expired": 0, "crowd_logs_evicted": 0}


def test_per_identity_state_is_capped_for_a_single_heavy_identity() -> None:
    config = DetectorConfig()
    detectors = DetectorSet(config)
    for i in range(3_000):
        detectors.observe_request("heavy", page(f"/t{i % 97}/x{i}/{i}", T0 + i * 0.01, query=f"id={i}"))
        detectors.observe_response("heavy", 200, "text/html",
                                   b"".join(b'<img src="/i/%d-%d.png">' % (i, j) for j in range(30)),
                                   T0 + i * 0.01)
        detectors.observe_request("heavy", Observation(f"/a/{i}.css", "", "GET", False, True, T0 + i * 0.01))
    st = detectors._table.get("heavy", T0 + 30)  # white-box: inspect the caps directly
    assert st is not None
    assert st.walks is not None and len(st.walks) <= config.sequence_max_series
    assert st.parts & DISTINCT and st.exact is None and st.sketch is not None  # switched to the sketch
    assert st.parts & LEDGER and len(st.pages or ()) <= config.assets_max_pending
    assert len(st.pending or b"") <= 4 * config.assets_max_pending * config.assets_max_refs
    assert len(st.known or ()) <= config.assets_known_cap


def test_idle_identities_are_forgotten_after_the_idle_ttl() -> None:
    clock = FakeClock(T0)
    config = DetectorConfig(idle_ttl_s=600.0)
    detectors = DetectorSet(config)
    for i in range(30):
        detectors.observe_request("h", page(f"/user/{i}", clock.now()))
        clock.advance(1.0)
    assert detectors.tracked_keys(clock.now()) == 1
    clock.advance(config.idle_ttl_s * 1.125 + 1)
    assert detectors.tracked_keys(clock.now()) == 0
    # and coming back starts from a clean slate
    assert detectors.observe_request("h", page("/user/31", clock.now()))[SEQUENTIAL_IDS] == 0.0


def test_an_active_identity_is_kept_past_the_idle_ttl() -> None:
    clock = FakeClock(T0)
    detectors = DetectorSet(DetectorConfig(idle_ttl_s=60.0))
    for i in range(300):
        detectors.observe_request("steady", page(f"/user/{i}", clock.now()))
        clock.advance(2.0)
    assert detectors.tracked_keys(clock.now()) == 1
    assert detectors.describe("steady")["walks"] == {"/user/{}#0": 300}  # type: ignore[index]


def test_clear_drops_all_state() -> None:
    detectors = DetectorSet()
    for i in range(30):
        detectors.observe_request(f"k{i}", page("/", T0))
        detectors.observe_response(f"k{i}", 200, "text/html", b'<img src="/a.png">', T0)
    detectors.clear()
    assert detectors.stats() == {"identities": 0, "shared_asset_refs": 0, "crowd_logs": 0,
                                  "crowd_log_entries": 0, "crowd_logs_expired": 0, "crowd_logs_evicted": 0}


# -- configuration -----------------------------------------------------------------------------

def test_defaults_are_valid() -> None:
    DetectorConfig()


def test_from_mapping_reports_every_unknown_field_and_wrong_type_at_once() -> None:
    with pytest.raises(ValueError) as e:
        DetectorConfig.from_mapping({"max_keyz": 5, "probe_window": "32", "timing_enabled": 1})
    message = str(e.value)
    assert "unknown field 'max_keyz'" in message
    assert "probe_window: expected int" in message
    assert "timing_enabled: expected bool" in message


def test_invalid_values_are_all_reported() -> None:
    with pytest.raises(ValueError) as e:
        DetectorConfig.from_mapping({"distinct_start": 200.0, "probe_statuses": "404,abc", "timing_cv_full": 0.5})
    message = str(e.value)
    assert "distinct_start < distinct_full" in message
    assert "probe_statuses" in message
    assert "timing_cv_full < timing_cv_start" in message


def test_from_mapping_accepts_ints_for_float_fields() -> None:
    assert DetectorConfig.from_mapping({"idle_ttl_s": 60}).idle_ttl_s == 60


def test_from_mapping_accepts_probe_statuses_as_a_list() -> None:
    config = DetectorConfig.from_mapping({"probe_statuses": [404, 410]})
    assert config.probe_status_set() == frozenset({404, 410})


# -- fork (explain on a live shield) -----------------------------------------------------------

def _busy_identity(detectors: DetectorSet, rng: random.Random, now: float, n: int) -> float:
    """`n` requests of one client that use every part of its state: two id series (a walks dict), a
    distinct count past its exact cap (a sketch), pages awaiting their assets, probe answers, timing
    gaps, and crowd logs of two scopes."""
    html = b"<html><link rel=stylesheet href=/s/a.css><img src=/i/b.png><script src=/j/c.js></script></html>"
    for i in range(n):
        now += rng.choice((0.2, 0.9, 3.0))
        if rng.random() < 0.2:
            detectors.observe_request("c", Observation(f"/i/{rng.randint(1, 9)}.png", "", "GET", False, True, now))
            continue
        if rng.random() < 0.5:
            path, query = f"/user/{1000 + i}", ""
        else:
            path, query = "/items", f"page={i % 7}"
        obs = Observation(path, query, "GET", True, False, now)
        ids = DetectorSet.record_ids(obs)
        crowd = CrowdView(f"s{i % 5}", ("stack\x1fchrome", "net\x1f198.51.100")) if ids else None
        detectors.observe_request("c", obs, ids, crowd)
        detectors.observe_response("c", rng.choice((200, 200, 404)), "text/html", html, now)
    return now


def test_a_fork_decides_like_the_original_and_changes_nothing_in_it() -> None:
    rng = random.Random(7)
    detectors = DetectorSet(DetectorConfig(distinct_exact_cap=16, cross_walk_keep=32, assets_grace_s=5.0))
    now = _busy_identity(detectors, rng, T0, 400)
    st = detectors._table.get("c", now)  # white box: every part in use, so every part is copied
    assert st is not None and isinstance(st.walks, dict) and st.sketch is not None and st.pages and st.probe
    before = detectors.describe("c")
    fork = detectors.fork("c")
    assert fork.describe("c") == before
    # The same requests on both: the same signals, so the copy holds everything the detectors read.
    seed = rng.random()
    twin = random.Random(seed), random.Random(seed)
    later = _busy_identity(detectors, twin[0], now, 1)
    assert _busy_identity(fork, twin[1], now, 1) == later
    for i in range(60):
        obs = Observation(f"/user/{2000 + i}", "", "GET", True, False, later + i)
        crowd = CrowdView("x", ("stack\x1fchrome", "net\x1f198.51.100"))
        ids = DetectorSet.record_ids(obs)
        assert dict(fork.observe_request("c", obs, ids, crowd)) == dict(detectors.observe_request("c", obs, ids, crowd))
    # ... and what the fork is fed stays in the fork.
    forked = detectors.fork("c")
    state = detectors.describe("c")
    _busy_identity(forked, random.Random(1), later + 100, 50)
    assert detectors.describe("c") == state != forked.describe("c")

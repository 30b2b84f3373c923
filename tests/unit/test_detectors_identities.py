"""The detectors' identity table (detectors/identities.py): bounded by count and idle time."""
from __future__ import annotations

import gc
import random

import pytest

from scrapeshield.detectors import CrowdView, DetectorConfig, DetectorSet, Observation, crowd
from scrapeshield.detectors.assets import AssetLedger, name_hash
from scrapeshield.detectors.distinct import DistinctWindow
from scrapeshield.detectors.identities import DISTINCT, LEDGER, TIMING, IdentityState, IdentityTable
from scrapeshield.detectors.timing import ArrivalGaps

T0 = 1_800_000_000.0


class State:
    def __init__(self) -> None:
        self.hits = 0


def test_a_live_identity_keeps_its_state_and_a_new_one_starts_afresh() -> None:
    table: IdentityTable[State] = IdentityTable(10, ttl=60.0)
    st, fresh = table.seen("a", T0, 10.0, State)
    st.hits += 1
    again, fresh_again = table.seen("a", T0 + 1, 10.0, State)
    assert (fresh, fresh_again, again is st, again.hits) == (True, False, True, 1)


def test_inserting_past_max_keys_evicts_the_least_recently_seen() -> None:
    table: IdentityTable[State] = IdentityTable(3, ttl=60.0)
    for i, key in enumerate("abc"):
        table.seen(key, T0 + i, 100.0, State)
    table.seen("a", T0 + 3, 100.0, State)  # a is now the most recently seen; b the least
    table.seen("d", T0 + 4, 100.0, State)
    assert len(table) == 3
    assert table.get("b", T0 + 4) is None
    assert all(table.get(k, T0 + 4) is not None for k in "acd")


def test_an_identity_is_forgotten_ttl_after_its_last_renewal_and_lookups_never_return_it() -> None:
    table: IdentityTable[State] = IdentityTable(10, ttl=60.0)
    st, _ = table.seen("a", T0, 10.0, State)
    table.seen("a", T0 + 5, 10.0, State)  # seen, not renewed (renewed 5 s ago < 10 s)
    assert table.renewed("a") == T0
    assert table.get("a", T0 + 59.9) is st
    assert table.get("a", T0 + 60) is None  # alive while now < renewed + ttl, as TTLCache
    st2, fresh = table.seen("a", T0 + 60, 10.0, State)
    assert fresh and st2 is not st


def test_renewing_pushes_the_ttl_back() -> None:
    table: IdentityTable[State] = IdentityTable(10, ttl=60.0)
    st, _ = table.seen("a", T0, 10.0, State)
    table.seen("a", T0 + 10, 10.0, State)  # 10 s since the last renewal: renewed
    assert table.renewed("a") == T0 + 10
    assert table.get("a", T0 + 65) is st


def test_expired_identities_are_swept_on_insert_and_counted_exactly() -> None:
    table: IdentityTable[State] = IdentityTable(100, ttl=60.0)
    for i in range(50):
        table.seen(f"old{i}", T0 + i * 0.1, 10.0, State)
    assert table.count(T0 + 30) == 50
    table.seen("late", T0 + 60.95, 10.0, State)  # old0..old9 (seen before T0+0.95) have expired
    assert len(table) == 50 - 10 + 1
    assert table.count(T0 + 60.95) == 41
    assert table.count(T0 + 120) == 1
    assert table.expire(T0 + 120) == 40
    assert len(table) == 1


def test_churn_past_the_bound_keeps_the_table_at_max_keys() -> None:
    table: IdentityTable[State] = IdentityTable(1_000, ttl=1e9)
    for i in range(20_000):
        table.seen(f"client-{i}", T0 + i, 1.0, State)
    assert len(table) == 1_000
    assert table.get("client-18999", T0 + 20_000) is None
    assert table.get("client-19000", T0 + 20_000) is not None
    table.clear()
    assert len(table) == 0 and table.get("client-19999", T0 + 20_000) is None


def test_max_keys_must_be_positive() -> None:
    with pytest.raises(ValueError):
        IdentityTable(0, ttl=1.0)


def test_the_detector_set_forgets_an_idle_identity_between_the_idle_ttl_and_nine_eighths_of_it() -> None:
    detectors = DetectorSet(DetectorConfig(idle_ttl_s=800.0))
    detectors.observe_request("a", Observation("/user/1", "", "GET", True, False, T0))
    assert detectors.tracked_keys(T0 + 800) == 1  # renewed at T0: alive until T0 + 900
    assert detectors.tracked_keys(T0 + 900) == 0
    assert detectors.describe("a") is None


def test_an_identitys_only_walk_kept_without_a_dict_measures_what_the_dict_does() -> None:
    from scrapeshield.detectors.sequence import SequentialIds, Walk, extract_ids

    config = DetectorConfig()
    detectors = DetectorSet(config)
    reference = SequentialIds(config.sequence_max_pause_s, config.sequence_max_stride, config.sequence_max_gap,
                              config.sequence_max_series, config.sequence_start, config.sequence_full)
    walks: dict[str, Walk] = {}
    paths = [f"/user/{1000 + i}" for i in range(30)] + ["/item/7/photo/3", "/user/1030", "/user/1031"]
    for i, path in enumerate(paths):
        obs = Observation(path, "", "GET", True, False, T0 + i)
        got = detectors.observe_request("walker", obs)["sequential_ids"]
        assert got == reference.observe(walks, extract_ids(path, ""), T0 + i), path
    assert detectors.describe("walker") is not None


# -- one object an identity ------------------------------------------------------------------------

_DISTINCT_FIELDS = ("start", "exact", "sketch", "previous")
_TIMING_FIELDS = ("gaps", "index", "count", "total", "total_sq", "last_t", "last_path")
_LEDGER_FIELDS = ("documents", "assets", "html_pages", "pages", "pending", "known", "known_old", "verdicts", "judged")


def _fields(obj: object, names: tuple[str, ...]) -> list[object]:
    out: list[object] = []
    for name in names:
        value = getattr(obj, name)
        out.append(vars(value) if hasattr(value, "__dict__") else
                   [getattr(value, s) for s in value.__slots__] if hasattr(value, "__slots__") else value)
    return out


def _slots(cls: type) -> set[str]:
    """A class's fields: its `__slots__`, or compiled (mypyc, which drops `__slots__`) its `__mypyc_attrs__`."""
    names = cls.__dict__.get("__slots__")
    return set(names if names is not None else cls.__dict__["__mypyc_attrs__"])


def test_the_inline_parts_begin_as_fresh_part_objects_and_hold_every_field_of_them() -> None:
    st = IdentityState()
    st.begin_distinct(T0)
    st.begin_timing(T0, 12345)
    st.begin_ledger()
    assert _fields(st, _DISTINCT_FIELDS) == _fields(DistinctWindow(T0), _DISTINCT_FIELDS)
    assert _fields(st, _TIMING_FIELDS) == _fields(ArrivalGaps(T0, 12345), _TIMING_FIELDS)
    assert _fields(st, _LEDGER_FIELDS) == _fields(AssetLedger(), _LEDGER_FIELDS)
    # a field added to a part but not to IdentityState would be missed: the names must match
    assert _slots(DistinctWindow) == set(_DISTINCT_FIELDS)
    assert _slots(ArrivalGaps) == set(_TIMING_FIELDS)
    assert _slots(AssetLedger) == set(_LEDGER_FIELDS)
    assert st.parts == DISTINCT | TIMING | LEDGER


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_detectors_measure_on_the_inline_parts_what_they_measure_on_part_objects(seed: int) -> None:
    rng = random.Random(seed)
    detectors = DetectorSet(DetectorConfig(distinct_exact_cap=16))  # reach the sketch too
    distinct, timing, assets = detectors._distinct, detectors._timing, detectors._assets  # white box
    assert distinct is not None and timing is not None and assets is not None
    st = IdentityState()
    now = T0
    st.begin_distinct(now)
    st.begin_timing(now, 1)
    st.begin_ledger()
    window, gaps, ledger = DistinctWindow(now), ArrivalGaps(now, 1), AssetLedger()
    sketched = judged = 0
    refs: list[int] = []
    for _ in range(3_000):
        now += 700.0 if rng.random() < 0.005 else rng.choice((0.0, 0.3, 2.0, 7.5, 40.0))
        path = rng.randint(1, 60)
        kind = rng.random()
        if kind < 0.4:
            assert distinct.observe(st, path, now) == distinct.observe(window, path, now)
            assert timing.observe(st, path, now) == timing.observe(gaps, path, now)
            assert assets.on_page_request(st, True, now) == assets.on_page_request(ledger, True, now)
        elif kind < 0.7:
            name = name_hash(f"{rng.choice(refs)}.png") if refs and rng.random() < 0.5 else rng.randint(1, 1 << 32)
            assets.on_asset_request(st, name, now)
            assets.on_asset_request(ledger, name, now)
        else:
            refs = [rng.randint(1, 100_000) for _ in range(rng.randint(0, 5))]
            body = b"".join(b'<img src="/i/%d.png">' % ref for ref in refs)
            assets.on_html(st, body, now)
            assets.on_html(ledger, body, now)
        assert distinct.count(st, now) == distinct.count(window, now)
        assert timing.cv(st) == timing.cv(gaps)
        assert assets.starved_share(st) == assets.starved_share(ledger)
        sketched += st.sketch is not None
        judged = st.judged
    assert sketched and judged  # the sketch and the verdicts were reached


@pytest.mark.skipif(not crowd._COMPILED, reason="a property of the compiled core (mypyc's acyclic classes)")
def test_compiled_an_identity_s_state_its_walks_and_the_crowd_logs_are_not_tracked_by_the_gc() -> None:
    """Every tracked object is visited by each full collection (and every one that survives
    counts toward the next): the detectors' per-identity state, walks, timing ring, distinct
    set and crowd logs hold no reference cycle, so compiled they are not tracked at all, and a
    dict of walks holds nothing the collector needs to see either."""
    detectors = DetectorSet(DetectorConfig())
    for i in range(40):
        obs = Observation(f"/user/{1000 + i}" if i % 2 else f"/item/{i}/photo/{i}", "", "GET", True, False, T0 + i)
        ids = detectors.record_ids(obs)
        detectors.observe_request("walker", obs, ids, CrowdView(f"s{i % 4}", ("stack\x1fa", "net\x1fb")))
    st = detectors._table.get("walker", T0 + 40)  # white box
    assert st is not None and isinstance(st.walks, dict) and st.gaps is not None and st.exact is not None
    assert not gc.is_tracked(st)
    assert not gc.is_tracked(st.walks)
    assert not any(gc.is_tracked(walk) for walk in st.walks.values())
    logs = detectors._crowd_logs.items()
    assert logs and not any(gc.is_tracked(mirror.state) for _, mirror in logs)

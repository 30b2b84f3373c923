"""The detectors' identity table (detectors/identities.py): bounded by count and idle time."""
from __future__ import annotations

import pytest

from scrapeshield.detectors import DetectorConfig, DetectorSet, Observation
from scrapeshield.detectors.identities import IdentityTable

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

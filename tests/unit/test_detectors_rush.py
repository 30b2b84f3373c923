"""record_rush: an identity's records read faster than a person reads them."""
from __future__ import annotations

import random

import pytest

from scrapeshield.detectors import RECORD_RUSH, DetectorConfig, DetectorSet, Observation
from scrapeshield.detectors.synthetic import browse, page_signals, person_pages, play

T0 = 1_700_000_000.0


def record(i: int, now: float, *, query: bool = False) -> Observation:
    if query:
        return Observation(path="/profile", query=f"id={i}", method="GET", is_document=True, is_asset=False, now=now)
    return Observation(path=f"/people/{i}", query="", method="GET", is_document=True, is_asset=False, now=now)


def rushes(detectors: DetectorSet, times: list[float], key: str = "c") -> list[float]:
    rng = random.Random(3)
    return [detectors.observe_request(key, record(rng.randrange(1, 10**6), t, query=rng.random() < 0.5))[RECORD_RUSH]
            for t in times]


def test_records_a_second_apart_rise_from_about_the_fourteenth_to_full_by_the_thirty_fifth() -> None:
    # random ids (no walk), about a second apart: what a fleet identity reads after faking a history
    rng = random.Random(1)
    times, t = [], T0
    for _ in range(40):
        times.append(t)
        t += rng.uniform(0.5, 1.5)
    signals = rushes(DetectorSet(), times)
    first = next(i for i, s in enumerate(signals) if s > 0)
    assert 11 <= first <= 16
    assert signals[34:] == [1.0] * 6


@pytest.mark.parametrize("seed", range(6))
def test_a_brisk_reader_of_records_never_rushes(seed: int) -> None:
    # a record every 3-9 s (ten a minute) for twenty-five minutes: faster than people read, never a signal
    rng = random.Random(seed)
    times, t = [], T0
    for _ in range(250):
        times.append(t)
        t += rng.uniform(3.0, 9.0)
    assert max(rushes(DetectorSet(), times)) == 0.0


def test_tabs_opened_at_once_are_a_weak_signal_and_fade() -> None:
    detectors = DetectorSet()
    signals = rushes(detectors, [T0] * 14)
    assert signals[:12] == [0.0] * 12 and 0 < max(signals) <= 0.2
    # a minute and a half later the count has decayed to an eighth: the next record is quiet
    assert rushes(detectors, [T0 + 90.0]) == [0.0]
    assert detectors.describe("c")["record_rush"] == pytest.approx(14 / 8 + 1, abs=0.1)  # type: ignore[index]


def test_only_record_requests_count_and_identities_are_apart() -> None:
    detectors = DetectorSet()
    for i in range(60):  # pages and assets without ids, a second apart
        detectors.observe_request("c", Observation(f"/category/{'abcdef'[i % 6]}", "", "GET", True, False, T0 + i))
        detectors.observe_request("c", Observation("/static/site.css", "", "GET", False, True, T0 + i))
    assert "record_rush" not in detectors.describe("c")  # type: ignore[operator]
    rushes(detectors, [T0 + 60 + i for i in range(30)], key="fleet")
    assert rushes(detectors, [T0 + 91.0], key="c") == [0.0]


@pytest.mark.parametrize("seed", range(4))
def test_a_person_browsing_with_assets_and_profiles_never_rushes(seed: int) -> None:
    rng = random.Random(seed)
    events = browse(rng, person_pages(rng), T0, pause=(1.0, 10.0))
    assert max(s[RECORD_RUSH] for s in page_signals(events, play(DetectorSet(), "p", events))) == 0.0


def test_disabled_it_reports_zero_and_keeps_nothing() -> None:
    detectors = DetectorSet(DetectorConfig(rush_enabled=False))
    assert max(rushes(detectors, [T0 + i * 0.2 for i in range(50)])) == 0.0
    assert "record_rush" not in detectors.describe("c")  # type: ignore[operator]


@pytest.mark.parametrize(("fields", "message"), [
    ({"rush_half_life_s": 0.0}, "rush_half_life_s must be > 0"),
    ({"rush_start": 20.0, "rush_full": 10.0}, "need 1 <= rush_start < rush_full"),
    ({"rush_start": 0.5}, "need 1 <= rush_start < rush_full"),
])
def test_bad_settings_are_refused(fields: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DetectorConfig.from_mapping(fields)

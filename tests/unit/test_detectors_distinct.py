"""many_distinct_resources: how many different things one identity touches."""
from __future__ import annotations

import random

from scrapeshield.clock import FakeClock
from scrapeshield.detectors import MANY_DISTINCT_RESOURCES, DetectorConfig, DetectorSet, Observation
from scrapeshield.detectors.distinct import DistinctResources, HyperLogLog, resource_hash


def request(path: str, now: float, *, document: bool = True, query: str = "") -> Observation:
    return Observation(path=path, query=query, method="GET", is_document=document, is_asset=False, now=now)


def test_harvesting_new_pages_fires_by_the_full_threshold() -> None:
    # given a client fetching a new slug page every second
    detectors, clock = DetectorSet(), FakeClock()
    strengths = []
    for i in range(160):
        strengths.append(detectors.observe_request("c", request(f"/p/name-{i * 7919 % 100_003}", clock.now()))
                         [MANY_DISTINCT_RESOURCES])
        clock.advance(1.0)
    # then nothing below 60 distinct, full at 150
    assert strengths[59] == 0.0
    assert 0.0 < strengths[100] < 1.0
    assert strengths[149] == 1.0


def test_revisiting_the_same_pages_does_not_count() -> None:
    detectors, clock = DetectorSet(), FakeClock()
    pages = ["/", "/category/a", "/product/x", "/product/y", "/cart"]
    for i in range(500):
        signals = detectors.observe_request("c", request(pages[i % 5], clock.now()))
        clock.advance(0.5)
    assert signals[MANY_DISTINCT_RESOURCES] == 0.0
    assert detectors.describe("c")["distinct_resources"] == 5.0  # type: ignore[index]


def test_query_strings_make_resources_distinct() -> None:
    detectors, clock = DetectorSet(), FakeClock()
    for i in range(200):
        detectors.observe_request("c", request("/search", clock.now(), query=f"q=term{i}"))
        clock.advance(1.0)
    assert detectors.describe("c")["distinct_resources"] == 200.0  # type: ignore[index]


def test_document_scope_ignores_api_calls() -> None:
    detectors = DetectorSet(DetectorConfig(distinct_scope="document"))
    for i in range(200):
        signals = detectors.observe_request("spa", request(f"/api/item/{i}", float(i), document=False))
    assert signals[MANY_DISTINCT_RESOURCES] == 0.0


def test_the_window_slides_so_old_resources_fade_out() -> None:
    detector = DistinctResources(window_s=100.0, exact_cap=256, precision=8, start=10, full=20)
    w = detector.new_state(0.0)
    for i in range(40):
        detector.observe(w, resource_hash(f"/p/{i}"), float(i))
    assert detector.count(w, 40.0) == 40.0
    # half-way through the next window, half of the previous window still counts
    detector.observe(w, resource_hash("/p/new"), 150.0)
    assert detector.count(w, 150.0) == 1 + 40 * 0.5
    # two windows later, nothing of it
    detector.observe(w, resource_hash("/p/newer"), 400.0)
    assert detector.count(w, 400.0) == 1.0


def test_beyond_the_exact_cap_a_sketch_keeps_counting_in_bounded_memory() -> None:
    detector = DistinctResources(window_s=3600.0, exact_cap=64, precision=8, start=10, full=20)
    w = detector.new_state(0.0)
    for i in range(5000):
        detector.observe(w, resource_hash(f"/record/{i}"), 0.0)
    assert w.exact is None and w.sketch is not None
    assert abs(detector.count(w, 0.0) - 5000) / 5000 < 0.2


def test_hyperloglog_estimates_within_its_standard_error() -> None:
    rng = random.Random(7)
    for n in (10, 300, 20_000):
        sketch = HyperLogLog(10)
        for _ in range(n):
            sketch.add(rng.getrandbits(32))
        assert abs(sketch.estimate() - n) / n < 0.1

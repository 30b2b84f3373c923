"""probe_rate: share of 400/403/404/410 answers among an identity's recent responses."""
from __future__ import annotations

from scrapeshield.detectors import PROBE_RATE, DetectorSet, Observation


def page(now: float) -> Observation:
    return Observation(path="/x", query="", method="GET", is_document=True, is_asset=False, now=now)


def respond(detectors: DetectorSet, statuses: list[int], *, is_asset: bool = False) -> float:
    for i, status in enumerate(statuses):
        detectors.observe_response("c", status, "text/html", None, float(i), is_asset=is_asset)
    return detectors.observe_request("c", page(float(len(statuses))))[PROBE_RATE]


def test_mostly_not_found_answers_fire() -> None:
    # given an enumerator hitting holes in an ID range: half of its requests 404
    assert respond(DetectorSet(), [404, 200] * 16) >= 0.75


def test_an_occasional_not_found_does_not_fire() -> None:
    assert respond(DetectorSet(), [200] * 30 + [404, 403]) == 0.0


def test_no_signal_before_enough_responses() -> None:
    assert respond(DetectorSet(), [404] * 7) == 0.0
    assert respond(DetectorSet(), [404] * 8) == 1.0


def test_only_the_last_window_of_responses_counts() -> None:
    # given an early burst of 404s followed by a full window of 200s
    assert respond(DetectorSet(), [404] * 50 + [200] * 32) == 0.0


def test_other_errors_are_not_probes() -> None:
    assert respond(DetectorSet(), [500, 502, 429, 301] * 8) == 0.0


def test_broken_images_on_a_page_are_not_the_visitors_probes() -> None:
    detectors = DetectorSet()
    respond(detectors, [404] * 20, is_asset=True)
    assert respond(detectors, [200] * 8) == 0.0

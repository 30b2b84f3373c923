"""regular_timing: requests spaced too evenly to be a person reading pages."""
from __future__ import annotations

import random

from scrapeshield.detectors import REGULAR_TIMING, DetectorSet, Observation
from scrapeshield.detectors.timing import RegularTiming


def request(path: str, now: float, *, asset: bool = False, document: bool = True) -> Observation:
    return Observation(path=path, query="", method="GET", is_document=document and not asset, is_asset=asset,
                       now=now)


def times_to_strengths(times: list[float], detectors: DetectorSet | None = None) -> list[float]:
    detectors = detectors or DetectorSet()
    return [detectors.observe_request("c", request(f"/p/{i}", t))[REGULAR_TIMING] for i, t in enumerate(times)]


def test_a_fixed_sleep_loop_fires_after_min_samples() -> None:
    # given a loop with sleep(1) and a little network jitter
    rng = random.Random(1)
    times = [i * 1.0 + rng.uniform(0, 0.05) for i in range(30)]
    strengths = times_to_strengths(times)
    # then: 8 gaps need 9 requests
    assert strengths[7] == 0.0
    assert strengths[8] == 1.0


def test_a_jittered_loop_gets_a_partial_signal() -> None:
    # given sleep(uniform(1, 3)): CV about 0.29, between cv_full 0.15 and cv_start 0.35
    rng = random.Random(3)
    t, times = 0.0, []
    for _ in range(40):
        times.append(t)
        t += rng.uniform(1.0, 3.0)
    strengths = times_to_strengths(times)[8:]
    assert min(strengths) > 0.0 and max(strengths) < 1.0


def test_a_person_reading_pages_does_not_fire() -> None:
    # given brisk reading: log-normal pauses around 3 s
    rng = random.Random(3)
    t, times = 0.0, []
    for _ in range(60):
        times.append(t)
        t += rng.lognormvariate(1.0, 0.6)
    assert max(times_to_strengths(times)) == 0.0


def test_slow_regular_requests_do_not_fire() -> None:
    # given a steady 10 s cadence: regular, but slower than timing_max_mean_s
    assert max(times_to_strengths([i * 10.0 for i in range(40)])) == 0.0


def test_a_burst_of_evenly_spaced_assets_is_not_sampled() -> None:
    # given a person opening a gallery page that loads 40 thumbnails 20 ms apart, three times
    detectors = DetectorSet()
    strengths = []
    for n, start in enumerate((0.0, 9.0, 23.0)):
        strengths.append(detectors.observe_request("c", request(f"/gallery/{n}", start))[REGULAR_TIMING])
        for i in range(40):
            detectors.observe_request("c", request(f"/thumbs/{n}-{i}.jpg", start + 0.2 + i * 0.02, asset=True))
    assert detectors.describe("c")["timing_samples"] == 2  # type: ignore[index]
    assert max(strengths) == 0.0


def test_a_tab_polling_one_endpoint_does_not_fire() -> None:
    detectors = DetectorSet()
    for i in range(100):
        s = detectors.observe_request("c", request("/api/notifications", i * 2.0, document=False))
    assert s[REGULAR_TIMING] == 0.0


def test_running_sums_stay_exact_over_many_ring_wraps() -> None:
    detector = RegularTiming(samples=16, min_samples=8, max_mean_s=5.0, cv_start=0.35, cv_full=0.15)
    state = detector.new_state(0.0, hash("/0"))
    rng, t = random.Random(4), 0.0
    for i in range(1, 100_000):
        t += rng.uniform(0.1, 4.0) if i < 99_000 else 1.0
        detector.observe(state, hash(f"/{i}"), t)
    # the last 16 gaps are all exactly 1 s
    assert detector.cv(state) is not None and detector.cv(state) < 1e-6  # type: ignore[operator]

"""sequential_ids: one client walking record IDs in order."""
from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from scrapeshield.clock import FakeClock
from scrapeshield.detectors import SEQUENTIAL_IDS, DetectorConfig, DetectorSet, Observation
from scrapeshield.detectors.sequence import SequentialIds, Walk, extract_ids


def page(path: str, now: float, query: str = "") -> Observation:
    return Observation(path=path, query=query, method="GET", is_document=True, is_asset=False, now=now)


def walk(paths: list[str], clock: FakeClock, detectors: DetectorSet, every: float = 1.0) -> list[float]:
    strengths = []
    for p in paths:
        path, _, query = p.partition("?")
        strengths.append(detectors.observe_request("client", page(path, clock.now(), query))[SEQUENTIAL_IDS])
        clock.advance(every)
    return strengths


def first_full(strengths: list[float]) -> int:
    """1-based record number at which the signal first reaches 1.0."""
    return next(i + 1 for i, s in enumerate(strengths) if s >= 1.0)


def test_ascending_walk_fires_well_before_100_records() -> None:
    # given a client pulling /user/1..150 at one per second
    strengths = walk([f"/user/{i}" for i in range(1, 151)], FakeClock(), DetectorSet())
    # then the signal is full by the 20th record and stays there
    assert first_full(strengths) == 20
    assert min(strengths[19:]) == 1.0


def test_signal_ramps_from_start_to_full_run_length() -> None:
    strengths = walk([f"/user/{i}" for i in range(1, 21)], FakeClock(), DetectorSet())
    # defaults: 0 up to a run of 5, 1 at 20
    assert strengths[4] == 0.0
    assert 0.0 < strengths[5] < strengths[10] < 1.0


def test_descending_walk_fires() -> None:
    strengths = walk([f"/user/{i}" for i in range(5000, 4900, -1)], FakeClock(), DetectorSet())
    assert first_full(strengths) == 20


def test_strided_walk_fires() -> None:
    strengths = walk([f"/article/{i}" for i in range(1000, 3000, 10)], FakeClock(), DetectorSet())
    assert first_full(strengths) == 20


def test_ids_in_query_values_fire() -> None:
    strengths = walk([f"/item?id={i}&lang=en" for i in range(300, 400)], FakeClock(), DetectorSet())
    assert first_full(strengths) == 20


def test_ids_embedded_in_segment_names_fire() -> None:
    strengths = walk([f"/archive/item-{i}.html" for i in range(1, 60)], FakeClock(), DetectorSet())
    assert first_full(strengths) == 20


def test_skipped_ids_do_not_break_the_walk() -> None:
    # given a walk that skips every third ID (deleted records the harvester already knows about)
    ids = [i for i in range(1, 100) if i % 3]
    strengths = walk([f"/user/{i}" for i in ids], FakeClock(), DetectorSet())
    assert first_full(strengths) == 20


def test_out_of_order_requests_from_concurrent_workers_still_count() -> None:
    # given 4 workers finishing in shuffled order within each batch of 4
    order = [1001, 1003, 1002, 1004, 1006, 1005, 1008, 1007]
    ids = [i + 8 * batch for batch in range(10) for i in order]
    strengths = walk([f"/user/{i}" for i in ids], FakeClock(), DetectorSet(), every=0.25)
    assert first_full(strengths) == 20


def test_reloading_the_same_record_neither_extends_nor_breaks_the_walk() -> None:
    detectors, clock = DetectorSet(), FakeClock()
    walk([f"/user/{i}" for i in range(1, 11)], clock, detectors)
    before = walk(["/user/10"], clock, detectors)
    after = walk(["/user/10", "/user/11"], clock, detectors)
    assert before[0] == after[0]
    assert after[1] > after[0]


def test_random_record_views_do_not_form_a_walk() -> None:
    ids = [48213, 1022, 77310, 5120, 66001, 23, 9001, 41234, 41240, 12]
    strengths = walk([f"/user/{i}" for i in ids], FakeClock(), DetectorSet(), every=7.0)
    assert max(strengths) == 0.0


def test_a_long_pause_ends_the_walk() -> None:
    detectors, clock = DetectorSet(), FakeClock()
    walk([f"/user/{i}" for i in range(1, 15)], clock, detectors)
    clock.advance(DetectorConfig().sequence_max_pause_s + 1)
    # when the walk resumes after the pause, it counts from scratch
    assert walk(["/user/15"], clock, detectors) == [0.0]


def test_each_id_position_of_a_template_is_its_own_series() -> None:
    # given one user's photos walked 1..30: the user position is constant, the photo position walks
    strengths = walk([f"/user/77/photos/{i}" for i in range(1, 31)], FakeClock(), DetectorSet())
    assert first_full(strengths) == 20


def test_interleaved_templates_keep_separate_walks() -> None:
    paths = [p for i in range(1, 31) for p in (f"/user/{i}", f"/user/{i}/followers", f"/post/{9000 - i}")]
    strengths = walk(paths, FakeClock(), DetectorSet(), every=0.3)
    assert first_full(strengths) <= 3 * 20


def test_asset_requests_are_not_walks() -> None:
    # given a gallery page whose thumbnails are numbered: a browser loads them in order
    detectors = DetectorSet()
    signals = [
        detectors.observe_request(
            "browser", Observation(f"/thumbs/{i}.jpg", "", "GET", is_document=False, is_asset=True, now=float(i)))
        for i in range(100)
    ]
    assert max(s[SEQUENTIAL_IDS] for s in signals) == 0.0


def test_series_per_identity_are_capped() -> None:
    detector = SequentialIds(max_pause_s=60, max_stride=1000, max_gap=3, max_series=4, start=5, full=20)
    walks: dict[str, Walk] = {}
    for i in range(50):
        detector.observe(walks, extract_ids(f"/t{chr(97 + i % 26)}{i}/1", ""), float(i))
    assert len(walks) == 4


def test_extract_ids_builds_templates_from_numeric_segments_and_query_values() -> None:
    assert extract_ids("/user/1001/photos/3", "") == [("/user/{}/photos/{}#0", 1001), ("/user/{}/photos/{}#1", 3)]
    assert extract_ids("/item-42.html", "") == [("/item-{}.html#0", 42)]
    assert extract_ids("/item", "id=7&q=shoes&page=2") == [("/item?id", 7), ("/item?page", 2)]


def test_extract_ids_ignores_hashes_uuids_and_pages_without_digits() -> None:
    assert extract_ids("/products/blue-shoes", "q=red") == []
    assert extract_ids("/doc/3f2a9c1e-77b0-4c1d-9a0e-5d2c6b1a0f44", "") == []
    assert extract_ids("/2024-06-15/post", "") == []


# The rule a path segment follows, as a regex: one run of 1-15 ASCII digits with at most 32 other
# characters before and after it is an id; a segment with digits in any other shape is `*`.
_ID_SEGMENT_SPEC = re.compile(r"([^0-9]{0,32})([0-9]{1,15})([^0-9]{0,32})")


@given(st.text(alphabet="0123456789ab-._%\u0663\u00b2\u00e9", max_size=70))
def test_a_path_segment_is_an_id_exactly_when_it_has_the_shape_of_one(segment: str) -> None:
    ids = extract_ids("/t/" + segment, "")
    spec = _ID_SEGMENT_SPEC.fullmatch(segment)
    if spec is not None:
        assert ids == [(f"/t/{spec[1]}{{}}{spec[3]}#0", int(spec[2]))]
    else:
        assert ids == []


def test_an_id_s_prefix_and_suffix_are_at_most_32_characters_and_its_digits_at_most_15() -> None:
    assert extract_ids("/" + "x" * 32 + "7" + "y" * 32, "") == [("/" + "x" * 32 + "{}" + "y" * 32 + "#0", 7)]
    assert extract_ids("/" + "x" * 33 + "7/8", "") == [("/*/{}#0", 8)]
    assert extract_ids("/7" + "y" * 33 + "/8", "") == [("/*/{}#0", 8)]
    assert extract_ids("/p" + "1" * 15, "") == [("/p{}#0", int("1" * 15))]
    assert extract_ids("/p" + "1" * 16 + "/8", "") == [("/*/{}#0", 8)]
    assert extract_ids("/v2-3/8", "") == [("/*/{}#0", 8)]  # two runs in one segment

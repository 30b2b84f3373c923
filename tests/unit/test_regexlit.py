"""Literal text a regular expression needs, read by our own parser (no `re` internals)."""
from __future__ import annotations

import re

import pytest

from scrapeshield.regexlit import anchored_first_segments, parse, required_literals

SEGMENT_CASES = [
    (r"^/api/", {"api"}),
    (r"^/(a|b)/x", {"a", "b"}),
    (r"^/user/\d+$", {"user"}),
    (r"^/a$", {"a", "a\n"}),  # `$` also matches before a final newline
    (r"\A/x\Z", {"x"}),
    (r"^/[ab]c/", {"ac", "bc"}),
    (r"^/(?P<kind>foo|bar)/", {"foo", "bar"}),
    (r"^/a/|^/b\Z", {"a", "b"}),
    (r"^/\./", {"."}),
    (r"^/api", None),  # the segment may go on: /apiary
    (r"(?i)^/a/", None),
    (r"^/a.b/", None),
    (r"^/[a-z]/", None),
    (r"^/[\.-z]/", None),  # a range, even after an escape
    (r"^/x{2}/", None),
    (r"/api/", None),  # not anchored
]


@pytest.mark.parametrize(("pattern", "segments"), SEGMENT_CASES, ids=[c[0] for c in SEGMENT_CASES])
def test_anchored_first_segments_are_exactly_what_the_pattern_can_start_with(
        pattern: str, segments: set[str] | None) -> None:
    found = anchored_first_segments(pattern)
    assert found == (frozenset(segments) if segments is not None else None)
    # and the claim holds: a path the pattern matches starts with one of the segments
    if found:
        for seg in found:
            assert any(re.search(pattern, f"/{seg}{tail}") for tail in ("", "/", "/1", "/x"))


def test_required_literals_are_contained_in_every_match() -> None:
    assert required_literals(r"Googlebot/\d+\.\d+|bingbot") == ["Googlebot/", "bingbot"]
    assert required_literals(r"x(?=y)abc") is None  # look-arounds are not understood: no claim
    assert required_literals(r"ab+cdef") == ["cdef"]  # a repeat breaks the run after it


def test_what_the_parser_does_not_understand_gives_no_answer() -> None:
    for pattern in (r"(a)\1", r"(?<=a)b", "[unterminated", "a{", r"(?x) a"):
        assert parse(pattern) is None

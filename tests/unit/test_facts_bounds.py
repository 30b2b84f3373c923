"""Hostile header values resolve to a value within bounded time, never to an error."""
from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scrapeshield.challenge.clearance import cookie_values
from scrapeshield.facts import MAX_COOKIES, RequestFacts, parse_cookie_header


def test_a_cookie_header_is_read_as_browsers_send_it() -> None:
    assert parse_cookie_header('a=1; b="two";c=3 ; a=later; =x; novalue; d=') == {
        "a": "1", "b": "two", "c": "3", "d": ""}


def test_one_odd_pair_does_not_hide_the_other_cookies() -> None:
    facts = RequestFacts(peer_ip="192.0.2.1", headers=[("Cookie", 'x="\\\\\\"; sid=abc; \x00bad')])
    assert facts.cookies["sid"] == "abc"


@pytest.mark.parametrize("header", [
    "; ".join(f"c{i}=v{i}" for i in range(5000)),  # thousands of cookies
    "a=" + "x" * 100_000,  # one 100 KB cookie
    'a="' + "\\" * 100_000 + '"',  # quadratic for http.cookies before 3.12.6
    ";" * 100_000,
])
def test_a_hostile_cookie_header_is_parsed_quickly_into_at_most_max_cookies(header: str) -> None:
    t0 = time.perf_counter()
    cookies = RequestFacts(peer_ip="192.0.2.1", headers=[("Cookie", header)]).cookies
    values = cookie_values(header, "a")
    assert time.perf_counter() - t0 < 0.5  # generous: linear work on 100 KB takes about a millisecond
    assert len(cookies) <= MAX_COOKIES
    assert len(values) <= 4


def test_the_first_cookies_of_a_stuffed_header_are_still_read() -> None:
    header = "sid=abc; " + "; ".join(f"c{i}=v" for i in range(5000))
    assert RequestFacts(peer_ip="192.0.2.1", headers=[("Cookie", header)]).cookies["sid"] == "abc"


def test_many_repeated_headers_join_in_linear_time() -> None:
    headers = [("X-Junk", "y" * 10)] * 100_000 + [("Cookie", "a=1")] * 1000
    t0 = time.perf_counter()
    hmap = RequestFacts(peer_ip="192.0.2.1", headers=headers).header_map
    assert time.perf_counter() - t0 < 1.0
    assert hmap["x-junk"].count(",") == 99_999
    assert hmap["cookie"].startswith("a=1; a=1")


def _reference_header_map(headers: list[tuple[str, str]]) -> dict[str, str]:
    joined: dict[str, list[str]] = {}
    for name, value in headers:
        joined.setdefault(name.lower(), []).append(value)
    return {name: ("; " if name == "cookie" else ", ").join(values) for name, values in joined.items()}


_NAMES = st.sampled_from(["Accept", "accept", "ACCEPT", "Cookie", "cookie", "X-A", "x-a", "User-Agent", "Host"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_NAMES, st.text(max_size=4)), max_size=12))
def test_the_header_map_joins_exactly_the_names_that_repeat_in_any_case(headers: list[tuple[str, str]]) -> None:
    hmap = RequestFacts(peer_ip="192.0.2.1", headers=headers).header_map
    assert hmap == _reference_header_map(headers)
    assert list(hmap) == list(_reference_header_map(headers))  # first-seen order, as the fields came

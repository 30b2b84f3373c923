"""mitm/headerfields.py does in one pass what mitmproxy's Headers methods do: checked against them
on generated header lists (names in any case, repeated, values with non-UTF-8 bytes)."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy import http

from scrapeshield.mitm import headerfields

NAMES = st.sampled_from([b"X-Request-Id", b"x-request-id", b"X-REQUEST-ID", b"Content-Type", b"content-type",
                         b"Set-Cookie", b"Host", b"Accept", b"X-Request-Idx", b"X-Request"])
VALUES = st.binary(max_size=12).filter(lambda v: b"\r" not in v and b"\n" not in v)
FIELDS = st.lists(st.tuples(NAMES, VALUES), max_size=8).map(tuple)
TARGETS = st.sampled_from(["X-Request-Id", "Content-Type", "Set-Cookie", "Accept"])
NEW_VALUES = st.text(max_size=10).filter(lambda v: "\r" not in v and "\n" not in v)


@settings(max_examples=300)
@given(FIELDS, TARGETS)
def test_reads_match_mitmproxy(fields: tuple[tuple[bytes, bytes], ...], name: str) -> None:
    headers = http.Headers(fields)
    assert headerfields.values_of(headers, name) == headers.get_all(name)
    assert headerfields.value_of(headers, name) == headers.get(name)


@settings(max_examples=300)
@given(FIELDS, TARGETS, NEW_VALUES)
def test_replace_matches_mitmproxy(fields: tuple[tuple[bytes, bytes], ...], name: str, value: str) -> None:
    ours, theirs = http.Headers(fields), http.Headers(fields)
    expected_prior = theirs.get_all(name)
    theirs[name] = value
    assert headerfields.replace(ours, name, value) == expected_prior
    assert ours.fields == theirs.fields


@settings(max_examples=100)
@given(FIELDS, TARGETS, NEW_VALUES)
def test_append_matches_mitmproxy(fields: tuple[tuple[bytes, bytes], ...], name: str, value: str) -> None:
    ours, theirs = http.Headers(fields), http.Headers(fields)
    theirs.add(name, value)
    headerfields.append(ours, name, value)
    assert ours.fields == theirs.fields


def test_replace_keeps_the_first_fields_place_and_spelling() -> None:
    headers = http.Headers(((b"Accept", b"*/*"), (b"x-request-id", b"a"), (b"Host", b"h"), (b"X-Request-Id", b"b")))
    assert headerfields.replace(headers, "X-Request-Id", "ours") == ["a", "b"]
    assert headers.fields == ((b"Accept", b"*/*"), (b"x-request-id", b"ours"), (b"Host", b"h"))

"""Where a solved challenge sends the browser: only ever a path on this origin."""
from __future__ import annotations

import pytest

from scrapeshield.challenge.redirect import MAX_RETURN_LEN, safe_return_path


@pytest.mark.parametrize("payload", [
    "//evil.com",
    "//evil.com/path",
    "/\\evil.com",
    "\\\\evil.com",
    "/\\/evil.com",
    "https://evil.com",
    "http:evil.com",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "%2F%2Fevil.com",
    "/%2F%2Fevil.com",
    "/%2f%5cevil.com",
    "/%5C%5Cevil.com",
    "/ok\r\nSet-Cookie: x=1",
    "/ok\nLocation: https://evil.com",
    "/ok%0d%0aSet-Cookie:x=1",
    "/ok\x00",
    "/ok\x7f",
    "relative/path",
    "",
    "?q=1",
    "/" + "a" * MAX_RETURN_LEN,
    None,
    b"/bytes",
])
def test_unsafe_return_paths_become_the_site_root(payload):
    assert safe_return_path(payload) == "/"


def test_ordinary_path_and_query_are_kept():
    assert safe_return_path("/search?q=shoes&page=2#top") == "/search?q=shoes&page=2#top"


def test_percent_encoded_path_is_kept_as_is():
    assert safe_return_path("/a%20b/%C3%A9") == "/a%20b/%C3%A9"


def test_characters_that_could_break_out_of_html_or_headers_are_percent_encoded():
    assert safe_return_path('/"><script>alert(1)</script>') == "/%22%3E%3Cscript%3Ealert(1)%3C/script%3E"


def test_non_ascii_is_percent_encoded():
    assert safe_return_path("/café") == "/caf%C3%A9"

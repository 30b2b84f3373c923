"""The interstitial pages: self-contained, locked down by CSP, and inert to what the request carried."""
from __future__ import annotations

import re

import pytest

from scrapeshield.challenge.binding import ClientBinding
from scrapeshield.challenge.endpoints import ChallengeService
from scrapeshield.challenge.keys import KeyRing
from scrapeshield.challenge.page import render_challenge_page, render_wait_page
from scrapeshield.challenge.pow import issue
from scrapeshield.challenge.wait import issue_wait
from scrapeshield.clock import FakeClock

KEYS = KeyRing.from_lines(["88" * 32])
HOME = ClientBinding.of("127.0.0.1", "Mozilla/5.0")
NOW = FakeClock().now()
XSS = '"><script>alert(1)</script>'


def page(return_to: str = "/", nonce: str = "n0nce", no_js: bool = False) -> tuple[str, dict[str, str]]:
    wait = issue_wait(KEYS, HOME, "r", 5, return_to, NOW) if no_js else None
    return render_challenge_page(issue(KEYS, HOME, "r", 16, return_to, NOW), "/.shield/verify", nonce, wait)


@pytest.mark.parametrize("return_to", [XSS, "/" + XSS, "/x?q=" + XSS, "/\u2028" + XSS])
@pytest.mark.parametrize("no_js", [False, True])
def test_script_injection_in_the_return_url_never_reaches_the_page(return_to, no_js):
    html, _ = page(return_to, no_js=no_js)

    assert "<script>alert" not in html and "alert(1)" not in html
    assert html.count("<script") == 1


def test_script_injection_through_the_service_never_reaches_the_page():
    resp = ChallengeService(KEYS).challenge_response(XSS, 8, "/" + XSS, HOME, "text/html", True, NOW)

    assert b"<script>alert" not in resp.body and b"alert(1)" not in resp.body


def test_page_loads_nothing_from_anywhere():
    html, _ = page()

    assert not re.search(r"\b(src|href)\s*=", html)
    assert "http://" not in html and "https://" not in html and "url(" not in html


def test_csp_allows_only_the_nonced_script_and_style_and_blob_workers():
    html, headers = page(nonce="abc123")
    csp = headers["Content-Security-Policy"]

    assert "default-src 'none'" in csp
    assert "script-src 'nonce-abc123'" in csp and "unsafe" not in csp
    assert "style-src 'nonce-abc123'" in csp
    assert "worker-src blob:" in csp
    assert "connect-src 'none'" in csp and "base-uri 'none'" in csp and "frame-ancestors 'none'" in csp
    assert '<script nonce="abc123">' in html and '<style nonce="abc123">' in html


def test_page_is_neither_cached_nor_indexed_nor_framed():
    html, headers = page()

    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Robots-Tag"].startswith("noindex")
    assert headers["X-Frame-Options"] == "DENY"
    assert '<meta name="robots" content="noindex, nofollow">' in html


def test_form_posts_token_and_nonce_to_the_verify_path():
    html, _ = page()

    assert '<form id="shield-form" method="post" action="/.shield/verify"' in html
    assert re.search(r'name="token" value="p\.[0-9a-f]{8}\.[\w-]+\.[\w-]+"', html)
    assert 'name="nonce"' in html and 'data-bits="16"' in html


def test_without_javascript_and_without_fallback_the_page_says_javascript_is_needed():
    html, _ = page()

    assert "<noscript><p>Please enable JavaScript" in html
    assert "http-equiv" not in html


def test_no_js_fallback_refreshes_to_the_wait_verify_url_inside_noscript():
    html, _ = page(no_js=True)

    assert re.search(r'<noscript><meta http-equiv="refresh" content="5;url=/\.shield/verify\?wait=w\.', html)


def test_wait_page_has_no_script_and_refreshes_after_the_wait():
    wait = issue_wait(KEYS, HOME, "r", 7, "/" + XSS, NOW)

    html, headers = render_wait_page(wait, "/.shield/verify", "n")

    assert "<script" not in html and "script-src" not in headers["Content-Security-Policy"]
    assert f'content="7;url=/.shield/verify?wait={wait.token}"' in html
    assert "alert(1)" not in html


def test_each_response_gets_its_own_csp_nonce():
    service = ChallengeService(KEYS)
    a = service.challenge_response("r", 8, "/", HOME, "text/html", False, NOW)
    b = service.challenge_response("r", 8, "/", HOME, "text/html", False, NOW)

    nonce = re.compile(rb'<script nonce="([^"]+)">')
    assert nonce.search(a.body).group(1) != nonce.search(b.body).group(1)

"""no_assets: pages fetched, but not the stylesheets, scripts and images on them."""
from __future__ import annotations

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scrapeshield.detectors import NO_ASSETS, DetectorConfig, DetectorSet, Observation
from scrapeshield.detectors.assets import _TAG, asset_refs, fetched_tag_attrs
from scrapeshield.detectors.synthetic import browse, harvest, page_html, page_refs, page_signals, person_pages, play

T0 = 1_700_000_000.0


def document(path: str, now: float) -> Observation:
    return Observation(path=path, query="", method="GET", is_document=True, is_asset=False, now=now)


def asset(path: str, now: float) -> Observation:
    return Observation(path=path, query="", method="GET", is_document=False, is_asset=True, now=now)


def serve_page(detectors: DetectorSet, key: str, path: str, refs: list[str], now: float) -> None:
    detectors.observe_request(key, document(path, now))
    detectors.observe_response(key, 200, "text/html", page_html(refs), now + 0.1)


# -- with response bodies ----------------------------------------------------------------------

def test_a_harvester_that_never_fetches_assets_fires_after_grace_and_min_pages() -> None:
    # given a harvester pulling product pages every 3 s, bodies visible to the proxy
    events = harvest([f"/product/p{i}" for i in range(30)], T0, 3.0)
    signals = page_signals(events, play(DetectorSet(), "h", events))
    # then: pages are judged 15 s after they were served, 3 judged pages are needed
    assert max(s[NO_ASSETS] for s in signals[:6]) == 0.0
    assert all(s[NO_ASSETS] == 1.0 for s in signals[8:])


def test_a_browser_fetching_the_page_assets_does_not_fire() -> None:
    rng = random.Random(1)
    events = browse(rng, [f"/product/p{i}" for i in range(30)], T0, pause=(1.0, 4.0))
    assert max(s[NO_ASSETS] for s in play(DetectorSet(), "p", events)) == 0.0


def test_cached_assets_are_not_held_against_a_browser() -> None:
    # given a person who fetched the site chrome on the first page
    detectors = DetectorSet(DetectorConfig(assets_shared_pages=0))  # per-identity memory only
    chrome = ["/static/site.css", "/static/app.js"]
    serve_page(detectors, "p", "/", chrome, T0)
    for i, ref in enumerate(chrome):
        detectors.observe_request("p", asset(ref, T0 + 0.2 + i * 0.01))
    # when later pages reference only that (now cached) chrome and nothing is fetched again
    for i in range(1, 10):
        serve_page(detectors, "p", f"/about/{i}", chrome, T0 + 5 * i)
    # then those pages are neutral, not starved
    signals = detectors.observe_request("p", document("/contact", T0 + 100))
    assert signals[NO_ASSETS] == 0.0
    assert detectors.describe("p")["starved_share"] == 0.0  # type: ignore[index]


def test_a_page_counts_as_fed_when_any_of_its_new_assets_is_fetched() -> None:
    # given product pages whose hero image is fetched but whose other image is lazy on the client
    detectors = DetectorSet()
    for i in range(10):
        t = T0 + 5 * i
        serve_page(detectors, "p", f"/product/{i}", [f"/img/hero-{i}.jpg", f"/img/detail-{i}.jpg"], t)
        detectors.observe_request("p", asset(f"/img/hero-{i}.jpg", t + 0.3))
    assert detectors.observe_request("p", document("/", T0 + 100))[NO_ASSETS] == 0.0


def test_site_chrome_learned_from_other_visitors_is_ignored_for_a_returning_visitor() -> None:
    # given the site chrome has been seen on several pages already
    detectors = DetectorSet()
    for i in range(5):
        serve_page(detectors, f"visitor-{i}", f"/page/{i}", page_refs(f"/page/{i}"), T0 + i)
    # when a returning visitor, whose browser still caches the chrome, reads text-only pages
    for i in range(10):
        serve_page(detectors, "returning", f"/text/{i}", ["/static/site.css", "/static/app.js", "/img/logo.svg"],
                   T0 + 10 + 8 * i)
    # then the pages are neutral
    assert detectors.observe_request("returning", document("/", T0 + 200))[NO_ASSETS] == 0.0


def test_too_many_pending_pages_judges_the_oldest_early() -> None:
    detectors = DetectorSet(DetectorConfig(assets_max_pending=2, assets_min_pages=1))
    for i in range(3):
        serve_page(detectors, "h", f"/p/{i}", [f"/img/{i}.jpg"], T0 + i * 0.1)
    d = detectors.describe("h")
    assert d is not None and d["pending_pages"] == 2 and d["starved_share"] == 1.0


# -- without response bodies (replay) ----------------------------------------------------------

def test_without_bodies_a_harvester_fires_by_request_type() -> None:
    events = harvest([f"/product/p{i}" for i in range(30)], T0, 2.0)
    signals = page_signals(events, play(DetectorSet(), "h", events, bodies=False))
    assert signals[3][NO_ASSETS] == 0.0  # 4 documents: the fallback starts above assets_fallback_start
    assert signals[11][NO_ASSETS] == 1.0


def test_without_bodies_a_browser_does_not_fire() -> None:
    for seed in range(5):
        rng = random.Random(seed)
        events = browse(rng, person_pages(rng), T0)
        assert max(s[NO_ASSETS] for s in play(DetectorSet(), "p", events, bodies=False)) == 0.0


def test_the_fallback_can_be_turned_off() -> None:
    events = harvest([f"/product/p{i}" for i in range(30)], T0, 2.0)
    signals = play(DetectorSet(DetectorConfig(assets_fallback_start=0)), "h", events, bodies=False)
    assert max(s[NO_ASSETS] for s in signals) == 0.0


# -- reference extraction ----------------------------------------------------------------------

def test_extracts_stylesheets_scripts_and_images_by_file_name() -> None:
    html = (b'<html><head><LINK REL="stylesheet" HREF="/css/site.css?v=3"><link rel=icon href=/favicon.ico>'
            b"<script src='js/app.js' defer></script></head>"
            b'<body><a href="/big.jpg">x</a><img src="../img/photo.jpg" alt="a"></body></html>')
    assert asset_refs(html, 65536, 24) == ["site.css", "app.js", "photo.jpg"]


def test_skips_what_browsers_may_not_fetch_from_this_origin() -> None:
    html = (b'<link rel="stylesheet" href="https://cdn.example.net/x.css">'
            b'<script src="//cdn.example.net/lib.js"></script>'
            b'<script nomodule src="/legacy.js"></script>'
            b'<img src="/lazy.jpg" loading="lazy"><img src="/small.jpg" srcset="/big.jpg 2x">'
            b'<img data-src="/real.jpg" src="/placeholder.gif"><img src="data:image/png;base64,AAA">'
            b'<noscript><img src="/noscript.jpg"></noscript><!-- <img src="/commented.jpg"> -->'
            b'<script>document.write("<img src=/inline.jpg>")</script><img src="/kept.png">')
    assert asset_refs(html, 65536, 24) == ["kept.png"]


def test_extraction_is_bounded_by_bytes_and_references() -> None:
    html = b"".join(b'<img src="/i/%d.png">' % i for i in range(100))
    assert len(asset_refs(html, 65536, 24)) == 24
    assert asset_refs(html, 30, 24) == ["0.png"]  # the second tag ends at byte 40


# -- the one-pass scan against the two-step reference -----------------------------------------
# `asset_refs` reads each reference's file name inside the regex that finds its attribute. The
# reference below is the scan as it was before: the attribute's value found first, then judged in
# Python (the tags it looks at are the same: `fetched_tag_attrs`). Both must give the same names for
# any page, hostile ones included.

_REF_URL_ATTR = re.compile(
    rb"""(?<![\w-])(?:[sS][rR][cC]|[hH][rR][eE][fF])\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))"""
)


def _reference_same_origin_file(url: bytes) -> str | None:
    url = url.strip()
    if not url or url.startswith(b"//") or b":" in url.partition(b"/")[0]:
        return None
    name = url.partition(b"?")[0].partition(b"#")[0].rpartition(b"/")[2]
    return name.decode("latin-1") if name else None


def _reference_asset_refs(body: bytes, scan_bytes: int, max_refs: int) -> list[str]:
    refs: list[str] = []
    seen: set[str] = set()
    for m in _TAG.finditer(body, 0, scan_bytes):
        attrs = fetched_tag_attrs(m)
        if attrs is None:
            continue
        u = _REF_URL_ATTR.search(attrs)
        if u is None:
            continue
        value = u[1] if u[1] is not None else u[2] if u[2] is not None else u[3]
        name = _reference_same_origin_file(value)
        if name is not None and name not in seen:
            seen.add(name)
            refs.append(name)
            if len(refs) >= max_refs:
                break
    return refs


_BLANKS = st.sampled_from([b"", b" ", b"  ", b"\t", b"\n ", b"\x0b", b"\x0c\r"])
_URL_PARTS = st.sampled_from([
    b"/", b"//", b"a", b"b.css", b"x.js", b"img/", b"../", b"?", b"#", b"?v=1", b"#top", b":", b"https:",
    b"data:image/png;base64,AA", b"HTTP://h/", b"mailto:x", b"p:q/r", b"a b", b"\xe9.png", b"=", b"-", b"'", b'"',
    b">", b"<", b"src=", b"href=",
])
_URLS = st.one_of(
    st.sampled_from([b"/static/app.js", b"img/a.png?v=2", b"../b.css#x", b"c.gif", b" //cdn/x.js", b"\t//h/y.png"]),
    st.builds(lambda lead, parts, trail: lead + b"".join(parts) + trail,
              _BLANKS, st.lists(_URL_PARTS, max_size=6), _BLANKS))


def _attr(name: bytes, eq: bytes, quote: bytes, url: bytes) -> bytes:
    return name + eq + quote + url + quote


_URL_ATTRS = st.builds(
    _attr, st.sampled_from([b"src", b"SRC", b"href", b"Href", b"data-src", b"x-href", b"_src", b"asrc"]),
    st.sampled_from([b"=", b" = ", b"=\n", b" ="]), st.sampled_from([b'"', b"'", b""]), _URLS)
_OTHER_ATTRS = st.sampled_from([b"rel=stylesheet", b"rel='preload'", b"REL=STYLESHEET", b"loading=lazy", b"nomodule",
                                b"defer", b"alt=x", b"srcset='a 2x'", b"type=module", b"'", b'"'])
# Mostly tags whose reference counts (so most pages have some), with what excludes one now and then.
_ATTRS = st.tuples(st.lists(_OTHER_ATTRS, max_size=2), st.lists(_URL_ATTRS, min_size=1, max_size=2),
                   st.lists(_OTHER_ATTRS, max_size=1)).map(
    lambda parts: b"".join(b" " + a for a in (*parts[0], *parts[1], *parts[2])))
_TAGS = st.one_of(
    st.builds(lambda name, attrs, end: b"<" + name + attrs + end,
              st.sampled_from([b"img", b"IMG", b"img", b"link rel=stylesheet", b"Link", b"script", b"imgx", b"a"]),
              _ATTRS, st.sampled_from([b">", b"/>", b">", b"", b"></script>", b">x</SCRIPT >"])),
    st.sampled_from([b"<!-- ", b" -->", b"<noscript>", b"</noscript>", b"<template>", b"</template>", b"text ",
                     b"</script>", b"<"]),
)
_PAGES = st.lists(_TAGS, max_size=12).map(b"".join)


@settings(max_examples=1500, deadline=None)
@given(_PAGES, st.integers(1, 400), st.integers(1, 6))
def test_the_one_pass_scan_finds_exactly_the_references_of_the_two_step_scan(
        page: bytes, scan_bytes: int, max_refs: int) -> None:
    assert asset_refs(page, scan_bytes, max_refs) == _reference_asset_refs(page, scan_bytes, max_refs)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_the_one_pass_scan_agrees_on_any_bytes(page: bytes) -> None:
    assert asset_refs(page, 65536, 24) == _reference_asset_refs(page, 65536, 24)


@pytest.mark.parametrize("attrs, name", [
    (b' src="  /a/b.css  "', "b.css"),  # blanks around the URL are not the name's
    (b' src=" //cdn/x.js"', None),  # a protocol-relative URL behind a blank is still another host's
    (b" src=' a.css ?v=2'", "a.css "),  # a blank before the query stays in the name, as the path has it
    (b' src="https://h/x.png" href="/y.png"', None),  # only the first URL attribute counts
    (b" src=p:q/r.png", None),  # a scheme before the first slash
    (b" src=r/p:q.png", "p:q.png"),  # a colon after it is a file name's
    (b' src="/dir/"', None),
    (b' src="x.js#f/g"', "x.js"),
])
def test_the_file_name_of_a_same_origin_url(attrs: bytes, name: str | None) -> None:
    page = b"<img" + attrs + b">"
    assert asset_refs(page, 65536, 24) == ([name] if name is not None else [])
    assert _reference_asset_refs(page, 65536, 24) == asset_refs(page, 65536, 24)

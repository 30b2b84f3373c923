"""no_assets: pages fetched, but not the stylesheets, scripts and images on them."""
from __future__ import annotations

import random

from scrapeshield.detectors import NO_ASSETS, DetectorConfig, DetectorSet, Observation
from scrapeshield.detectors.assets import asset_refs
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

"""User-Agent classification: kind, family, major version, crawler pattern."""
from __future__ import annotations

import re

import crawleruseragents
import pytest

from scrapeshield.fingerprint import useragent
from scrapeshield.fingerprint.useragent import (
    MAX_UA_LENGTH,
    classify_user_agent,
    crawler_matcher,
    required_literals,
)

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
EDGE = CHROME + " Edg/131.0.0.0"
OPERA = CHROME + " OPR/116.0.0.0"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Safari/605.1.15"
)
SAFARI_IOS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
CHROME_IOS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) CriOS/122.0.6261.89 Mobile/15E148 Safari/604.1"
)
SAMSUNG = (
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36"
)
ANDROID_WEBVIEW = (
    "Mozilla/5.0 (Linux; Android 13; Pixel 7 Build/TQ3A.230901.001; wv) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.43 Mobile Safari/537.36"
)
HEADLESS_CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/120.0.0.0 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
GOOGLEBOT_SMARTPHONE = (
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.6778.204 Mobile Safari/537.36 "
    "(compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
)
BROWSERS = [CHROME, EDGE, OPERA, FIREFOX, SAFARI, SAFARI_IOS, CHROME_IOS, SAMSUNG,
            ANDROID_WEBVIEW]


@pytest.mark.parametrize("ua", [None, "", "   "])
def test_missing_or_blank_ua_is_empty(ua: str | None) -> None:
    assert classify_user_agent(ua).kind == "empty"


def test_headless_chrome_is_headless_and_chromium_family() -> None:
    ua = classify_user_agent(HEADLESS_CHROME)
    assert (ua.kind, ua.family, ua.major) == ("headless", "headlesschrome", 120)
    assert ua.is_chromium_family


def test_phantomjs_is_headless() -> None:
    ua = classify_user_agent(
        "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) "
        "PhantomJS/2.1.1 Safari/538.1"
    )
    assert (ua.kind, ua.family) == ("headless", "phantomjs")


@pytest.mark.parametrize(
    ("header", "family", "major"),
    [
        ("python-requests/2.32.3", "python-requests", 2),
        ("python-httpx/0.28.1", "httpx", 0),
        ("Python/3.12 aiohttp/3.10.5", "aiohttp", 3),
        ("Python-urllib/3.12", "python-urllib", 3),
        ("curl/8.5.0", "curl", 8),
        ("Wget/1.21.3", "wget", 1),
        ("Go-http-client/2.0", "go-http-client", 2),
        ("okhttp/4.12.0", "okhttp", 4),
        ("Java/17.0.2", "java", 17),
        ("Apache-HttpClient/4.5.14 (Java/17.0.2)", "apache-httpclient", 4),
        ("Scrapy/2.11.2 (+https://scrapy.org)", "scrapy", 2),
        ("node-fetch/1.0 (+https://github.com/bitinn/node-fetch)", "node-fetch", 1),
        ("axios/1.7.2", "axios", 1),
        ("libwww-perl/6.72", "libwww-perl", 6),
        ("node", "node", None),
    ],
)
def test_library_ua_is_library_with_its_family(header: str, family: str, major: int | None) -> None:
    ua = classify_user_agent(header)
    assert (ua.kind, ua.family, ua.major) == ("library", family, major)


def test_library_also_in_crawler_list_stays_library_and_records_the_pattern() -> None:
    ua = classify_user_agent("python-requests/2.32.3")
    assert ua.kind == "library"
    assert ua.crawler == "python-requests"


def test_googlebot_is_crawler_with_its_pattern() -> None:
    ua = classify_user_agent(GOOGLEBOT)
    assert (ua.kind, ua.family, ua.crawler) == ("crawler", "googlebot", "Googlebot\\/")


def test_crawler_check_precedes_browser_check() -> None:
    assert classify_user_agent(GOOGLEBOT_SMARTPHONE).kind == "crawler"


@pytest.mark.parametrize(
    ("header", "family", "major", "engine"),
    [
        (CHROME, "chrome", 131, "blink"),
        (EDGE, "edge", 131, "blink"),
        (OPERA, "opera", 116, "blink"),
        (FIREFOX, "firefox", 133, "gecko"),
        (SAFARI, "safari", 17, "webkit"),
        (SAFARI_IOS, "safari", 17, "webkit"),
        (SAMSUNG, "samsung", 24, "blink"),
        (ANDROID_WEBVIEW, "webview", 120, "blink"),
        ("Mozilla/5.0 (Windows NT 10.0; Trident/7.0; rv:11.0) like Gecko", "ie", 11, "trident"),
    ],
)
def test_browser_ua_gets_family_major_and_engine(
    header: str, family: str, major: int, engine: str
) -> None:
    ua = classify_user_agent(header)
    assert (ua.kind, ua.family, ua.major, ua.engine) == ("browser", family, major, engine)


def test_chrome_on_ios_is_webkit_not_chromium_family() -> None:
    ua = classify_user_agent(CHROME_IOS)
    assert (ua.family, ua.engine) == ("chrome", "webkit")
    assert not ua.is_chromium_family


def test_chrome_is_chromium_family() -> None:
    assert classify_user_agent(CHROME).is_chromium_family


def test_browser_token_without_mozilla_prefix_is_unknown() -> None:
    assert classify_user_agent("Chrome/131.0.0.0 Safari/537.36").kind == "unknown"


def test_unrecognised_app_ua_is_unknown() -> None:
    ua = classify_user_agent("AcmeInventorySync/3.1")
    assert (ua.kind, ua.family) == ("unknown", None)


def test_repeated_ua_is_served_from_cache() -> None:
    assert classify_user_agent(CHROME) is classify_user_agent(CHROME)


def test_cache_is_bounded() -> None:
    assert useragent._cache.maxsize == useragent.CACHE_SIZE


def test_overlong_ua_is_cut_before_classification() -> None:
    ua = classify_user_agent(CHROME + " x" * 5000)
    assert len(ua.ua) == MAX_UA_LENGTH
    assert ua.family == "chrome"


def test_crawler_matcher_agrees_with_package_on_every_shipped_example() -> None:
    matcher = crawler_matcher()
    for entry in crawleruseragents.CRAWLER_USER_AGENTS_DATA:
        for example in entry["instances"]:
            assert (matcher.match(example) is not None) == crawleruseragents.is_crawler(example)


def test_crawler_matcher_names_the_first_matching_pattern() -> None:
    # Same as crawleruseragents.matching_crawlers(ua)[0], without its per-call recompiles.
    patterns = [re.compile(e["pattern"]) for e in crawleruseragents.CRAWLER_USER_AGENTS_DATA]
    matcher = crawler_matcher()
    for entry in crawleruseragents.CRAWLER_USER_AGENTS_DATA:
        for example in entry["instances"]:
            first = next(k for k, rx in enumerate(patterns) if rx.search(example))
            assert matcher.match(example) == first


@pytest.mark.parametrize("header", BROWSERS)
def test_browser_uas_do_not_match_the_crawler_list(header: str) -> None:
    assert crawler_matcher().match(header) is None
    assert not crawleruseragents.is_crawler(header)


def test_every_crawler_pattern_gets_a_required_literal() -> None:
    assert crawler_matcher().residual_count == 0


def test_required_literal_skips_groups_and_classes() -> None:
    assert required_literals("(sistrix|SISTRIX) [cC]rawler") == ["rawler"]


def test_required_literals_cover_each_top_level_branch() -> None:
    assert required_literals("Automaton|Newsify Feed Fetcher") == [
        "Automaton",
        "Newsify Feed Fetcher",
    ]


def test_optional_characters_are_not_required() -> None:
    assert required_literals("abcx?defg") == ["defg"]

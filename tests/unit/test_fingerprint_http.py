"""HTTP header signature, consistency signals and the per-request ClientFingerprint."""
from __future__ import annotations

import re

import pytest

from scrapeshield.fingerprint import (
    FIELDS,
    SIGNALS,
    TlsFingerprint,
    classify_user_agent,
    consistency_signals,
    fingerprint_request,
    http_signature,
    httpsig,
)
from scrapeshield.fingerprint.consistency import (
    BROWSER_H1_ONLY_ALPN,
    CHROMIUM_WITHOUT_CLIENT_HINTS,
    NAVIGATION_WITHOUT_ACCEPT_LANGUAGE,
    NON_CHROMIUM_WITH_CLIENT_HINTS,
    UA_TLS_MISMATCH,
)

CHROME_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
OLD_CHROME_UA = CHROME_UA.replace("Chrome/131", "Chrome/80")
WEBVIEW_UA = (
    "Mozilla/5.0 (Linux; Android 13; Pixel 7 Build/TQ3A.230901.001; wv) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.43 Mobile Safari/537.36"
)
FIREFOX_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI_UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Safari/605.1.15"
)

# A Chrome 131 navigation over HTTP/2, in Chrome's header order.
CHROME_NAV = {
    "sec-ch-ua": '"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"',
    "sec-ch-ua-mobile": "?0",
    "sec-ch-ua-platform": '"Windows"',
    "upgrade-insecure-requests": "1",
    "user-agent": CHROME_UA,
    "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "sec-fetch-site": "none",
    "sec-fetch-mode": "navigate",
    "sec-fetch-user": "?1",
    "sec-fetch-dest": "document",
    "accept-encoding": "gzip, deflate, br, zstd",
    "accept-language": "en-US,en;q=0.9",
    "priority": "u=0, i",
}
REQUESTS_GET = {
    "User-Agent": "python-requests/2.32.3",
    "Accept-Encoding": "gzip, deflate",
    "Accept": "*/*",
    "Connection": "keep-alive",
}


def tls(family: str, alpn: tuple[str, ...] = ("h2", "http/1.1")) -> TlsFingerprint:
    return TlsFingerprint(
        ja3="771,4865,0,29,0",
        ja3_hash="0" * 32,
        ja4=f"t13d0101h2_{'1' * 12}_{'2' * 12}",
        ja4_r="t13d0101h2_1301_0000",
        alpn_offered=alpn,
        sni="example.com",
        tls_family=family,
    )


def with_ua(headers: dict[str, str], ua: str) -> dict[str, str]:
    return {**headers, "user-agent": ua}


def without(headers: dict[str, str], *prefixes: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if not k.startswith(prefixes)}


def signals_for(
    headers: dict[str, str], *, tls_fp: TlsFingerprint | None = None, is_tls: bool = True
) -> frozenset[str]:
    lowered = {k.lower(): v for k, v in headers.items()}
    ua = classify_user_agent(lowered.get("user-agent"))
    return consistency_signals(ua, tls_fp, lowered, is_tls)


# --- httpsig -------------------------------------------------------------------------

def test_signature_hash_is_stable_for_a_known_stack() -> None:
    # Pinned: operators store these values in policies, so the format must not drift.
    sig = http_signature(list(CHROME_NAV), "HTTP/2.0", "h2")
    assert sig.compact == "h2:h2:LHFcr:7156a7bac30b"


def test_same_names_give_same_signature() -> None:
    assert http_signature(["Host", "Accept"], "HTTP/1.1", None) == http_signature(
        ["Host", "Accept"], "HTTP/1.1", None
    )


def test_header_order_changes_the_hash() -> None:
    a = http_signature(["host", "user-agent", "accept"], "HTTP/1.1", None)
    b = http_signature(["host", "accept", "user-agent"], "HTTP/1.1", None)
    assert a.hash != b.hash


def test_header_name_case_does_not_change_the_hash() -> None:
    a = http_signature(["Host", "User-Agent"], "HTTP/1.1", None)
    b = http_signature(["host", "user-agent"], "HTTP/1.1", None)
    assert a.hash == b.hash


def test_cookie_and_referer_do_not_change_the_hash() -> None:
    first_visit = http_signature(["host", "user-agent", "accept"], "HTTP/1.1", None)
    later = http_signature(["host", "user-agent", "referer", "accept", "cookie"], "HTTP/1.1", None)
    assert first_visit.hash == later.hash


def test_proxy_added_headers_do_not_change_the_hash() -> None:
    direct = http_signature(["host", "accept"], "HTTP/1.1", None)
    proxied = http_signature(["host", "accept", "x-forwarded-for", "via"], "HTTP/1.1", None)
    assert direct.hash == proxied.hash


def test_presence_flags_follow_the_header_names() -> None:
    sig = http_signature([*CHROME_NAV, "cookie"], "HTTP/2.0", "h2")
    assert sig.flags == "LHFCr"


def test_absent_headers_give_lowercase_flags() -> None:
    assert http_signature(list(REQUESTS_GET), "HTTP/1.1", None).flags == "lhfcr"


def test_compact_form_is_version_alpn_flags_hash() -> None:
    sig = http_signature(list(REQUESTS_GET), "HTTP/1.1", "http/1.1")
    assert re.fullmatch(r"h1:h1:lhfcr:[0-9a-f]{12}", sig.compact)


def test_missing_alpn_prints_as_dash() -> None:
    assert http_signature(["host"], "HTTP/1.1", None).compact.startswith("h1:-:")


def test_http_1_0_is_kept_apart_from_1_1() -> None:
    assert http_signature(["host"], "HTTP/1.0", None).http_version == "h1.0"


def test_repeated_stack_is_served_from_cache() -> None:
    names = ("host", "accept", "x-cache-test")
    assert http_signature(names, "HTTP/1.1", None) is http_signature(list(names), "HTTP/1.1", None)


def test_signature_cache_is_bounded() -> None:
    assert httpsig._cache.maxsize == httpsig.CACHE_SIZE


def test_oversized_header_stack_is_not_cached() -> None:
    names = tuple(f"x-{i:04d}-" + "a" * 100 for i in range(100))
    first = http_signature(names, "HTTP/1.1", None)
    assert first == http_signature(names, "HTTP/1.1", None)
    assert (names, "HTTP/1.1", None) not in httpsig._cache


# --- consistency signals --------------------------------------------------------------

def test_signal_constants_are_their_own_names() -> None:
    assert {
        "chromium_without_client_hints",
        "ua_tls_mismatch",
        "browser_h1_only_alpn",
        "non_chromium_with_client_hints",
        "navigation_without_accept_language",
    } == SIGNALS


def test_real_chrome_navigation_raises_no_signal() -> None:
    assert signals_for(CHROME_NAV, tls_fp=tls("chromium")) == frozenset()


def test_chrome_ua_without_client_hints_over_tls_is_flagged() -> None:
    headers = without(CHROME_NAV, "sec-ch-ua")
    assert CHROMIUM_WITHOUT_CLIENT_HINTS in signals_for(headers)


def test_chrome_ua_without_sec_fetch_over_tls_is_flagged() -> None:
    headers = without(CHROME_NAV, "sec-fetch-")
    assert CHROMIUM_WITHOUT_CLIENT_HINTS in signals_for(headers)


def test_chrome_ua_without_client_hints_over_plain_http_is_not_flagged() -> None:
    headers = without(CHROME_NAV, "sec-ch-ua", "sec-fetch-")
    assert CHROMIUM_WITHOUT_CLIENT_HINTS not in signals_for(headers, is_tls=False)


def test_chrome_older_than_client_hints_is_not_flagged_for_missing_hints() -> None:
    headers = with_ua(without(CHROME_NAV, "sec-ch-ua"), OLD_CHROME_UA)
    assert CHROMIUM_WITHOUT_CLIENT_HINTS not in signals_for(headers)


def test_android_webview_is_not_flagged_for_missing_client_hints() -> None:
    headers = with_ua(without(CHROME_NAV, "sec-ch-ua", "sec-fetch-"), WEBVIEW_UA)
    assert CHROMIUM_WITHOUT_CLIENT_HINTS not in signals_for(headers)


def test_chrome_ua_over_openssl_handshake_is_a_tls_mismatch() -> None:
    assert UA_TLS_MISMATCH in signals_for(CHROME_NAV, tls_fp=tls("openssl"))


def test_firefox_ua_over_chromium_handshake_is_a_tls_mismatch() -> None:
    headers = with_ua(without(CHROME_NAV, "sec-ch-ua"), FIREFOX_UA)
    assert UA_TLS_MISMATCH in signals_for(headers, tls_fp=tls("chromium"))


def test_unknown_tls_family_is_never_a_mismatch() -> None:
    assert UA_TLS_MISMATCH not in signals_for(CHROME_NAV, tls_fp=tls("unknown"))


def test_browser_offering_only_http_1_1_is_flagged() -> None:
    fp = tls("chromium", alpn=("http/1.1",))
    assert BROWSER_H1_ONLY_ALPN in signals_for(CHROME_NAV, tls_fp=fp)


def test_browser_offering_no_alpn_is_flagged() -> None:
    assert BROWSER_H1_ONLY_ALPN in signals_for(CHROME_NAV, tls_fp=tls("chromium", alpn=()))


def test_firefox_ua_sending_client_hints_is_flagged() -> None:
    headers = with_ua(CHROME_NAV, FIREFOX_UA)
    assert NON_CHROMIUM_WITH_CLIENT_HINTS in signals_for(headers)


def test_safari_ua_sending_client_hints_is_flagged() -> None:
    headers = with_ua(CHROME_NAV, SAFARI_UA)
    assert NON_CHROMIUM_WITH_CLIENT_HINTS in signals_for(headers)


def test_navigation_without_accept_language_is_flagged() -> None:
    headers = without(CHROME_NAV, "accept-language")
    assert NAVIGATION_WITHOUT_ACCEPT_LANGUAGE in signals_for(headers)


def test_html_accept_without_accept_language_is_flagged() -> None:
    headers = {"user-agent": FIREFOX_UA, "accept": "text/html,*/*;q=0.8"}
    assert NAVIGATION_WITHOUT_ACCEPT_LANGUAGE in signals_for(headers)


def test_subresource_without_accept_language_is_not_flagged() -> None:
    headers = {"user-agent": FIREFOX_UA, "accept": "image/avif,image/webp,*/*"}
    assert NAVIGATION_WITHOUT_ACCEPT_LANGUAGE not in signals_for(headers)


def test_library_ua_raises_no_consistency_signal() -> None:
    assert signals_for(REQUESTS_GET, tls_fp=tls("openssl", alpn=())) == frozenset()


def test_signals_from_signature_flags_equal_signals_from_header_scan() -> None:
    headers = without(CHROME_NAV, "sec-ch-ua", "accept-language")
    ua = classify_user_agent(CHROME_UA)
    sig = http_signature(list(headers), "HTTP/2.0", "h2")
    scanned = consistency_signals(ua, tls("openssl"), headers, True)
    assert consistency_signals(ua, tls("openssl"), headers, True, sig) == scanned


# --- ClientFingerprint -----------------------------------------------------------------

def request_fp(headers: dict[str, str], tls_fp: TlsFingerprint | None = None):  # type: ignore[no-untyped-def]
    return fingerprint_request(
        list(headers),
        {k.lower(): v for k, v in headers.items()},
        http_version="HTTP/2.0" if tls_fp else "HTTP/1.1",
        alpn="h2" if tls_fp else None,
        is_tls=tls_fp is not None,
        tls=tls_fp,
    )


def test_request_fingerprint_bundles_tls_http_ua_and_signals() -> None:
    fp = request_fp(CHROME_NAV, tls("openssl"))
    assert fp.ua.family == "chrome"
    assert fp.tls is not None and fp.tls.tls_family == "openssl"
    assert fp.http.http_version == "h2"
    assert UA_TLS_MISMATCH in fp.signals


def test_request_fingerprint_without_registry_has_no_good_bot() -> None:
    assert request_fp(CHROME_NAV, tls("chromium")).good_bot is None


def test_tls_fields_read_as_dash_without_tls() -> None:
    fp = request_fp(REQUESTS_GET)
    assert (fp.field("ja4"), fp.field("tls_family")) == ("-", "-")


def test_bucket_key_fields_read_from_the_fingerprint() -> None:
    fp = request_fp(CHROME_NAV, tls("chromium"))
    assert fp.field("ja4") == fp.tls.ja4  # type: ignore[union-attr]
    assert fp.field("httpsig") == fp.http.compact
    assert fp.field("ua_class") == "browser"


def test_unknown_field_name_raises_key_error() -> None:
    with pytest.raises(KeyError):
        request_fp(REQUESTS_GET).field("ja4h")


def test_documented_field_names_all_exist() -> None:
    assert {"ja3", "ja4", "ja4_r", "tls_family", "httpsig", "ua_class", "ua_family",
            "good_bot"} <= FIELDS

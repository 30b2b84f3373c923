"""Consistency signals: places where a request contradicts the browser its UA claims.

Each signal is a named fact, not a verdict; policies match them (``signal: ua_tls_mismatch``)
and decide what they are worth. All of them apply only to User-Agents classified as
``browser``: libraries, crawlers and headless tools make no browser claim to contradict
(policies match those with ``ua_class`` instead). See docs/fingerprints.md for false
positive risks and how to switch each one off.
"""
from __future__ import annotations

from collections.abc import Mapping

from scrapeshield.fingerprint.httpsig import HttpSignature
from scrapeshield.fingerprint.tls import TlsFingerprint
from scrapeshield.fingerprint.useragent import UserAgentClass

__all__ = [
    "BROWSER_H1_ONLY_ALPN",
    "CHROMIUM_WITHOUT_CLIENT_HINTS",
    "NAVIGATION_WITHOUT_ACCEPT_LANGUAGE",
    "NON_CHROMIUM_WITH_CLIENT_HINTS",
    "SIGNALS",
    "UA_TLS_MISMATCH",
    "consistency_signals",
]

CHROMIUM_WITHOUT_CLIENT_HINTS = "chromium_without_client_hints"
"""Chromium-family browser UA over HTTPS without sec-ch-ua (Chrome >= 89) or without
any sec-fetch-* header (Chrome >= 76). Chromium sends both on every request to a secure
origin; it sends no client hints over plain HTTP, so this never fires without TLS.
Android WebView is exempt (it rolled client hints out late and unevenly)."""

UA_TLS_MISMATCH = "ua_tls_mismatch"
"""The browser engine the UA claims implies a TLS stack (Blink -> chromium, Gecko ->
firefox, WebKit -> safari) and the ClientHello's tls_family is a different known one,
e.g. a Chrome UA over an OpenSSL handshake. Silent when tls_family is ``unknown``."""

BROWSER_H1_ONLY_ALPN = "browser_h1_only_alpn"
"""Browser UA whose ClientHello offered no ``h2`` in ALPN (HTTP/1.1 only, or no ALPN at
all). Every current browser offers h2; HTTP libraries often do not."""

NON_CHROMIUM_WITH_CLIENT_HINTS = "non_chromium_with_client_hints"
"""Firefox or Safari UA (Gecko or WebKit engine) sending sec-ch-ua* headers, which
neither implements: headers copied from a Chrome capture under another UA."""

NAVIGATION_WITHOUT_ACCEPT_LANGUAGE = "navigation_without_accept_language"
"""Browser UA making an HTML navigation (sec-fetch-mode: navigate, or Accept containing
text/html) without Accept-Language, which every browser sends on navigations."""

SIGNALS: frozenset[str] = frozenset(
    {
        CHROMIUM_WITHOUT_CLIENT_HINTS,
        UA_TLS_MISMATCH,
        BROWSER_H1_ONLY_ALPN,
        NON_CHROMIUM_WITH_CLIENT_HINTS,
        NAVIGATION_WITHOUT_ACCEPT_LANGUAGE,
    }
)

_EXPECTED_TLS: dict[str | None, str] = {"blink": "chromium", "gecko": "firefox", "webkit": "safari"}
_NONE: frozenset[str] = frozenset()
_CLIENT_HINTS_SINCE = 89  # Chrome 89 sends sec-ch-ua by default
_SEC_FETCH_SINCE = 76  # Chrome 76 sends sec-fetch-*


def consistency_signals(
    ua: UserAgentClass,
    tls: TlsFingerprint | None,
    headers: Mapping[str, str],
    is_tls: bool,
    http: HttpSignature | None = None,
) -> frozenset[str]:
    """Signals for one request. ``headers`` is looked up by lowercase name.

    Pass the request's ``HttpSignature`` when you have it: its presence flags spare a
    scan over the header names.
    """
    if ua.kind != "browser":
        return _NONE
    if http is not None:
        hints, fetch, accept_language = http.client_hints, http.sec_fetch, http.accept_language
    else:
        lower = [name.lower() for name in headers]
        hints = any(n.startswith("sec-ch-ua") for n in lower)
        fetch = any(n.startswith("sec-fetch-") for n in lower)
        accept_language = "accept-language" in lower

    found: list[str] = []
    engine = ua.engine
    if engine == "blink":
        if is_tls and ua.family != "webview":
            major = ua.major if ua.major is not None else _CLIENT_HINTS_SINCE
            if (not hints and major >= _CLIENT_HINTS_SINCE) or (
                not fetch and major >= _SEC_FETCH_SINCE
            ):
                found.append(CHROMIUM_WITHOUT_CLIENT_HINTS)
    elif hints and (engine == "gecko" or engine == "webkit"):
        found.append(NON_CHROMIUM_WITH_CLIENT_HINTS)

    if tls is not None:
        expected = _EXPECTED_TLS.get(engine)
        family = tls.tls_family
        if expected is not None and family != "unknown" and family != expected:
            found.append(UA_TLS_MISMATCH)
        if "h2" not in tls.alpn_offered:
            found.append(BROWSER_H1_ONLY_ALPN)

    if not accept_language and (
        headers.get("sec-fetch-mode") == "navigate" or "text/html" in headers.get("accept", "")
    ):
        found.append(NAVIGATION_WITHOUT_ACCEPT_LANGUAGE)
    return frozenset(found) if found else _NONE

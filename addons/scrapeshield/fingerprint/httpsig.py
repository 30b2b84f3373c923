"""ScrapeShield's own HTTP header signature (``httpsig``): which header names a client
sends, in which order, over which protocol.

Compact form, four fields joined by ``:``::

    h2:h2:LHFcr:1a2b3c4d5e6f
    |  |  |     `-- blake2b-48 (12 hex) of the lowercase header names in wire order,
    |  |  |         volatile names left out (see VOLATILE_HEADERS), joined by ","
    |  |  `-------- presence flags, fixed order, upper case = present:
    |  |            L accept-Language, H client Hints (sec-ch-ua*), F sec-Fetch-*,
    |  |            C Cookie, R Referer
    |  `----------- negotiated ALPN: h2, h1 (http/1.1), h3, "-" for none (plain HTTP
    |               or a TLS client that offered no ALPN), else the token itself
    `-------------- HTTP version of the request: h1.0, h1, h2, h3

Why leave some names out of the hash: the same client adds or drops them from one
request to the next depending on *state*, not on its software: cookies and referers
(kept as flags instead), cache revalidation and reloads, request bodies, and headers
added by proxies in front of us. Leaving them in would split one client stack into
many signatures; leaving them out keeps one signature per stack and request type.
Browsers still produce a few signatures each (navigation, fetch/XHR, image, ...),
libraries usually one.

HTTP/2 pseudo-headers are whatever the caller passes; mitmproxy keeps them out of
``request.headers``, so they are normally absent.

Results are memoised on (names, version, alpn) in a bounded LRU cache: a repeated
header stack costs one tuple hash and one dict lookup; oversized stacks are not cached.
Not thread-safe (mitmproxy runs addons on one event loop).
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cachetools import LRUCache

__all__ = ["VOLATILE_HEADERS", "HttpSignature", "http_signature"]

VOLATILE_HEADERS: frozenset[str] = frozenset(
    {
        # state of the session, reported as flags instead
        "cookie",
        "referer",
        # revalidation and reloads
        "if-modified-since",
        "if-none-match",
        "if-match",
        "if-unmodified-since",
        "if-range",
        "cache-control",
        "pragma",
        # depend on the request body
        "content-length",
        "content-type",
        # added by infrastructure in front of us, not by the client
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-real-ip",
        "forwarded",
        "via",
    }
)

CACHE_SIZE = 8192
# Stacks bigger than this are computed but not cached: cache keys are the names
# themselves, and a hostile client could otherwise park megabytes in the cache.
_CACHEABLE_NAMES = 64
_CACHEABLE_CHARS = 2048

_VERSIONS: dict[str, str] = {
    "HTTP/1.0": "h1.0",
    "HTTP/1.1": "h1",
    "HTTP/2": "h2",
    "HTTP/2.0": "h2",
    "HTTP/3": "h3",
    "HTTP/3.0": "h3",
}
_ALPNS: dict[str, str] = {"http/1.1": "h1", "h2": "h2", "h3": "h3", "http/1.0": "h1.0"}


@dataclass(frozen=True, slots=True)
class HttpSignature:
    hash: str
    http_version: str  # normalised: h1.0, h1, h2, h3
    alpn: str | None  # negotiated ALPN as sent (e.g. "http/1.1"), None if none
    accept_language: bool
    client_hints: bool
    sec_fetch: bool
    cookie: bool
    referer: bool
    header_count: int

    @property
    def flags(self) -> str:
        return "".join(
            (
                "L" if self.accept_language else "l",
                "H" if self.client_hints else "h",
                "F" if self.sec_fetch else "f",
                "C" if self.cookie else "c",
                "R" if self.referer else "r",
            )
        )

    @property
    def compact(self) -> str:
        alpn = "-" if self.alpn is None else _ALPNS.get(self.alpn, self.alpn)
        return f"{self.http_version}:{alpn}:{self.flags}:{self.hash}"

    def __str__(self) -> str:
        return self.compact


def _normalise_version(http_version: str) -> str:
    v = _VERSIONS.get(http_version.upper())
    if v is not None:
        return v
    return http_version.lower().removeprefix("http/") or "-"


def _compute(names: tuple[str, ...], http_version: str, alpn: str | None) -> HttpSignature:
    lower = [n.lower() for n in names]
    stable = [n for n in lower if n not in VOLATILE_HEADERS]
    digest = hashlib.blake2b(",".join(stable).encode("utf-8", "surrogatepass"), digest_size=6)
    present = set(lower)
    return HttpSignature(
        hash=digest.hexdigest(),
        http_version=_normalise_version(http_version),
        alpn=alpn or None,
        accept_language="accept-language" in present,
        client_hints=any(n.startswith("sec-ch-ua") for n in present),
        sec_fetch=any(n.startswith("sec-fetch-") for n in present),
        cookie="cookie" in present,
        referer="referer" in present,
        header_count=len(lower),
    )


_cache: LRUCache[tuple[tuple[str, ...], str, str | None], HttpSignature] = LRUCache(
    maxsize=CACHE_SIZE
)


def http_signature(
    header_names: Sequence[str], http_version: str, alpn: str | None
) -> HttpSignature:
    """Signature of a request's header names (wire order, any case).

    The presence flags are read off the names themselves, so they need no argument.
    """
    names = header_names if isinstance(header_names, tuple) else tuple(header_names)
    if len(names) > _CACHEABLE_NAMES or sum(map(len, names)) > _CACHEABLE_CHARS:
        return _compute(names, http_version, alpn)
    key = (names, http_version, alpn)
    try:
        return _cache[key]
    except KeyError:
        pass
    sig = _compute(names, http_version, alpn)
    _cache[key] = sig
    return sig

"""RequestFacts: everything the engine may ask about one request, in plain Python values.

The mitmproxy addon, replay and the benchmarks all build these; the engine never sees a flow.
Immutable: every field is Final (mypy rejects a write). Derived views (lower-cased header map,
cookies, parsed IP) are computed on first use and kept, so a policy that never asks for one never
pays for it; their values never change. What a decision derives (detector key, signals,
fingerprint, ...) lives in its `DecisionContext`, never here.

Every value here comes from the client, so every derived view is total and bounded: a hostile
header resolves to *a* value (perhaps a truncated one), never to an error that would skip the
policy. `path` is the canonical path (see urlpath.py) that rules match; `raw_path` is as sent.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any, Final

from .netaddr import parse_ip
from .urlpath import canonical_path

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# The first MAX_COOKIES `name=value` pairs are read; browsers keep at most ~180 per site. A cookie
# left unread is one the client chose to bury: it could as well have not sent it.
MAX_COOKIES = 256


class RequestFacts:
    __slots__ = (
        "_cookies",
        "_hmap",
        "_ip",
        "_ip_parsed",
        "alpn",
        "client_ip",
        "connection_id",
        "headers",
        "host",
        "http_version",
        "method",
        "path",
        "peer_ip",
        "query",
        "raw_path",
        "request_id",
        "scheme",
        "timestamp",
        "tls",
    )

    def __init__(
        self,
        *,
        peer_ip: str,
        client_ip: str | None = None,
        method: str = "GET",
        scheme: str = "http",
        host: str = "",
        path: str = "/",
        query: str = "",
        headers: Sequence[tuple[str, str]] = (),
        http_version: str = "HTTP/1.1",
        tls: Any = None,  # fingerprint.TlsFingerprint of the connection, if TLS
        alpn: str | None = None,
        connection_id: str = "",
        timestamp: float = 0.0,
        request_id: str = "",
    ) -> None:
        self.peer_ip: Final = peer_ip
        self.client_ip: Final = client_ip if client_ip is not None else peer_ip
        self.method: Final = method
        self.scheme: Final = scheme
        self.host: Final = host
        self.raw_path: Final = path
        self.path: Final = canonical_path(path)
        self.query: Final = query
        self.headers: Final = headers
        self.http_version: Final = http_version
        self.tls: Final = tls
        self.alpn: Final = alpn
        self.connection_id: Final = connection_id
        self.timestamp: Final = timestamp
        self.request_id: Final = request_id  # also sent upstream (X-Request-Id): joins our log to the origin's
        # Lazy views: set once, on first use.
        self._hmap: dict[str, str] | None = None
        self._cookies: dict[str, str] | None = None
        self._ip: IpAddress | None = None
        self._ip_parsed = False

    @property
    def header_map(self) -> dict[str, str]:
        """Lower-cased header names; repeated headers joined with ', ' (cookies with '; ').
        Linear in the headers' size, however many fields repeat one name."""
        hmap = self._hmap
        if hmap is None:
            headers = self.headers
            hmap = {}
            for name, value in headers:  # one store a field: no name repeats in nearly every request
                hmap[name.lower()] = value
            if len(hmap) != len(headers):  # one did: joined in a second pass
                hmap = _joined_header_map(headers)
            self._hmap = hmap
        return hmap

    def header(self, lname: str) -> str | None:
        return self.header_map.get(lname)

    @property
    def user_agent(self) -> str:
        return self.header_map.get("user-agent", "")

    @property
    def cookies(self) -> dict[str, str]:
        cookies = self._cookies
        if cookies is None:
            cookies = {}
            raw = self.header_map.get("cookie")
            if raw:
                cookies = parse_cookie_header(raw)
            self._cookies = cookies
        return cookies

    @property
    def ip(self) -> IpAddress | None:
        if not self._ip_parsed:
            self._ip, self._ip_parsed = parse_ip(self.client_ip), True
        return self._ip

    @property
    def is_tls(self) -> bool:
        return self.scheme == "https"

    def __repr__(self) -> str:
        return f"<RequestFacts {self.client_ip} {self.method} {self.host}{self.path}>"


def _joined_header_map(headers: Sequence[tuple[str, str]]) -> dict[str, str]:
    """`RequestFacts.header_map` of headers in which a name repeats."""
    values: dict[str, list[str]] = {}
    for name, value in headers:
        lname = name.lower()
        same = values.get(lname)
        if same is None:
            values[lname] = [value]
        else:
            same.append(value)
    return {lname: vs[0] if len(vs) == 1 else ("; " if lname == "cookie" else ", ").join(vs)
            for lname, vs in values.items()}


def parse_cookie_header(raw: str, max_cookies: int = MAX_COOKIES) -> dict[str, str]:
    """`a=1; b="two"` -> {"a": "1", "b": "two"}: RFC 6265 as browsers send it, bounded and total.

    Not `http.cookies.SimpleCookie`: it drops the whole header on one odd pair (a hostile client
    could hide every cookie behind one) and its unquoting is quadratic on some inputs before
    Python 3.12.6. The first of several same-name cookies wins (the most specific path, as browsers
    order them). Reads at most `max_cookies` pairs; the split stops there, so a 100 KB header of
    thousands of cookies costs the first `max_cookies` of them.
    """
    cookies: dict[str, str] = {}
    pairs = raw.split(";", max_cookies)
    for pair in pairs[:max_cookies]:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name or name in cookies:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        cookies[name] = value
    return cookies

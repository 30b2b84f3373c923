"""RequestFacts: everything the engine may ask about one request, in plain Python values.

The mitmproxy addon, replay and the benchmarks all build these; the engine never sees a flow.
Immutable: every field is Final (mypy rejects a write). Derived views (lower-cased header map,
cookies, parsed IP) are computed on first use and kept, so a policy that never asks for one never
pays for it; their values never change. What a decision derives (detector key, signals,
fingerprint, ...) lives in its `DecisionContext`, never here.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from http.cookies import SimpleCookie
from typing import Any, Final

from .netaddr import parse_ip

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


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
        self.path: Final = path
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
        """Lower-cased header names; repeated headers joined with ', ' (cookies with '; ')."""
        hmap = self._hmap
        if hmap is None:
            hmap = {}
            for name, value in self.headers:
                lname = name.lower()
                if lname in hmap:
                    hmap[lname] += ("; " if lname == "cookie" else ", ") + value
                else:
                    hmap[lname] = value
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
                jar: SimpleCookie = SimpleCookie()
                try:
                    jar.load(raw)
                except Exception:  # a hostile Cookie header is just no cookies
                    jar = SimpleCookie()
                cookies = {k: m.value for k, m in jar.items()}
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

"""mitmproxy flow -> RequestFacts."""
from __future__ import annotations

from typing import Any

from mitmproxy import http

from ..facts import RequestFacts
from ..netaddr import CidrSet, normalize_ip, resolve_client_ip


def _text(b: bytes) -> str:
    return b.decode("latin-1")  # never fails; header bytes that are not text stay visible as-is


def facts_from_flow(flow: http.HTTPFlow, trusted: CidrSet, tls: Any = None) -> RequestFacts:
    req = flow.request
    client = flow.client_conn
    peer = client.peername[0] if client.peername else "0.0.0.0"
    if ":" in peer:  # "::ffff:1.2.3.4" on a dual-stack socket is the IPv4 client 1.2.3.4
        peer = normalize_ip(peer)
    headers = tuple((_text(k), _text(v)) for k, v in req.headers.fields)
    xff: list[str] = []
    fwd: list[str] = []
    if trusted:
        for k, v in headers:
            lk = k.lower()
            if lk == "x-forwarded-for":
                xff.append(v)
            elif lk == "forwarded":
                fwd.append(v)
    client_ip = resolve_client_ip(peer, xff, fwd, trusted) if trusted else peer
    raw_path = req.data.path.decode("latin-1") if req.data.path else "/"
    path, _, query = raw_path.partition("?")
    host = req.host_header or ""
    alpn = client.alpn.decode("latin-1") if client.alpn else None
    return RequestFacts(
        peer_ip=peer, client_ip=client_ip, method=req.method, scheme="https" if client.tls else "http",
        host=host, path=path or "/", query=query, headers=headers, http_version=req.http_version,
        tls=tls, alpn=alpn, connection_id=client.id, timestamp=req.timestamp_start,
    )

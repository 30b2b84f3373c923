"""mitmproxy flow -> RequestFacts."""
from __future__ import annotations

from typing import Any

from mitmproxy import http

from ..facts import RequestFacts
from ..fingerprint.front import CLOUDFRONT_HEADERS, front_fingerprint
from ..netaddr import CidrSet, normalize_ip, parse_ip, resolve_client_ip
from ..requestid import HEADER as REQUEST_ID_HEADER
from ..requestid import request_id
from .headerfields import value_of


def _host_header(req: http.Request) -> str | None:
    """`req.host_header` without the multidict's per-call scans: for HTTP/1 that is
    `headers.get("Host")` -- every Host field, decoded as mitmproxy decodes, joined with ", "."""
    if req.is_http2 or req.is_http3:
        return req.host_header  # :authority first
    return value_of(req.headers, "Host")


def facts_from_flow(flow: http.HTTPFlow, trusted: CidrSet, tls: Any = None,
                    fingerprint_headers: tuple[str, str] = CLOUDFRONT_HEADERS) -> RequestFacts:
    """`fingerprint_headers` (JA3, JA4 header names) are believed only from a trusted peer."""
    req = flow.request
    client = flow.client_conn
    peer = client.peername[0] if client.peername else "0.0.0.0"
    if ":" in peer:  # "::ffff:1.2.3.4" on a dual-stack socket is the IPv4 client 1.2.3.4
        peer = normalize_ip(peer)
    fields = req.headers.fields
    # latin-1 never fails: header bytes that are not text stay visible as they are
    headers = tuple([(k.decode("latin-1"), v.decode("latin-1")) for k, v in fields])
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
    from_proxy = bool(trusted) and trusted.contains(parse_ip(peer))
    if from_proxy:
        # The peer terminated the client's TLS: its handshake is the proxy's, the client's is in
        # the headers (if the proxy sends them).
        front = front_fingerprint(headers, fingerprint_headers)
        if front is not None:
            tls = front
    raw_path = req.data.path.decode("latin-1") if req.data.path else "/"
    path, _, query = raw_path.partition("?")
    host = _host_header(req) or ""
    alpn = client.alpn.decode("latin-1") if client.alpn else None
    return RequestFacts(
        peer_ip=peer, client_ip=client_ip, method=req.method, scheme="https" if client.tls else "http",
        host=host, path=path or "/", query=query, headers=headers, http_version=req.http_version,
        tls=tls, alpn=alpn, connection_id=client.id, timestamp=req.timestamp_start,
        # A proxy we trust may have named the request already; anyone else's id is not ours to keep.
        request_id=request_id(value_of(req.headers, REQUEST_ID_HEADER) if from_proxy else None, from_proxy),
    )

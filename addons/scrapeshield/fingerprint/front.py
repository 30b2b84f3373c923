"""TLS fingerprints computed by a front proxy (CDN, load balancer) that terminates TLS.

Behind such a proxy the shield sees the proxy's connection, not the client's ClientHello, so
`ja4` would read `-` for every client. CloudFront forwards the viewer's fingerprints in
`CloudFront-Viewer-JA3-Fingerprint` (the JA3 MD5) and `CloudFront-Viewer-JA4-Fingerprint`;
other proxies can be configured to do the same under other names (policy field
`fingerprint_headers`). The adapter believes these headers only from a peer in
`trusted_proxies` -- from anyone else they are client input and ignored.

Only the two fingerprints travel, not the ClientHello, so the TLS family (which the
`ua_tls_mismatch` signal needs) is `unknown`: a header fingerprint never produces that
signal on its own, it keys and matches.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from yaml.nodes import Node

from ..policy.registry import Registry, Section, SectionContext
from .tls import TlsFingerprint

CLOUDFRONT_HEADERS = ("cloudfront-viewer-ja3-fingerprint", "cloudfront-viewer-ja4-fingerprint")

_JA3_HASH = re.compile(r"[0-9a-f]{32}")
# JA4_a: protocol, version, SNI, cipher count, extension count, ALPN; then two 12-hex hashes.
_JA4 = re.compile(r"[tqd](?:1[0-3]|s[23]|00|d[12]|d3)[di][0-9]{2}[0-9]{2}[0-9a-zA-Z]{2}_[0-9a-f]{12}_[0-9a-f]{12}")


def front_fingerprint(headers: Sequence[tuple[str, str]], names: tuple[str, str]) -> TlsFingerprint | None:
    """The client's fingerprint from a trusted front proxy's headers (lower-case `names`:
    JA3 header, JA4 header); None when neither carries a well-formed value."""
    ja3_name, ja4_name = names
    ja3 = ja4 = ""
    for name, value in headers:
        lname = name.lower()
        if lname == ja3_name and not ja3:
            value = value.strip().lower()
            ja3 = value if _JA3_HASH.fullmatch(value) else ""
        elif lname == ja4_name and not ja4:
            value = value.strip()
            ja4 = value if _JA4.fullmatch(value) else ""
    if not ja3 and not ja4:
        return None
    alpn = ja4[8:10] if ja4 else ""
    offered = ("h2",) if alpn == "h2" else ("http/1.1",) if alpn == "h1" else ()
    return TlsFingerprint(ja3="", ja3_hash=ja3, ja4=ja4, ja4_r="", alpn_offered=offered, sni=None,
                          tls_family="unknown")


def _compile_headers(sc: SectionContext, node: Node) -> tuple[str, str] | None:
    """`fingerprint_headers: {ja3: NAME, ja4: NAME}` -- where a trusted front proxy puts the
    client's TLS fingerprints (CloudFront's header names when absent)."""
    r = sc.reader
    f = r.mapping(node, "fingerprint_headers", ("ja3", "ja4"))
    if f is None:
        return None
    names = list(CLOUDFRONT_HEADERS)
    for i, field in enumerate(("ja3", "ja4")):
        if field in f:
            name = r.string(f[field][1], f"fingerprint_headers.{field}") or ""
            if not name.replace("-", "").replace("_", "").isalnum():
                r.error(f[field][1], f"fingerprint_headers.{field}: not a header name: {name!r}")
            names[i] = name.lower()
    return (names[0], names[1])


FINGERPRINT_HEADERS: Section[tuple[str, str]] = Section("fingerprint_headers", _compile_headers)


def register(registry: Registry) -> None:
    registry.add_section(FINGERPRINT_HEADERS)

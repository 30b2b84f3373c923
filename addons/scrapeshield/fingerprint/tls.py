"""TLS client fingerprint: JA3, JA4 and a property-based guess of the client's TLS stack.

``tls_family`` names the TLS *library* the ClientHello came from, judged from
properties each stack is known for rather than from hash lists (hashes of clients
linked against a system OpenSSL vary with its build and version):

- ``chromium``: BoringSSL as shipped in Chrome/Edge/Opera/Brave: GREASE plus ALPS
  (0x4469/0x44cd) or brotli certificate compression (0x001b).
- ``safari``: Apple's stack: GREASE without ALPS, zlib-only certificate compression
  and/or the legacy 3DES suites Safari still offers.
- ``firefox``: NSS: no GREASE; delegated_credentials (0x0022), or record_size_limit
  (0x001c) without the library tells below.
- ``openssl``: general-purpose C library stacks: OpenSSL (python ssl/requests/httpx/
  aiohttp, curl) and GnuTLS (Debian's wget): no GREASE, and encrypt_then_mac (0x0016)
  or post_handshake_auth (0x0031), which no browser sends.
- ``go``: Go crypto/tls: no GREASE, no encrypt_then_mac, TLS 1.3 suites *appended after*
  the TLS 1.2 ones (every other stack lists them first).
- ``unknown``: none of the above (Java, .NET, Rust rustls, embedded stacks ...).
"""
from __future__ import annotations

from dataclasses import dataclass

from scrapeshield.fingerprint.clienthello import (
    GREASE,
    ClientHelloInfo,
    client_hello_body_from_records,
    parse_client_hello,
)
from scrapeshield.fingerprint.ja3 import ja3_string, ja3_string_to_md5
from scrapeshield.fingerprint.ja4 import ja4

__all__ = [
    "TLS_FAMILIES",
    "ClientHelloInfo",
    "TlsFingerprint",
    "client_hello_body_from_records",
    "fingerprint_client_hello",
    "fingerprint_info",
    "parse_client_hello",
    "tls_family",
]

TLS_FAMILIES: frozenset[str] = frozenset(
    {"chromium", "firefox", "safari", "openssl", "go", "unknown"}
)

_ALPS = frozenset({0x4469, 0x44CD})  # application_settings, old and new codepoints
_ENCRYPT_THEN_MAC = 0x0016
_POST_HANDSHAKE_AUTH = 0x0031
_RECORD_SIZE_LIMIT = 0x001C
_DELEGATED_CREDENTIALS = 0x0022
_CERT_ZLIB = 0x0001
_CERT_BROTLI = 0x0002
# TLS_RSA_WITH_3DES_EDE_CBC_SHA and the ECDHE 3DES suites: dropped by Chrome and
# Firefox years ago, still offered by Safari.
_3DES = frozenset({0x000A, 0xC008, 0xC012})


@dataclass(frozen=True, slots=True)
class TlsFingerprint:
    ja3: str
    ja3_hash: str
    ja4: str
    ja4_r: str
    alpn_offered: tuple[str, ...]
    sni: str | None
    tls_family: str


def _tls13_suites_last(ciphers: list[int]) -> bool:
    """Go appends the TLS 1.3 suites (0x13xx) after the TLS 1.2 list."""
    seen_12 = False
    seen_13_after_12 = False
    for c in ciphers:
        if c >> 8 == 0x13:
            if not seen_12:
                return False
            seen_13_after_12 = True
        else:
            seen_12 = True
    return seen_13_after_12


def tls_family(info: ClientHelloInfo) -> str:
    """Guess the client's TLS stack from ClientHello properties (see module doc)."""
    exts = frozenset(info.extensions)
    if info.has_grease:
        if not _ALPS.isdisjoint(exts):
            return "chromium"
        compression = frozenset(info.cert_compression)
        if _CERT_BROTLI in compression and _CERT_ZLIB not in compression:
            return "chromium"  # Chrome before ALPS (< 91) already used brotli
        if not _3DES.isdisjoint(info.cipher_suites) or _CERT_ZLIB in compression:
            return "safari"
        return "chromium"  # GREASE without Safari's tells: some BoringSSL embedding
    if _DELEGATED_CREDENTIALS in exts:
        return "firefox"
    if _ENCRYPT_THEN_MAC in exts or _POST_HANDSHAKE_AUTH in exts:
        return "openssl"
    if _RECORD_SIZE_LIMIT in exts:  # GnuTLS sends it too, but was caught just above
        return "firefox"
    if _tls13_suites_last([c for c in info.cipher_suites if c not in GREASE]):
        return "go"
    return "unknown"


def fingerprint_info(info: ClientHelloInfo, *, quic: bool = False) -> TlsFingerprint:
    ja3 = ja3_string(info)
    ja4_fp, ja4_r = ja4(info, quic=quic)
    return TlsFingerprint(
        ja3=ja3,
        ja3_hash=ja3_string_to_md5(ja3),
        ja4=ja4_fp,
        ja4_r=ja4_r,
        alpn_offered=tuple(
            p.decode("ascii", "backslashreplace") for p in info.alpn_protocols
        ),
        sni=info.sni,
        tls_family=tls_family(info),
    )


def fingerprint_client_hello(body: bytes, *, quic: bool = False) -> TlsFingerprint:
    """Fingerprint a ClientHello body (from legacy_version on). Raises ValueError.

    ``quic=True`` marks a ClientHello carried in QUIC (JA4 transport ``q``); DTLS is
    recognised from the version field by itself.
    """
    return fingerprint_info(parse_client_hello(body), quic=quic)

"""JA4 TLS client fingerprint, written from FoxIO's BSD-3 JA4 specification.

``ja4 = a_b_c``:

- a: transport (``t`` TCP, ``q`` QUIC, ``d`` DTLS), version (``13`` ...), ``d``/``i``
  (SNI present or not), 2-digit cipher count, 2-digit extension count, first and last
  character of the first ALPN value (``00`` if none).
- b: sha256[:12] of the sorted cipher hex list.
- c: sha256[:12] of the sorted extension hex list without SNI/ALPN, then ``_`` and the
  signature algorithms in wire order.

``ja4_r`` is the same with the lists in clear instead of hashed. GREASE is ignored
everywhere. Sorting makes JA4 immune to Chrome's per-connection extension shuffle.
Only JA4 (TLS client) lives here: the other JA4+ methods carry a non-commercial
licence and are deliberately not implemented.
"""
from __future__ import annotations

import hashlib
import struct

from scrapeshield.fingerprint.clienthello import (
    EXT_ALPN,
    EXT_SERVER_NAME,
    GREASE,
    ClientHelloInfo,
)

_VERSIONS: dict[int, str] = {
    0x0304: "13",
    0x0303: "12",
    0x0302: "11",
    0x0301: "10",
    0x0300: "s3",
    0x0002: "s2",
    0xFEFF: "d1",
    0xFEFD: "d2",
    0xFEFC: "d3",
}
_EMPTY_HASH = "000000000000"


def _sha12(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:12]


def _version(info: ClientHelloInfo) -> str:
    offered = [v for v in info.supported_versions if v not in GREASE]
    # DTLS numbers count down (1.3 = 0xfefc), so "highest" is the smallest there.
    best = (min(offered) if info.dtls else max(offered)) if offered else info.legacy_version
    return _VERSIONS.get(best, "00")


def _hex_list(values: list[int]) -> str:
    """'1301,1302,c02b' from [0x1301, 0x1302, 0xc02b], in one C call."""
    return struct.pack(f">{len(values)}H", *values).hex(",", 2)


def _alnum(byte: int) -> bool:
    return 0x30 <= byte <= 0x39 or 0x41 <= byte <= 0x5A or 0x61 <= byte <= 0x7A


def _alpn(info: ClientHelloInfo) -> str:
    if not info.alpn_protocols or not info.alpn_protocols[0]:
        return "00"
    first = info.alpn_protocols[0]
    if _alnum(first[0]) and _alnum(first[-1]):
        return chr(first[0]) + chr(first[-1])
    hexed = first.hex()  # spec: fall back to the hex form's first and last characters
    return hexed[0] + hexed[-1]


def ja4(info: ClientHelloInfo, *, quic: bool = False) -> tuple[str, str]:
    """Return (ja4, ja4_r)."""
    ciphers = [c for c in info.cipher_suites if c not in GREASE]
    extensions = [e for e in info.extensions if e not in GREASE]
    transport = "q" if quic else ("d" if info.dtls else "t")
    sni = "d" if EXT_SERVER_NAME in extensions else "i"
    a = (
        f"{transport}{_version(info)}{sni}"
        f"{min(len(ciphers), 99):02d}{min(len(extensions), 99):02d}{_alpn(info)}"
    )
    cipher_list = _hex_list(sorted(ciphers))
    ext_list = _hex_list(sorted([e for e in extensions if e != EXT_SERVER_NAME and e != EXT_ALPN]))
    sigs = _hex_list([s for s in info.signature_algorithms if s not in GREASE])
    c = f"{ext_list}_{sigs}" if sigs else ext_list
    # Empty lists print as zeros rather than the hash of nothing, per the spec.
    b_hash = _sha12(cipher_list) if cipher_list else _EMPTY_HASH
    c_hash = _sha12(c) if ext_list else _EMPTY_HASH
    return f"{a}_{b_hash}_{c_hash}", f"{a}_{cipher_list}_{c}"


def session_ja4(ja4: str) -> str:
    """The part of a JA4 that stays the same across one browser's handshakes: protocol, TLS
    version, SNI kind, cipher count, ALPN and the cipher hash -- without the extension count and
    hash, which change when the browser resumes a TLS session (a `pre_shared_key` extension more):
    Chrome's full and resumed handshakes differ there, and a person's session must survive both."""
    a, sep, rest = ja4.partition("_")
    ciphers = rest.partition("_")[0]
    if not sep or len(a) != 10 or not ciphers:
        return ja4
    return a[:6] + a[8:] + "_" + ciphers

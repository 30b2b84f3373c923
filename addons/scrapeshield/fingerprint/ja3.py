"""JA3 (Salesforce, BSD-3): ``SSLVersion,Ciphers,Extensions,EllipticCurves,PointFormats``.

Decimal values, ``-`` within a field, ``,`` between fields, GREASE dropped, wire order
kept. Wire order is JA3's weakness: Chrome shuffles its extensions per connection
(since v110), so a Chrome JA3 changes on every handshake; prefer JA4 for Chromium.
"""
from __future__ import annotations

import hashlib

from scrapeshield.fingerprint.clienthello import GREASE, ClientHelloInfo


def _join(values: tuple[int, ...]) -> str:
    return "-".join(map(str, [v for v in values if v not in GREASE]))


def ja3_string(info: ClientHelloInfo) -> str:
    return ",".join(
        (
            str(info.legacy_version),
            _join(info.cipher_suites),
            _join(info.extensions),
            _join(info.supported_groups),
            "-".join(map(str, info.ec_point_formats)),
        )
    )


def ja3_string_to_md5(ja3: str) -> str:
    # MD5 is what the JA3 ecosystem publishes; it is an identifier here, not security.
    return hashlib.md5(ja3.encode("ascii"), usedforsecurity=False).hexdigest()

"""The first bytes of a response body as the client reads them, without decoding the rest.

The detectors read at most the first `assets_scan_bytes` (64 KiB) of an HTML page, and an
origin sends HTML compressed. mitmproxy's `get_content()` inflates the whole body first: for
a 200 KB page that is several times the scan itself, on every page the shield passes on. Here
each coding mitmproxy knows stops once `limit` bytes are out:

    identity, none   the raw bytes
    gzip, x-gzip     zlib, gzip or zlib header detected (as mitmproxy's decode_gzip)
    deflate          zlib-wrapped, else raw DEFLATE (as mitmproxy's decode_deflate)
    br               brotli, with an output limit
    zstd             zstandard, with an output limit

Anything else -- an unknown coding, several codings stacked, a body that does not decode --
gives the raw bytes' prefix, which is what `get_content(strict=False)` gives for such a body.
So the result is always `get_content(strict=False)[:limit]` for a body that decodes whole, and
the decoded prefix for one whose tail is cut or corrupt (tests/addon/test_bodyprefix.py).
"""
from __future__ import annotations

import sys
import zlib

import brotli

if sys.version_info >= (3, 14):  # what mitmproxy itself imports for zstd
    from compression import zstd
else:  # pragma: no cover - the interpreter the image ships
    from backports import zstd

_IDENTITY = ("", "identity", "none")
# brotli decodes all the input it is given, whatever output limit it is asked for: it is fed a
# slice at a time instead, so it stops within one slice's output of the limit (HTML: ~4-10x).
_BROTLI_SLICE = 4096


def decoded_prefix(raw: bytes, content_encoding: str | None, limit: int) -> bytes:
    """At most the first `limit` bytes of the body `raw` sent with this Content-Encoding."""
    coding = content_encoding.strip().lower() if content_encoding else ""
    if coding in _IDENTITY or not raw:
        return raw if len(raw) <= limit else raw[:limit]
    try:
        if coding == "gzip" or coding == "x-gzip":
            return zlib.decompressobj(47).decompress(raw, limit)
        if coding == "deflate":
            try:
                return zlib.decompressobj(zlib.MAX_WBITS).decompress(raw, limit)
            except zlib.error:
                return zlib.decompressobj(-zlib.MAX_WBITS).decompress(raw, limit)
        if coding == "br":
            return _brotli_prefix(raw, limit)
        if coding == "zstd":
            return zstd.ZstdDecompressor().decompress(raw, limit)
    except (zlib.error, brotli.error, zstd.ZstdError, EOFError, ValueError):
        pass
    return raw if len(raw) <= limit else raw[:limit]


def _brotli_prefix(raw: bytes, limit: int) -> bytes:
    decompressor = brotli.Decompressor()
    view = memoryview(raw)
    parts: list[bytes] = []
    size = at = 0
    while size < limit and at < len(raw) and not decompressor.is_finished():
        part = decompressor.process(view[at:at + _BROTLI_SLICE])
        at += _BROTLI_SLICE
        parts.append(part)
        size += len(part)
    out = b"".join(parts)
    return out if len(out) <= limit else out[:limit]

"""Parse a TLS (or DTLS) ClientHello handshake body into the fields fingerprints need.

The input is the handshake *body*, starting at ``legacy_version``: exactly what
mitmproxy's ``ClientHello.raw_bytes(wrap_in_record=False)`` returns, and what a
QUIC CRYPTO stream carries. ``client_hello_body_from_records`` unwraps bytes read
straight off a TCP socket (records + handshake header) for offline tools and tests.

Everything from the client is untrusted: any malformed input raises ``ValueError``
and nothing else, so callers need exactly one ``except``.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

# RFC 8701 GREASE: 0x0a0a, 0x1a1a, ... 0xfafa. Clients sprinkle these to keep servers
# tolerant; they are random per connection and carry no identity, so every
# fingerprint drops them.
GREASE: frozenset[int] = frozenset(0x0A0A + 0x1010 * i for i in range(16))

EXT_SERVER_NAME = 0x0000
EXT_SUPPORTED_GROUPS = 0x000A
EXT_EC_POINT_FORMATS = 0x000B
EXT_SIGNATURE_ALGORITHMS = 0x000D
EXT_ALPN = 0x0010
EXT_COMPRESS_CERTIFICATE = 0x001B
EXT_SUPPORTED_VERSIONS = 0x002B

_PARSED = frozenset(
    {
        EXT_SERVER_NAME,
        EXT_SUPPORTED_GROUPS,
        EXT_EC_POINT_FORMATS,
        EXT_SIGNATURE_ALGORITHMS,
        EXT_ALPN,
        EXT_COMPRESS_CERTIFICATE,
        EXT_SUPPORTED_VERSIONS,
    }
)

_HANDSHAKE_RECORD = 0x16
_CLIENT_HELLO = 0x01


@dataclass(frozen=True, slots=True)
class ClientHelloInfo:
    """The ClientHello as sent: wire order, GREASE still in (fingerprints filter it)."""

    legacy_version: int
    cipher_suites: tuple[int, ...]
    extensions: tuple[int, ...]
    supported_versions: tuple[int, ...]
    supported_groups: tuple[int, ...]
    ec_point_formats: tuple[int, ...]
    signature_algorithms: tuple[int, ...]
    alpn_protocols: tuple[bytes, ...]
    sni: str | None
    cert_compression: tuple[int, ...]
    dtls: bool

    @property
    def has_grease(self) -> bool:
        return not GREASE.isdisjoint(self.cipher_suites) or not GREASE.isdisjoint(self.extensions)


def _u16s(data: bytes) -> tuple[int, ...]:
    if len(data) % 2:
        raise ValueError("odd length for a list of 16-bit values")
    return struct.unpack(f">{len(data) // 2}H", data)


def _vector(data: bytes, pos: int, len_bytes: int) -> tuple[bytes, int]:
    """Read a length-prefixed opaque vector; return (contents, position after it)."""
    n = data[pos] if len_bytes == 1 else data[pos] << 8 | data[pos + 1]
    start = pos + len_bytes
    end = start + n
    if end > len(data):
        raise ValueError("vector overruns its container")
    return data[start:end], end


def _whole_vector(data: bytes, len_bytes: int) -> bytes:
    """An extension whose entire payload is one length-prefixed vector."""
    inner, end = _vector(data, 0, len_bytes)
    if end != len(data):
        raise ValueError("trailing bytes in extension")
    return inner


def _parse_sni(data: bytes) -> str | None:
    names = _whole_vector(data, 2)
    pos = 0
    while pos < len(names):
        name_type = names[pos]
        name, pos = _vector(names, pos + 1, 2)
        if name_type == 0:  # host_name; other types were never deployed
            # Hostnames on the wire are A-labels (ASCII); escape anything else rather
            # than fail, so a sloppy client still gets a fingerprint.
            return name.decode("ascii", "backslashreplace").lower()
    return None


def _parse_alpn(data: bytes) -> tuple[bytes, ...]:
    protos = _whole_vector(data, 2)
    out: list[bytes] = []
    pos = 0
    while pos < len(protos):
        proto, pos = _vector(protos, pos, 1)
        out.append(proto)
    return tuple(out)


def parse_client_hello(body: bytes) -> ClientHelloInfo:
    """Parse a ClientHello handshake body (from legacy_version on). Raises ValueError."""
    try:
        # memoryview() rather than bytes(): bytes(5) would quietly make five zero bytes.
        return _parse(body if isinstance(body, bytes) else bytes(memoryview(body)))
    except ValueError:
        raise
    except (IndexError, TypeError, struct.error, OverflowError) as e:
        # Length bytes are read by indexing, so a hello cut inside one raises
        # IndexError; turn that (and anything else missed) into the promised ValueError.
        raise ValueError(f"malformed ClientHello: {e}") from e


def _parse(b: bytes) -> ClientHelloInfo:
    if len(b) < 2 + 32 + 1:
        raise ValueError("ClientHello too short")
    legacy_version = b[0] << 8 | b[1]
    dtls = b[0] == 0xFE  # DTLS versions are 0xfeff, 0xfefd, 0xfefc; TLS are 0x03xx
    pos = 2 + 32  # version + random
    _session_id, pos = _vector(b, pos, 1)
    if dtls:
        _cookie, pos = _vector(b, pos, 1)
    ciphers_raw, pos = _vector(b, pos, 2)
    cipher_suites = _u16s(ciphers_raw)
    _compression, pos = _vector(b, pos, 1)

    extensions: list[int] = []
    supported_versions: tuple[int, ...] = ()
    supported_groups: tuple[int, ...] = ()
    ec_point_formats: tuple[int, ...] = ()
    signature_algorithms: tuple[int, ...] = ()
    alpn: tuple[bytes, ...] = ()
    sni: str | None = None
    cert_compression: tuple[int, ...] = ()

    if pos < len(b):  # SSLv3-era hellos may end here with no extensions block
        ext_block, _ = _vector(b, pos, 2)
        epos = 0
        n = len(ext_block)
        while epos < n:
            # Inlined (not _vector) because this loop runs ~16 times per hello.
            if epos + 4 > n:
                raise ValueError("truncated extension header")
            ext_type = ext_block[epos] << 8 | ext_block[epos + 1]
            start = epos + 4
            epos = start + (ext_block[epos + 2] << 8 | ext_block[epos + 3])
            if epos > n:
                raise ValueError("extension overruns the extensions block")
            extensions.append(ext_type)
            if ext_type not in _PARSED:
                continue
            data = ext_block[start:epos]
            if ext_type == EXT_SERVER_NAME:
                sni = _parse_sni(data) if data else None
            elif ext_type == EXT_ALPN:
                alpn = _parse_alpn(data)
            elif ext_type == EXT_SUPPORTED_GROUPS:
                supported_groups = _u16s(_whole_vector(data, 2))
            elif ext_type == EXT_EC_POINT_FORMATS:
                ec_point_formats = tuple(_whole_vector(data, 1))
            elif ext_type == EXT_SIGNATURE_ALGORITHMS:
                signature_algorithms = _u16s(_whole_vector(data, 2))
            elif ext_type == EXT_SUPPORTED_VERSIONS:
                supported_versions = _u16s(_whole_vector(data, 1))
            else:
                cert_compression = _u16s(_whole_vector(data, 1))

    return ClientHelloInfo(
        legacy_version=legacy_version,
        cipher_suites=cipher_suites,
        extensions=tuple(extensions),
        supported_versions=supported_versions,
        supported_groups=supported_groups,
        ec_point_formats=ec_point_formats,
        signature_algorithms=signature_algorithms,
        alpn_protocols=alpn,
        sni=sni,
        cert_compression=cert_compression,
        dtls=dtls,
    )


def client_hello_body_from_records(data: bytes) -> bytes:
    """Unwrap TLS records (as read from a TCP socket) down to the ClientHello body.

    Reassembles a ClientHello split over several handshake records (large post-quantum
    key shares make that common). Raises ValueError if the bytes are not a TLS
    handshake or do not yet hold the whole ClientHello.
    """
    handshake = bytearray()
    pos = 0
    while pos + 5 <= len(data):
        if data[pos] != _HANDSHAKE_RECORD:
            raise ValueError("not a TLS handshake record")
        length = data[pos + 3] << 8 | data[pos + 4]
        end = pos + 5 + length
        if end > len(data):
            break
        handshake += data[pos + 5 : end]
        pos = end
        if len(handshake) >= 4:
            if handshake[0] != _CLIENT_HELLO:
                raise ValueError("first handshake message is not a ClientHello")
            need = 4 + int.from_bytes(handshake[1:4], "big")
            if len(handshake) >= need:
                return bytes(handshake[4:need])
    raise ValueError("incomplete ClientHello")

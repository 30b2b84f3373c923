"""TLS ClientHello parsing, JA3, JA4 and the TLS stack family guess."""
from __future__ import annotations

import asyncio
import contextlib
import queue
import random
import socket
import ssl
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator

import pytest

from harness import require_executable
from scrapeshield.fingerprint.clienthello import client_hello_body_from_records
from scrapeshield.fingerprint.ja3 import ja3_string_to_md5
from scrapeshield.fingerprint.tls import (
    TlsFingerprint,
    fingerprint_client_hello,
    parse_client_hello,
)

# Test vectors (copied from shared/testvectors/tls_fingerprints.json so CI needs nothing
# outside the repo). The ClientHello is the Firefox hello in FoxIO-LLC/ja4's
# pcap/tls12.pcap with FoxIO's published JA4/JA4_r; the JA3 pairs are from the
# salesforce/ja3 README.
FIREFOX_HELLO = bytes.fromhex(
    "0303ecb2691addb2bf6c599c7aaae23de5f42561cc04eb41029acc6fc050a16ac1d22046f8617b58"
    "0ac9358e2aa44e306d52466bcc989c87c8ca64309f5faf50ba7b4d0022130113031302c02bc02fcc"
    "a9cca8c02cc030c00ac009c013c014009c009d002f00350100019100000021001f00001c636f6e74"
    "696c652e73657276696365732e6d6f7a696c6c612e636f6d00170000ff01000100000a000e000c00"
    "1d00170018001901000101000b00020100002300000010000e000c02683208687474702f312e3100"
    "05000501000000000022000a000804030503060302030033006b0069001d00208909858fbeb6ed2f"
    "1248ba5b9e2978bead0e840110192c61daed0096798b184400170041044d183d91f5eed35791fa98"
    "2464e3b0214aaa5f5d1b78616d9b9fbebc22d11f535b2f94c686143136aa795e6e5a875d6c08064a"
    "d5b76d44caad766e2483012748002b00050403040303000d00180016040305030603080408050806"
    "04010501060102030201002d00020101001c000240010015007a0000000000000000000000000000"
    "00000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000000000000000000000000000000000000000"
)
FIREFOX_JA3 = (
    "771,"
    "4865-4867-4866-49195-49199-52393-52392-49196-49200-49162-49161-49171-49172-156-157-47-53,"
    "0-23-65281-10-11-35-16-5-34-51-43-13-45-28-21,"
    "29-23-24-25-256-257,"
    "0"
)
FIREFOX_JA3_MD5 = "579ccef312d18482fc42e2b822ca2430"
FIREFOX_JA4 = "t13d1715h2_5b57614c22b0_3d5424432f57"
FIREFOX_JA4_R = (
    "t13d1715h2_"
    "002f,0035,009c,009d,1301,1302,1303,c009,c00a,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_"
    "0005,000a,000b,000d,0015,0017,001c,0022,0023,002b,002d,0033,ff01_"
    "0403,0503,0603,0804,0805,0806,0401,0501,0601,0203,0201"
)
JA3_MD5_PAIRS = [
    (
        "769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0",
        "ada70206e40642a3e4461f35503241d5",
    ),
    ("769,4-5-10-9-100-98-3-6-19-18-99,,,", "de350869b8c85de67a350c8d186f11e6"),
]
SPEC_JA4 = "t13d1516h2_8daaf6152771_e5627efa2ab1"  # the JA4 specification's example


@pytest.fixture(scope="module")
def firefox_body() -> bytes:
    return FIREFOX_HELLO


# --- building synthetic ClientHellos --------------------------------------------------

def _u16(v: int) -> bytes:
    return struct.pack(">H", v)


def _vec(data: bytes, len_bytes: int) -> bytes:
    return len(data).to_bytes(len_bytes, "big") + data


def _u16_list(values: list[int], len_bytes: int = 2) -> bytes:
    return _vec(b"".join(_u16(v) for v in values), len_bytes)


def build_client_hello(
    ciphers: list[int],
    extensions: list[int],
    *,
    sni: str | None = "example.com",
    alpn: list[bytes] | None = None,
    versions: list[int] | None = None,
    groups: list[int] | None = None,
    sigalgs: list[int] | None = None,
    point_formats: list[int] | None = None,
    cert_compression: list[int] | None = None,
    legacy_version: int = 0x0303,
) -> bytes:
    """A ClientHello body with the given extension types in order; known types get
    well-formed contents, the rest are empty."""
    contents = {
        0x0000: (_vec(b"\x00" + _vec(sni.encode(), 2), 2) if sni else b""),
        0x0010: _vec(b"".join(_vec(p, 1) for p in (alpn or [b"h2", b"http/1.1"])), 2),
        0x002B: _u16_list(versions or [0x0304, 0x0303], 1),
        0x000A: _u16_list(groups or [0x001D, 0x0017, 0x0018]),
        0x000D: _u16_list(sigalgs or [0x0403, 0x0804, 0x0401]),
        0x000B: _vec(bytes(point_formats or [0]), 1),
        0x001B: _u16_list(cert_compression or [0x0002], 1),
    }
    ext_bytes = b"".join(_u16(t) + _vec(contents.get(t, b""), 2) for t in extensions)
    return (
        _u16(legacy_version)
        + bytes(32)
        + _vec(bytes(32), 1)
        + _u16_list(ciphers)
        + _vec(b"\x00", 1)
        + _vec(ext_bytes, 2)
    )


def hexes(text: str) -> list[int]:
    return [int(x, 16) for x in text.split(",")]


# The JA4 specification's worked example, rebuilt from its JA4_ro (original order).
SPEC_CIPHERS = hexes("1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035")
SPEC_EXTENSIONS = hexes(
    "001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015"
)
SPEC_SIGALGS = hexes("0403,0804,0401,0503,0805,0501,0806,0601")


def spec_example(grease: bool = False) -> bytes:
    ciphers, extensions = list(SPEC_CIPHERS), list(SPEC_EXTENSIONS)
    if grease:
        ciphers.insert(0, 0x2A2A)
        extensions.insert(0, 0x8A8A)
        extensions.append(0xFAFA)
    return build_client_hello(ciphers, extensions, sigalgs=SPEC_SIGALGS)


# --- published vectors -----------------------------------------------------------------

def test_ja3_string_matches_published_vector() -> None:
    assert fingerprint_client_hello(FIREFOX_HELLO).ja3 == FIREFOX_JA3


def test_ja3_hash_matches_published_vector() -> None:
    assert fingerprint_client_hello(FIREFOX_HELLO).ja3_hash == FIREFOX_JA3_MD5


def test_ja4_matches_published_vector() -> None:
    assert fingerprint_client_hello(FIREFOX_HELLO).ja4 == FIREFOX_JA4


def test_ja4_r_matches_published_vector() -> None:
    assert fingerprint_client_hello(FIREFOX_HELLO).ja4_r == FIREFOX_JA4_R


@pytest.mark.parametrize(("ja3", "md5"), JA3_MD5_PAIRS)
def test_ja3_string_to_md5_matches_published_pairs(ja3: str, md5: str) -> None:
    assert ja3_string_to_md5(ja3) == md5


def test_ja4_of_rebuilt_spec_example_matches_the_spec() -> None:
    assert fingerprint_client_hello(spec_example()).ja4 == SPEC_JA4


def test_chrome_143_capture_rebuilt_gives_its_published_ja3_and_ja4() -> None:
    # A browserleaks.com capture of Chrome 143 (Android), as published with its JA3
    # text/hash and JA4: ciphers and extensions in wire order, GREASE already removed.
    ciphers = [4865, 4866, 4867, 49195, 49199, 49196, 49200, 52393, 52392, 49171, 49172,
               156, 157, 47, 53]
    extensions = [45, 51, 16, 65037, 23, 17613, 0, 11, 10, 43, 65281, 35, 18, 5, 13, 27]
    body = build_client_hello(
        ciphers, extensions, groups=[4588, 29, 23, 24], point_formats=[0],
        sigalgs=hexes("0403,0804,0401,0503,0805,0501,0806,0601"),
    )
    fp = fingerprint_client_hello(body)
    assert fp.ja3_hash == "98487aa16281980e7d1120d399efb6a4"
    assert fp.ja4 == "t13d1516h2_8daaf6152771_d8a2da3f94cd"


# --- JA4 details --------------------------------------------------------------------

def test_grease_values_are_ignored_by_ja3_and_ja4() -> None:
    plain = fingerprint_client_hello(spec_example(grease=False))
    greased = fingerprint_client_hello(spec_example(grease=True))
    assert (greased.ja3, greased.ja4, greased.ja4_r) == (plain.ja3, plain.ja4, plain.ja4_r)


def test_ja4_is_independent_of_extension_order() -> None:
    shuffled = list(SPEC_EXTENSIONS)
    random.Random(7).shuffle(shuffled)
    body = build_client_hello(SPEC_CIPHERS, shuffled, sigalgs=SPEC_SIGALGS)
    assert fingerprint_client_hello(body).ja4 == fingerprint_client_hello(spec_example()).ja4


def test_ja3_follows_extension_order() -> None:
    shuffled = list(SPEC_EXTENSIONS)
    random.Random(7).shuffle(shuffled)
    body = build_client_hello(SPEC_CIPHERS, shuffled, sigalgs=SPEC_SIGALGS)
    assert fingerprint_client_hello(body).ja3 != fingerprint_client_hello(spec_example()).ja3


def test_ja4_marks_missing_sni_with_i() -> None:
    body = build_client_hello(SPEC_CIPHERS, [e for e in SPEC_EXTENSIONS if e != 0], sni=None)
    assert fingerprint_client_hello(body).ja4.startswith("t13i1515h2_")


def test_ja4_prints_00_without_alpn() -> None:
    body = build_client_hello(SPEC_CIPHERS, [e for e in SPEC_EXTENSIONS if e != 0x10])
    assert fingerprint_client_hello(body).ja4.startswith("t13d151500_")


def test_ja4_uses_hex_for_non_alphanumeric_alpn() -> None:
    body = build_client_hello(SPEC_CIPHERS, SPEC_EXTENSIONS, alpn=[b"\x30\xab\xcd\x31"])
    assert fingerprint_client_hello(body).ja4[8:10] == "01"


def test_ja4_uses_q_for_quic() -> None:
    assert fingerprint_client_hello(spec_example(), quic=True).ja4.startswith("q13d")


def test_ja4_takes_version_from_legacy_field_without_supported_versions() -> None:
    body = build_client_hello(SPEC_CIPHERS, [e for e in SPEC_EXTENSIONS if e != 0x2B])
    assert fingerprint_client_hello(body).ja4.startswith("t12d1515h2_")


def test_ja4_prints_zeros_for_empty_cipher_and_extension_lists() -> None:
    body = build_client_hello([], [])
    assert fingerprint_client_hello(body).ja4 == "t12i000000_000000000000_000000000000"


def test_fingerprint_reports_alpn_offer_and_sni(firefox_body: bytes) -> None:
    fp = fingerprint_client_hello(firefox_body)
    assert fp.alpn_offered == ("h2", "http/1.1")
    assert fp.sni == "contile.services.mozilla.com"


def test_parser_keeps_grease_in_the_raw_fields() -> None:
    info = parse_client_hello(spec_example(grease=True))
    assert info.has_grease
    assert info.cipher_suites[0] == 0x2A2A


# --- robustness -----------------------------------------------------------------------

def _only_value_error(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        parse_client_hello(data)


def test_every_truncation_parses_or_raises_value_error(firefox_body: bytes) -> None:
    for cut in range(len(firefox_body)):
        _only_value_error(firefox_body[:cut])


def test_random_corruption_parses_or_raises_value_error(firefox_body: bytes) -> None:
    rng = random.Random(1234)
    for _ in range(3000):
        data = bytearray(firefox_body)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        _only_value_error(bytes(data))


def test_random_bytes_parse_or_raise_value_error() -> None:
    rng = random.Random(99)
    for _ in range(3000):
        _only_value_error(rng.randbytes(rng.randint(0, 300)))


def test_empty_input_raises_value_error() -> None:
    with pytest.raises(ValueError):
        parse_client_hello(b"")


def test_overrunning_extension_raises_value_error(firefox_body: bytes) -> None:
    with pytest.raises(ValueError):
        parse_client_hello(firefox_body[:-10])


# --- records ---------------------------------------------------------------------------

def _records(body: bytes, chunk: int) -> bytes:
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    out = b""
    for i in range(0, len(handshake), chunk):
        part = handshake[i : i + chunk]
        out += b"\x16\x03\x01" + _u16(len(part)) + part
    return out


def test_records_unwrap_to_the_client_hello_body(firefox_body: bytes) -> None:
    assert client_hello_body_from_records(_records(firefox_body, 16384)) == firefox_body


def test_client_hello_split_over_records_is_reassembled(firefox_body: bytes) -> None:
    assert client_hello_body_from_records(_records(firefox_body, 100)) == firefox_body


def test_incomplete_records_raise_value_error(firefox_body: bytes) -> None:
    with pytest.raises(ValueError):
        client_hello_body_from_records(_records(firefox_body, 100)[:-5])


# --- TLS family from properties ---------------------------------------------------------

def test_firefox_vector_is_firefox_family(firefox_body: bytes) -> None:
    assert fingerprint_client_hello(firefox_body).tls_family == "firefox"


def test_grease_with_alps_is_chromium_family() -> None:
    assert fingerprint_client_hello(spec_example(grease=True)).tls_family == "chromium"


def test_grease_with_zlib_certificate_compression_and_3des_is_safari_family() -> None:
    ciphers = [0x3A3A, 0x1301, 0x1302, 0x1303, 0xC02C, 0xC02B, 0xC008, 0xC012, 0x000A]
    extensions = [0x1A1A, 0x0000, 0x0017, 0xFF01, 0x000A, 0x000B, 0x0010, 0x0005,
                  0x000D, 0x0012, 0x0033, 0x002D, 0x002B, 0x001B, 0xFAFA, 0x0015]
    body = build_client_hello(ciphers, extensions, cert_compression=[0x0001])
    assert fingerprint_client_hello(body).tls_family == "safari"


def test_encrypt_then_mac_without_grease_is_openssl_family() -> None:
    body = build_client_hello([0x1302, 0x1303, 0x1301, 0xC02C],
                              [0x0000, 0x000B, 0x000A, 0x0023, 0x0016, 0x0017, 0x000D,
                               0x002B, 0x002D, 0x0033])
    assert fingerprint_client_hello(body).tls_family == "openssl"


def test_tls13_suites_listed_last_is_go_family() -> None:
    body = build_client_hello([0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0x1301,
                               0x1302, 0x1303],
                              [0x0000, 0x0005, 0x000A, 0x000B, 0x000D, 0xFF01, 0x0012,
                               0x0010, 0x002B, 0x0033])
    assert fingerprint_client_hello(body).tls_family == "go"


def test_stack_without_known_properties_is_unknown_family() -> None:
    body = build_client_hello([0x1301, 0xC02B], [0x0000, 0x000A, 0x000D, 0x002B, 0x0033])
    assert fingerprint_client_hello(body).tls_family == "unknown"


# --- real clients on this machine -------------------------------------------------------
# A raw TCP listener reads the first ClientHello and hangs up: no certificate needed,
# and every client fails fast right after sending its hello.

class HelloCatcher:
    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.hellos: queue.Queue[bytes] = queue.Queue()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}/"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(3)
                data = b""
                try:
                    while chunk := conn.recv(65536):
                        data += chunk
                        try:
                            self.hellos.put(client_hello_body_from_records(data))
                            break
                        except ValueError:
                            continue
                except OSError:
                    pass

    def capture(self, client: Callable[[str, int], object]) -> TlsFingerprint:
        with contextlib.suppress(Exception):  # the handshake is cut short on purpose
            client(self.url, self.port)
        return fingerprint_client_hello(self.hellos.get(timeout=5))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def catcher() -> Iterator[HelloCatcher]:
    c = HelloCatcher()
    yield c
    c.close()


def _python_ssl(url: str, port: int) -> None:
    ctx = ssl.create_default_context()
    with socket.create_connection(("localhost", port), timeout=3) as s:
        ctx.wrap_socket(s, server_hostname="localhost")


def _requests(url: str, port: int) -> None:
    import requests

    requests.get(url, timeout=3)


def _httpx(url: str, port: int) -> None:
    import httpx

    httpx.get(url, timeout=3)


def _aiohttp(url: str, port: int) -> None:
    import aiohttp

    async def go() -> None:
        async with aiohttp.ClientSession() as session:
            await session.get(url, timeout=aiohttp.ClientTimeout(total=3))

    asyncio.run(go())


def _curl(url: str, port: int) -> None:
    subprocess.run(["/usr/bin/curl", "-sk", "--max-time", "3", url], check=False)


def _curl_cffi(target: str) -> Callable[[str, int], None]:
    def client(url: str, port: int) -> None:
        from curl_cffi import requests as cffi_requests

        cffi_requests.get(url, impersonate=target, verify=False, timeout=3)

    return client


@pytest.mark.parametrize(
    "client",
    [_python_ssl, _requests, _httpx, _aiohttp],
    ids=["python-ssl", "requests", "httpx", "aiohttp"],
)
def test_python_clients_are_openssl_family(catcher: HelloCatcher, client: Callable) -> None:
    assert catcher.capture(client).tls_family == "openssl"


def test_curl_is_openssl_family(catcher: HelloCatcher) -> None:
    require_executable("/usr/bin/curl")
    fp = catcher.capture(_curl)
    assert fp.tls_family == "openssl"
    assert fp.alpn_offered[0] == "h2"


def test_curl_cffi_chrome_is_chromium_family(catcher: HelloCatcher) -> None:
    assert catcher.capture(_curl_cffi("chrome")).tls_family == "chromium"


def test_curl_cffi_chrome_gets_chrome_cipher_hash(catcher: HelloCatcher) -> None:
    # Impersonation works at the TLS layer: the JA4 cipher part equals real Chrome's.
    assert catcher.capture(_curl_cffi("chrome")).ja4.split("_")[1] == "8daaf6152771"


def test_curl_cffi_chrome_ja4_is_stable_while_ja3_changes(catcher: HelloCatcher) -> None:
    first = catcher.capture(_curl_cffi("chrome"))
    second = catcher.capture(_curl_cffi("chrome"))
    assert first.ja4 == second.ja4
    assert first.ja3 != second.ja3  # Chrome shuffles its extension order per connection


def test_curl_cffi_firefox_is_firefox_family(catcher: HelloCatcher) -> None:
    assert catcher.capture(_curl_cffi("firefox")).tls_family == "firefox"


def test_curl_cffi_safari_is_safari_family(catcher: HelloCatcher) -> None:
    assert catcher.capture(_curl_cffi("safari")).tls_family == "safari"

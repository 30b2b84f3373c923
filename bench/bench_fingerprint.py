"""Cost of fingerprinting, per connection and per request (median microseconds).

    PYTHONPATH=addons .venv/bin/python bench/bench_fingerprint.py

Per connection: ClientHello parse + JA3 + JA4 + TLS family (``fingerprint_client_hello``).
Per request: ``fingerprint_request`` = HTTP signature + UA class + consistency signals
(+ good-bot check), with warm caches (the steady state: same clients, same stacks),
and the cold paths a client rotating UAs or header stacks would force.
"""
from __future__ import annotations

import statistics
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

from scrapeshield.fingerprint import (
    GoodBotRegistry,
    classify_user_agent,
    fingerprint_client_hello,
    fingerprint_request,
    http_signature,
)

REPO = Path(__file__).resolve().parents[1]

# Firefox's ClientHello from FoxIO-LLC/ja4's pcap/tls12.pcap (1,2 kB).
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
    + "00" * 108
)


def _vec(data: bytes, n: int) -> bytes:
    return len(data).to_bytes(n, "big") + data


def _u16s(values: list[int], n: int = 2) -> bytes:
    return _vec(b"".join(struct.pack(">H", v) for v in values), n)


def chrome_like_hello() -> bytes:
    """A Chrome-shaped hello: GREASE, 16 extensions, 1,2 kB post-quantum key share."""
    ciphers = [0x4A4A, 0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9,
               0xCCA8, 0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035]
    ext = {
        0x0000: _vec(b"\x00" + _vec(b"www.example.com", 2), 2),
        0x0010: _vec(_vec(b"h2", 1) + _vec(b"http/1.1", 1), 2),
        0x000A: _u16s([0x8A8A, 0x11EC, 0x001D, 0x0017, 0x0018]),
        0x000B: _vec(b"\x00", 1),
        0x000D: _u16s([0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]),
        0x002B: _u16s([0x7A7A, 0x0304, 0x0303], 1),
        0x001B: _u16s([0x0002], 1),
        0x0033: _vec(struct.pack(">HH", 0x11EC, 1216) + bytes(1216), 2),
    }
    order = [0x9A9A, 0x002D, 0x0033, 0x0010, 0xFE0D, 0x0017, 0x44CD, 0x0000, 0x000B,
             0x000A, 0x002B, 0xFF01, 0x0023, 0x0012, 0x0005, 0x000D, 0x001B, 0x1A1A]
    exts = b"".join(struct.pack(">H", t) + _vec(ext.get(t, b""), 2) for t in order)
    return b"\x03\x03" + bytes(32) + _vec(bytes(32), 1) + _u16s(ciphers) + b"\x01\x00" + _vec(
        exts, 2
    )


CHROME_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
CHROME_NAV = {
    "sec-ch-ua": '"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"',
    "sec-ch-ua-mobile": "?0",
    "sec-ch-ua-platform": '"Windows"',
    "upgrade-insecure-requests": "1",
    "user-agent": CHROME_UA,
    "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "sec-fetch-site": "none",
    "sec-fetch-mode": "navigate",
    "sec-fetch-user": "?1",
    "sec-fetch-dest": "document",
    "accept-encoding": "gzip, deflate, br, zstd",
    "accept-language": "en-US,en;q=0.9",
    "cookie": "session=abc",
    "priority": "u=0, i",
}
REQUESTS_GET = {
    "Host": "example.com",
    "User-Agent": "python-requests/2.32.3",
    "Accept-Encoding": "gzip, deflate",
    "Accept": "*/*",
    "Connection": "keep-alive",
}
GOOGLEBOT = {
    "Host": "example.com",
    "User-Agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Accept": "text/html,*/*",
    "Accept-Encoding": "gzip",
}


def median_us(
    fn: Callable[[], object], *, batch: int = 200, rounds: int = 50
) -> tuple[float, float]:
    """Median (wall, CPU) microseconds per call over `rounds` batches.

    CPU time (this process only) is the steadier figure on a shared machine, where
    wall time also counts the time other processes held the core.
    """
    for _ in range(batch):  # warm caches and code paths
        fn()
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(rounds):
        w0, c0 = time.perf_counter_ns(), time.process_time_ns()
        for _ in range(batch):
            fn()
        wall.append((time.perf_counter_ns() - w0) / batch / 1000)
        cpu.append((time.process_time_ns() - c0) / batch / 1000)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    registry = GoodBotRegistry.load(REPO / "policies" / "goodbots")
    chrome_hello = chrome_like_hello()
    chrome_tls = fingerprint_client_hello(chrome_hello)

    def request(headers: dict[str, str], tls: object, ip: str) -> Callable[[], object]:
        names = list(headers)
        lowered = {k.lower(): v for k, v in headers.items()}
        tls_fp = chrome_tls if tls else None
        version = "HTTP/2.0" if tls else "HTTP/1.1"
        alpn = "h2" if tls else None
        return lambda: fingerprint_request(
            names, lowered, http_version=version, alpn=alpn, is_tls=tls is not None,
            tls=tls_fp, client_ip=ip, goodbots=registry,
        )

    counter = iter(range(10**9))
    rows = [
        ("per connection", "Firefox hello, 1.2 kB: parse + JA3 + JA4 + family",
         lambda: fingerprint_client_hello(FIREFOX_HELLO), 200),
        ("per connection", "Chrome-shaped hello, 1.9 kB (PQ key share)",
         lambda: fingerprint_client_hello(chrome_hello), 200),
        ("per request", "Chrome navigation, warm caches, 14 headers",
         request(CHROME_NAV, True, "198.51.100.7"), 200),
        ("per request", "python-requests GET, warm caches",
         request(REQUESTS_GET, None, "198.51.100.7"), 200),
        ("per request", "Googlebot from Google range (verified)",
         request(GOOGLEBOT, None, "66.249.66.1"), 200),
        ("cold path", "new Chrome-like UA string (cache miss)",
         lambda: classify_user_agent(f"{CHROME_UA} r/{next(counter)}"), 20),
        ("cold path", "new header stack (cache miss)",
         lambda: http_signature(["host", "accept", f"x-{next(counter)}"], "HTTP/1.1", None), 20),
    ]
    print(f"python {sys.version.split()[0]}; median microseconds per call")
    print(f"  {'':15} {'wall':>8} {'cpu':>8}")
    for scope, label, fn, batch in rows:
        wall, cpu = median_us(fn, batch=batch)
        print(f"  {scope:15} {wall:8.2f} {cpu:8.2f}  {label}")


if __name__ == "__main__":
    main()

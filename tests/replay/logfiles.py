"""Generated access logs for the replay tests: realistic lines, many clients, written fast."""
from __future__ import annotations

import time
from pathlib import Path

_UAS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Safari/605.1.15",
    "python-requests/2.32.3",
    "Scrapy/2.11.2 (+https://scrapy.org)",
)
_T0 = 1795946400  # 2026-11-29T10:00:00Z


def combined_line(i: int, clients: int, pad: int = 0) -> str:
    """Line `i` of a log where `clients` addresses take turns, one request per 10 ms overall."""
    c = i % clients
    ip = f"10.{(c >> 16) & 255}.{(c >> 8) & 255}.{c & 255}"
    when = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(_T0 + i // 100))
    path = f"/api/users/{i % 5000}?page={i % 97}&sort=name" + ("&utm_content=" + "x" * pad if pad else "")
    return (f'{ip} - - [{when}] "GET {path} HTTP/1.1" 200 {512 + i % 300} '
            f'"https://shop.example/products?page={i % 40}" "{_UAS[c % len(_UAS)]}"\n')


def write_combined_log(path: Path, *, size: int, clients: int = 5000, pad: int = 0) -> int:
    """Write a `combined` log of at least `size` bytes; returns the number of lines.

    A block of distinct lines is built once and repeated with shifted timestamps, so a
    gigabyte takes seconds to write rather than minutes.
    """
    block_lines = 20_000
    written = lines = 0
    with open(path, "w", encoding="ascii", buffering=1 << 20) as fh:
        while written < size:
            block = "".join(combined_line(lines + k, clients, pad) for k in range(block_lines))
            fh.write(block)
            written += len(block)
            lines += block_lines
    return lines

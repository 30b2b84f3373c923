#!/usr/bin/env python3
"""What reading an HTML response for the detectors costs: mitmproxy's `get_content()` (the whole
body decoded) against `mitm/bodyprefix.decoded_prefix` (only the first `assets_scan_bytes`),
per Content-Encoding and page size, and the asset scan of that prefix beside them.

    .venv/bin/python bench/bench_bodyprefix.py

Pages are generated (seeded): a head with 6 stylesheets and 8 scripts, then paragraphs of random
words with an image in ~30 % of them, compressed as an origin would send them. Each figure is the
best of 5 repeats of N calls, in µs a call; mitmproxy's single-entry decode cache is emptied before
each `get_content()` call (a proxy decodes each response once).
"""
from __future__ import annotations

import random
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "addons"))

from mitmproxy import http
from mitmproxy.net import encoding

from scrapeshield.detectors.assets import asset_refs
from scrapeshield.detectors.config import DetectorConfig
from scrapeshield.mitm.bodyprefix import decoded_prefix

SIZES = (20_000, 150_000, 500_000)
CODINGS = ("identity", "gzip", "br", "zstd")


def page(size: int, rng: random.Random) -> bytes:
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10))) for _ in range(3000)]
    parts = ["<!doctype html><html><head><title>shop</title>",
             *(f"<link rel=stylesheet href=/static/c{i}.css>" for i in range(6)),
             *(f"<script src=/static/j{i}.js></script>" for i in range(8)), "</head><body>"]
    length = sum(map(len, parts))
    while length < size:
        part = "<p class=item>" + " ".join(rng.choice(words) for _ in range(40)) + "</p>\n"
        if rng.random() < 0.3:
            part += f"<img src=/img/p{rng.randint(1, 9999)}.jpg alt=x>"
        parts.append(part)
        length += len(part)
    parts.append("</body></html>")
    return "".join(parts).encode()


def best_us(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    return min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6


def main() -> None:
    config = DetectorConfig()
    limit, max_refs = config.assets_scan_bytes, config.assets_max_refs
    rng = random.Random(1)
    print(f"assets_scan_bytes {limit}, assets_max_refs {max_refs}; µs a call, best of 5")
    print(f"{'html bytes':>10} {'coding':<8} {'sent bytes':>10} {'get_content':>11} {'decoded_prefix':>14} {'scan':>6}")
    for size in SIZES:
        body = page(size, rng)
        n = 200 if size > 100_000 else 1000
        for coding in CODINGS:
            raw = encoding.encode(body, coding)
            response = http.Response.make(200, b"", {"content-type": "text/html", "content-encoding": coding})
            response.raw_content = raw

            def whole(response: http.Response = response) -> bytes | None:
                encoding._cache = encoding.CachedDecode(None, None, None, None)
                return response.get_content(strict=False)

            prefix = decoded_prefix(raw, coding, limit)
            assert prefix == body[:limit]
            t_whole = best_us(whole, n)
            t_prefix = best_us(lambda raw=raw, coding=coding: decoded_prefix(raw, coding, limit), n)
            t_scan = best_us(lambda prefix=prefix: asset_refs(prefix, limit, max_refs), n)
            print(f"{len(body):>10,} {coding:<8} {len(raw):>10,} {t_whole:>11.1f} {t_prefix:>14.1f} {t_scan:>6.1f}")


if __name__ == "__main__":
    main()

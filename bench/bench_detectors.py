"""Detector cost: per-request time of the full DetectorSet and memory per tracked identity.

    PYTHONPATH=addons .venv/bin/python bench/bench_detectors.py [--identities 50000] [--requests 200000]

Times are CPU time of this process (time.process_time_ns) over batches of 1000 calls, so other load on
the machine inflates them less than wall time would; the figure is the median batch, per call.
Memory is tracemalloc's count of bytes allocated while building the identities (key string included).
"""
from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from scrapeshield.detectors import DetectorConfig, DetectorSet, Observation
from scrapeshield.detectors.synthetic import page_html, page_refs

T0 = 1_700_000_000.0
BATCH = 1000
DETECTORS = ("distinct", "sequence", "probe", "assets", "timing")
BIG_HTML = (
    b"<html><head>" + b"".join(b'<link rel="stylesheet" href="/c/%d.css">' % i for i in range(4))
    + b"</head><body>"
    + b"".join(b'<div class="card"><a href="/p/%d"><img src="/i/%d.jpg" alt="x"></a>'
               b"<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit.</p></div>" % (i, i) for i in range(600))
    + b"</body></html>"
)


def key_of(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def page(path: str, t: float, query: str = "") -> Observation:
    return Observation(path, query, "GET", True, False, t)


def asset(path: str, t: float) -> Observation:
    return Observation(path, "", "GET", False, True, t)


def typical_identity(d: DetectorSet, key: str, rng: random.Random, t: float) -> None:
    """A person-sized history: home with the site chrome, two product pages with their own images
    (one with a numeric ID), an API call per page, reading pauses."""
    for n, path in enumerate(("/", f"/product/item-{rng.randint(1, 10**6)}", f"/category/c{rng.randint(1, 50)}")):
        d.observe_request(key, page(path, t))
        refs = page_refs(path)
        d.observe_response(key, 200, "text/html", page_html(refs), t + 0.1)
        for ref in refs if n == 0 else refs[3:]:
            d.observe_request(key, asset(ref, t + 0.3))
        d.observe_request(key, Observation("/api/cart", "", "GET", False, False, t + 0.5))
        d.observe_response(key, 200, "application/json", None, t + 0.6)
        t += rng.uniform(2, 10)


def heavy_identity(d: DetectorSet, key: str, t: float) -> None:
    """A harvester at the per-identity caps: 300 distinct IDs in 8 series, 8 pending pages of 24 refs,
    2 x 64 known assets."""
    for i in range(300):
        d.observe_request(key, page(f"/section-{chr(97 + i % 8)}/{i}", t + i * 0.01))
        body = b"".join(b'<img src="/i/%d-%d.png">' % (i, j) for j in range(24)) if i >= 290 else None
        d.observe_response(key, 404 if i % 4 == 0 else 200, "text/html", body, t + i * 0.01)
        if i < 128:
            d.observe_request(key, asset(f"/a/{i}.css", t + i * 0.01))


def request_mix(n: int, identities: int, rng: random.Random) -> list[tuple[str, Observation]]:
    """60% assets, 30% pages (a third with a numeric ID), 10% API calls, over the tracked identities."""
    out = []
    t = T0 + 10_000.0
    for _ in range(n):
        t += 0.0005
        key = key_of(rng.randrange(identities))
        r = rng.random()
        if r < 0.6:
            obs = asset(f"/media/img-{rng.randint(1, 5000)}.jpg", t)
        elif r < 0.7:
            obs = page(f"/user/{rng.randint(1, 10**6)}", t)
        elif r < 0.9:
            obs = page(f"/product/{rng.choice(('blue', 'red', 'green'))}-shoes", t)
        else:
            obs = Observation("/api/search", f"q=w{rng.randint(1, 100)}", "GET", False, False, t)
        out.append((key, obs))
    return out


def median_us(calls: Sequence[Callable[[], object]]) -> float:
    """Median over batches of BATCH calls of CPU microseconds per call."""
    per_batch = []
    gc.collect()
    for start in range(0, len(calls) - BATCH + 1, BATCH):
        batch = calls[start:start + BATCH]
        t0 = time.process_time_ns()
        for call in batch:
            call()
        per_batch.append((time.process_time_ns() - t0) / BATCH / 1000)
    return statistics.median(per_batch)


def requests_of(d: DetectorSet, mix: Sequence[tuple[str, Observation]]) -> list[Callable[[], object]]:
    return [partial(d.observe_request, k, o) for k, o in mix]


def populated(config: DetectorConfig, identities: int) -> DetectorSet:
    d = DetectorSet(config)
    rng = random.Random(1)
    for i in range(identities):
        typical_identity(d, key_of(i), rng, T0 + i * 0.01)
    return d


def bench_time(identities: int, requests: int) -> None:
    mix = request_mix(requests, identities, random.Random(2))
    pages = [(k, o) for k, o in mix if not o.is_asset]
    assets = [(k, o) for k, o in mix if o.is_asset]
    d = populated(DetectorConfig(), identities)
    row = "{:<58} {:8.2f}".format
    print(f"== time: CPU us per call, median of {BATCH}-call batches; {identities} tracked identities")
    print(row("observe_request, mixed (60% assets, 30% pages, 10% API)", median_us(requests_of(d, mix))))
    print(row("observe_request, pages and API calls only", median_us(requests_of(d, pages))))
    print(row("observe_request, assets only", median_us(requests_of(d, assets))))
    times = [(k, o.now) for k, o in mix]
    print(row("observe_response, not HTML",
              median_us([partial(d.observe_response, k, 200, "image/jpeg", None, t) for k, t in times])))
    bodies = [page_html(page_refs(f"/product/p{i}")) for i in range(20 * BATCH)]
    print(row(f"observe_response, HTML page ({len(bodies[0]) // 1024} KiB, 5 refs)",
              median_us([partial(d.observe_response, k, 200, "text/html", b, t)
                         for (k, t), b in zip(times, bodies, strict=False)])))
    print(row(f"observe_response, HTML page ({len(BIG_HTML) // 1024} KiB, 600 imgs, 24 refs kept)",
              median_us([partial(d.observe_response, k, 200, "text/html", BIG_HTML, t)
                         for k, t in times[:5 * BATCH]])))
    full = DetectorSet(DetectorConfig(max_keys=identities))
    for i in range(identities):
        full.observe_request(key_of(i), page("/", T0))
    fresh = [(f"new-{i}", o) for i, (_, o) in enumerate(pages[:50 * BATCH])]
    print(row("observe_request, new identity into a full table (evicts)", median_us(requests_of(full, fresh))))

    n = max(identities // 5, 1)
    print(f"== per detector: pages and API calls, {n} identities; each detector alone minus all off,")
    print("   batches interleaved across the configurations and differences paired per batch")
    off: dict[str, Any] = {f"{name}_enabled": False for name in DETECTORS}
    configs = {"off": DetectorConfig(**off)}
    configs.update({name: DetectorConfig(**{**off, f"{name}_enabled": True}) for name in DETECTORS})
    page_mix = [(k, o) for k, o in request_mix(requests, n, random.Random(3)) if not o.is_asset]
    per_batch = interleaved_us(configs, n, page_mix)
    print(row("identity lookup + result mapping (all detectors off)", statistics.median(per_batch["off"])))
    for name in DETECTORS:
        paired = [a - b for a, b in zip(per_batch[name], per_batch["off"], strict=True)]
        print(row(f"  + {name}", statistics.median(paired)))


def interleaved_us(configs: dict[str, DetectorConfig], identities: int,
                   mix: Sequence[tuple[str, Observation]]) -> dict[str, list[float]]:
    """Per-batch CPU us per call of each configuration, batches run round-robin so that load on the
    machine hits every configuration alike."""
    sets = {name: populated(config, identities) for name, config in configs.items()}
    samples: dict[str, list[float]] = {name: [] for name in sets}
    order = list(sets)
    gc.collect()
    for start in range(0, len(mix) - BATCH + 1, BATCH):
        batch = mix[start:start + BATCH]
        order.append(order.pop(0))
        for name in order:
            d = sets[name]
            t0 = time.process_time_ns()
            for k, o in batch:
                d.observe_request(k, o)
            samples[name].append((time.process_time_ns() - t0) / BATCH / 1000)
    return samples


def bench_memory(identities: int) -> None:
    heavy = max(identities // 20, 1)
    print("== memory: bytes per identity (tracemalloc), global asset-ref table excluded")
    def typical(d: DetectorSet, i: int, rng: random.Random) -> None:
        typical_identity(d, key_of(i), rng, T0 + i * 0.01)

    def harvester(d: DetectorSet, i: int, rng: random.Random) -> None:
        heavy_identity(d, key_of(i), T0 + i * 0.01)

    cases: list[tuple[str, int, Callable[[DetectorSet, int, random.Random], None]]] = [
        ("typical: 3 pages, their assets, 3 API calls", identities, typical),
        ("heavy: a harvester at every per-identity cap", heavy, harvester),
    ]
    for label, n, build in cases:
        gc.collect()
        tracemalloc.start()
        d = DetectorSet(DetectorConfig(assets_shared_pages=0))
        rng = random.Random(3)
        before = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            build(d, i, rng)
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        print(f"{label:<46} {used / n:8.0f}   ({n} identities: {used / 2**20:.1f} MiB)")
        del d


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--identities", type=int, default=50_000, help="tracked identities (time and memory)")
    p.add_argument("--requests", type=int, default=200_000, help="requests timed per scenario")
    p.add_argument("--skip-memory", action="store_true")
    args = p.parse_args()
    bench_time(args.identities, args.requests)
    if not args.skip_memory:
        bench_memory(args.identities)


if __name__ == "__main__":
    main()

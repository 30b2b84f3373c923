"""Synthetic traffic for tests, benchmarks and calibration: a person browsing with a
real browser, and harvesters. Deterministic given a `random.Random`.

The synthetic site: every page references the site chrome (a stylesheet, a
script, a logo) plus one or two images of its own, so pages look like real ones
to the asset detector.
"""
from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from . import DetectorSet, Observation

CHROME = ("/static/site.css", "/static/app.js", "/img/logo.svg")


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    content_type: str | None
    body: bytes | None
    now: float
    is_asset: bool = False


def page_refs(path: str, own_images: int = 2) -> list[str]:
    slug = path.strip("/").replace("/", "-").replace("?", "-").replace("=", "-") or "home"
    return [*CHROME, *(f"/media/{slug}-{i}.jpg" for i in range(own_images))]


def page_html(refs: Sequence[str]) -> bytes:
    head = "".join(f'<link rel="stylesheet" href="{r}">' for r in refs if r.endswith(".css"))
    head += "".join(f'<script src="{r}" defer></script>' for r in refs if r.endswith(".js"))
    imgs = "".join(f'<img src="{r}" alt="">' for r in refs if not r.endswith((".css", ".js")))
    filler = "<p>" + "Lorem ipsum dolor sit amet. " * 40 + "</p>"
    html = f"<!doctype html><html><head><title>t</title>{head}</head><body>{filler}{imgs}{filler}</body></html>"
    return html.encode()


def _request(path: str, query: str, now: float, *, document: bool, asset: bool) -> Observation:
    return Observation(path=path, query=query, method="GET", is_document=document, is_asset=asset, now=now)


def browse(
    rng: random.Random, pages: Sequence[str], start: float, *,
    pause: tuple[float, float] = (2.0, 15.0), cache: set[str] | None = None,
) -> list[Observation | Response]:
    """A person in a browser: each page, then (after it renders) the assets not yet in the browser
    cache, one API call from the page's script, then a reading pause with jitter."""
    cache = set() if cache is None else cache
    events: list[Observation | Response] = []
    t = start
    for page in pages:
        path, _, query = page.partition("?")
        events.append(_request(path, query, t, document=True, asset=False))
        t += rng.uniform(0.05, 0.4)
        refs = page_refs(page)
        events.append(Response(200, "text/html; charset=utf-8", page_html(refs), t))
        for ref in refs:
            if ref in cache:
                continue
            t += rng.uniform(0.005, 0.08)
            cache.add(ref)
            events.append(_request(ref, "", t, document=False, asset=True))
            events.append(Response(200, "image/jpeg", None, t + 0.01, is_asset=True))
        t += rng.uniform(0.1, 0.5)
        events.append(_request("/api/cart", "", t, document=False, asset=False))
        events.append(Response(200, "application/json", None, t + 0.02))
        t += rng.uniform(*pause)
    return events


def person_pages(rng: random.Random) -> list[str]:
    """Home, several products (some twice), a category, a few random profiles, back home."""
    products = [f"/product/{name}" for name in rng.sample(
        ["blue-shoes", "red-hat", "green-scarf", "wool-socks", "rain-coat", "tote-bag", "sun-glasses"], 6)]
    profiles = [f"/user/{rng.randint(1000, 99_999)}" for _ in range(3)]
    return ["/", "/category/clothes", *products[:3], "/category/clothes", *products[3:], products[0],
            *profiles, "/"]


def harvest(
    paths: Iterable[str], start: float, interval: float, *,
    rng: random.Random | None = None, jitter: float = 0.0, missing: frozenset[str] = frozenset(),
) -> list[Observation | Response]:
    """A harvester: pages only, never assets, one every `interval` (+- jitter) seconds.
    Paths in `missing` answer 404."""
    rng = rng or random.Random(0)
    events: list[Observation | Response] = []
    t = start
    for page in paths:
        path, _, query = page.partition("?")
        events.append(_request(path, query, t, document=True, asset=False))
        if page in missing:
            events.append(Response(404, "text/html", b"<html><body>not found</body></html>", t + 0.05))
        else:
            events.append(Response(200, "text/html", page_html(page_refs(page)), t + 0.05))
        t += interval + (rng.uniform(-jitter, jitter) if jitter else 0.0)
    return events


def play(
    detectors: DetectorSet, key: str, events: Iterable[Observation | Response], *, bodies: bool = True,
) -> list[Mapping[str, float]]:
    """Feed events in order; returns the signals of each request. `bodies=False` is replay
    without response bodies."""
    signals: list[Mapping[str, float]] = []
    for e in events:
        if isinstance(e, Response):
            detectors.observe_response(
                key, e.status, e.content_type, e.body if bodies else None, e.now, is_asset=e.is_asset)
        else:
            signals.append(detectors.observe_request(key, e))
    return signals


def page_signals(events: Sequence[Observation | Response], signals: Sequence[Mapping[str, float]]
                 ) -> list[Mapping[str, float]]:
    """The signals of the document requests only (one per page), in order."""
    requests = [e for e in events if not isinstance(e, Response)]
    return [s for e, s in zip(requests, signals, strict=True) if e.is_document]

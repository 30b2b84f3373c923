"""Missing assets: clients that fetch pages but not the CSS/JS/images on them.

A browser that renders a page fetches its stylesheets, scripts and images
(unless cached); a harvester parsing HTML does not. Two modes:

With bodies (live proxy). On an HTML response we extract the page's
same-origin asset references (first `scan_bytes`, first `max_refs` refs:
`<link rel=stylesheet|preload>`, `<script src>`, `<img src>`), drop those
this identity already fetched (the browser has them cached) and those the
site uses on many pages (learned globally: a returning visitor has the site
chrome cached from an earlier visit we no longer remember), and keep the rest
pending for `grace_s`. An asset request that matches a pending ref marks its
page fed. When the grace time is over the page is judged: "starved" if not
one of its pending refs was fetched. The signal is the starved share of the
last `verdicts` judged pages, once `min_pages` were judged. Pages with no
pending refs are neutral: they neither accuse nor excuse.

What is left out on purpose, because browsers legitimately don't fetch it:
images with `srcset`/`loading=lazy`/`data-src`, `nomodule` scripts, anything
inside `<noscript>`, `<template>`, comments or inline scripts, and absolute
or protocol-relative URLs (CDNs and other hosts the proxy never sees).
References are matched by file name (last path segment, query dropped), so
relative URLs need no resolving; collisions can only excuse, never accuse.

Without bodies (replay, or bodies not passed). Count document vs asset
requests: an identity with `fallback_start`+ documents and fewer than
`fallback_max_ratio` assets per document is suspicious, fully at
`fallback_full` documents. An identity for which we have seen any HTML body
is judged by the body mode only.

Per identity: pending refs are 4-byte hashes in one bytearray (page order,
so a judged page's leftovers are a prefix), known-fetched assets are two
generations of sorted 32-bit arrays of `known_cap` each.
"""
from __future__ import annotations

import copy
import re
from array import array
from bisect import bisect_left, insort
from typing import TYPE_CHECKING

from cachetools import LRUCache
from mypy_extensions import mypyc_attr

from .strength import ramp, stable_hash

if TYPE_CHECKING:  # identities.py imports this module
    from .identities import IdentityState

# Tag names are matched with explicit case classes: re.IGNORECASE makes the whole scan about
# twice as slow, and lower-casing the body costs a copy.
_TAG = re.compile(
    rb"<(?:!--.*?-->"
    rb"|(?P<skip>[nN][oO][sS][cC][rR][iI][pP][tT]|[tT][eE][mM][pP][lL][aA][tT][eE])\b.*?</(?P=skip)\s*>"
    rb"|[sS][cC][rR][iI][pP][tT]\b(?P<script>[^>]*)>.*?</[sS][cC][rR][iI][pP][tT]\s*>"
    rb"|(?P<tag>[lL][iI][nN][kK]|[iI][mM][gG])\b(?P<attrs>[^>]*)>)",
    re.S,
)


def _value_name(end: bytes) -> bytes:
    """The pattern of a same-origin URL in a value made of anything but `end`'s bytes: blanks, no
    `//` start, no `:` before the first `/`, the path up to its last `/` (before any `?` or `#`),
    then two groups: the file name, and the query or fragment after it (if any)."""
    return (rb"\s*+(?!//)(?![^" + end + rb"/]*:)(?:[^" + end + rb"?#]*/)?([^" + end + rb"/?#]*)"
            rb"([?#][^" + end + rb"]*)?(?![^" + end + rb"])")


# The first `src` or `href` attribute of a tag's attributes and, in the same match, the file name
# of its value when that is a same-origin URL: groups (1, 2), (3, 4) or (5, 6) by how the value is
# quoted, the name and the query or fragment after it; none of them matched when the value is an
# absolute (`https:`, `data:`) or a `//host/` URL. A value that is no such URL is still matched
# whole (the `|[^"]*` fallbacks), so it never sends the search on to a later attribute. Leading
# blanks are taken possessively (`*+`): giving one back must not let the `//` and scheme checks
# start inside them. One regex instead of a second pass over the value in Python: ~17 µs less a
# 20 KB page's scan (BENCHMARKS.md); tests/unit/test_detectors_assets.py holds it to that two-step
# reference.
_URL_ATTR = re.compile(
    rb"(?<![\w-])(?:[sS][rR][cC]|[hH][rR][eE][fF])\s*=\s*(?:"
    rb'"(?:' + _value_name(b'"') + rb'|[^"]*)"'
    rb"|'(?:" + _value_name(b"'") + rb"|[^']*)'"
    rb"""|(?=[^\s"'>])(?:""" + _value_name(rb"""\s"'>""") + rb"""|[^\s"'>]+))"""
)


def file_name(path: str) -> str:
    """The key both sides are matched on: last path segment, without query."""
    return path.partition("?")[0].rpartition("/")[2]


def name_hash(name: str) -> int:
    return stable_hash(name)


def fetched_tag_attrs(m: re.Match[bytes]) -> bytes | None:
    """The attributes of a tag `_TAG` found whose reference a browser fetches; None for a comment,
    `<noscript>` or `<template>`, and for what browsers may leave unfetched (a `nomodule` script,
    a `<link>` that is no stylesheet or preload, a lazy or `srcset` image)."""
    attrs = m["script"]
    if attrs is not None:
        return None if b"nomodule" in attrs.lower() else attrs
    tag = m["tag"]
    if tag is None:
        return None  # comment, <noscript>, <template>
    attrs = m["attrs"]
    low = attrs.lower()
    if tag[0] in b"lL":
        if b"stylesheet" not in low and b"preload" not in low:
            return None
    elif b"srcset" in low or b"lazy" in low or b"data-src" in low:
        return None
    return attrs


def asset_refs(body: bytes, scan_bytes: int, max_refs: int) -> list[str]:
    """File names of the same-origin assets a browser will fetch for this page:
    in document order, unique, at most `max_refs`, from the first `scan_bytes` of the body."""
    refs: list[str] = []
    seen: set[str] = set()
    for m in _TAG.finditer(body, 0, scan_bytes):
        attrs = fetched_tag_attrs(m)
        if attrs is None:
            continue
        u = _URL_ATTR.search(attrs)
        if u is None:
            continue
        found = u.lastindex  # None: the URL is not same-origin
        if found is None:
            continue
        # The last group matched is the name's (odd), or the query's after it: without a query or
        # fragment, blanks at the value's end are not the name's.
        raw = u[found - 1] if found % 2 == 0 else u[found].rstrip()
        if not raw:
            continue
        name = raw.decode("latin-1")
        if name not in seen:
            seen.add(name)
            refs.append(name)
            if len(refs) >= max_refs:
                break
    return refs


@mypyc_attr(acyclic=True)  # never in a reference cycle: not tracked by the GC (compiled)
class PendingPage:
    __slots__ = ("deadline", "fetched", "remaining")

    def __init__(self, deadline: float, remaining: int) -> None:
        self.deadline = deadline
        self.remaining = remaining  # its refs still in AssetLedger.pending
        self.fetched = 0

    def copy(self) -> PendingPage:
        page = PendingPage(self.deadline, self.remaining)
        page.fetched = self.fetched
        return page


# What `MissingAssets` reads and writes: an `AssetLedger`, or the detectors' per-identity state, which
# holds the same fields inline (one object less an identity). A union of the two classes, not a
# Protocol: compiled (mypyc), a field of either is then read in place instead of looked up by name.
type LedgerFields = AssetLedger | IdentityState


@mypyc_attr(acyclic=True)  # never in a reference cycle: not tracked by the GC (compiled)
class AssetLedger:
    """One identity's pages, pending refs, fetched assets and verdicts."""

    __slots__ = ("assets", "documents", "html_pages", "judged", "known", "known_old", "pages", "pending", "verdicts")

    def __init__(self) -> None:
        self.documents = 0
        self.assets = 0
        self.html_pages = 0
        self.pages: list[PendingPage] | None = None  # created with the first pending page
        self.pending: bytearray | None = None  # 4-byte big-endian ref hashes, oldest page first
        self.known: array[int] | None = None
        self.known_old: array[int] | None = None
        self.verdicts = 0  # shift register, bit set = starved page, newest is bit 0
        self.judged = 0


class MissingAssets:
    """Detector: starved-page share from `start` to `full` (bodies), or the request-type fallback."""

    __slots__ = (
        "_shared",
        "_verdict_mask",
        "fallback_full",
        "fallback_max_ratio",
        "fallback_start",
        "full",
        "grace_s",
        "known_cap",
        "max_pending",
        "max_refs",
        "min_pages",
        "scan_bytes",
        "shared_pages",
        "start",
        "verdict_window",
    )

    def __init__(
        self, *, grace_s: float, scan_bytes: int, max_refs: int, max_pending: int, known_cap: int,
        shared_pages: int, shared_max_refs: int, verdicts: int, min_pages: int, start: float, full: float,
        fallback_start: int, fallback_full: int, fallback_max_ratio: float,
    ) -> None:
        self.grace_s = grace_s
        self.scan_bytes = scan_bytes
        self.max_refs = max_refs
        self.max_pending = max_pending
        self.known_cap = known_cap
        self.shared_pages = shared_pages
        self.verdict_window = verdicts
        self.min_pages = min_pages
        self.start = start
        self.full = full
        self.fallback_start = fallback_start
        self.fallback_full = fallback_full
        self.fallback_max_ratio = fallback_max_ratio
        # ref hash -> [signature of the last page seen using it, pages using it]; global, bounded
        self._shared: LRUCache[int, list[int]] | None = (
            LRUCache(maxsize=shared_max_refs) if shared_pages > 0 else None
        )
        self._verdict_mask = (1 << verdicts) - 1

    def new_state(self) -> AssetLedger:
        return AssetLedger()

    def clear(self) -> None:
        if self._shared is not None:
            self._shared.clear()

    def copy_shared(self, source: MissingAssets) -> None:
        """Take a copy of `source`'s site-wide references (`DetectorSet.fork`: the same settings)."""
        self._shared = copy.deepcopy(source._shared)  # a cachetools LRUCache of lists: plain Python

    def shared_refs(self) -> int:
        return 0 if self._shared is None else len(self._shared)

    # -- request side --------------------------------------------------------------------------

    def on_page_request(self, led: LedgerFields, is_document: bool, now: float) -> float:
        if is_document:
            led.documents += 1
        if led.pages:
            self._judge_due(led, now)
        return self.strength(led)

    def on_asset_request(self, led: LedgerFields, h: int, now: float) -> None:
        led.assets += 1
        if not self._is_known(led, h):
            known = led.known
            if known is None:
                led.known = known = array("I")
            elif len(known) >= self.known_cap:
                led.known_old = known
                led.known = known = array("I")
            insort(known, h)
        if led.pending:
            self._mark_fetched(led, h)
        if led.pages:
            self._judge_due(led, now)

    # -- response side -------------------------------------------------------------------------

    def on_html(self, led: LedgerFields, body: bytes, now: float) -> None:
        if led.pages:
            self._judge_due(led, now)
        led.html_pages += 1
        names = asset_refs(body, self.scan_bytes, self.max_refs)
        if not names:
            return
        hashes = [stable_hash(n) for n in names]
        if self._shared is not None:
            hashes = self._page_specific(hashes)
        fresh = [h for h in hashes if not self._is_known(led, h)]
        if not fresh:
            return
        pages = led.pages
        if pages is None:
            led.pages = pages = []
        elif len(pages) >= self.max_pending:
            self._judge_oldest(led, pages)
        pages.append(PendingPage(now + self.grace_s, len(fresh)))
        refs = b"".join(h.to_bytes(4, "big") for h in fresh)
        if led.pending is None:
            led.pending = bytearray(refs)
        else:
            led.pending += refs

    # -- verdict -------------------------------------------------------------------------------

    def strength(self, led: LedgerFields) -> float:
        if led.html_pages:
            if led.judged < self.min_pages:
                return 0.0
            return ramp(led.verdicts.bit_count() / led.judged, self.start, self.full)
        if self.fallback_start <= 0 or led.documents <= self.fallback_start:
            return 0.0
        if led.assets > self.fallback_max_ratio * led.documents:
            return 0.0
        return ramp(led.documents, self.fallback_start, self.fallback_full)

    def starved_share(self, led: LedgerFields) -> float | None:
        return led.verdicts.bit_count() / led.judged if led.judged else None

    # -- internals -----------------------------------------------------------------------------

    def _is_known(self, led: LedgerFields, h: int) -> bool:
        for generation in (led.known, led.known_old):
            if generation:
                i = bisect_left(generation, h)
                if i < len(generation) and generation[i] == h:
                    return True
        return False

    def _page_specific(self, hashes: list[int]) -> list[int]:
        """Drop refs seen on `shared_pages`+ different pages (site chrome, probably cached)."""
        shared = self._shared
        assert shared is not None
        signature = hash(tuple(hashes))
        kept = []
        for h in hashes:
            entry = shared.get(h)
            if entry is None:
                shared[h] = [signature, 1]
                kept.append(h)
                continue
            if entry[0] != signature:
                entry[0] = signature
                entry[1] += 1
            if entry[1] < self.shared_pages:
                kept.append(h)
        return kept

    def _mark_fetched(self, led: LedgerFields, h: int) -> None:
        needle = h.to_bytes(4, "big")
        buf = led.pending
        assert buf is not None
        pos = buf.find(needle)
        while pos >= 0:
            if pos & 3:  # straddles two hashes
                pos = buf.find(needle, pos + 1)
                continue
            index = pos >> 2
            for page in led.pages or ():
                if index < page.remaining:
                    page.remaining -= 1
                    page.fetched += 1
                    break
                index -= page.remaining
            del buf[pos:pos + 4]
            pos = buf.find(needle, pos)

    def _judge_due(self, led: LedgerFields, now: float) -> None:
        pages = led.pages
        while pages and pages[0].deadline <= now:
            self._judge_oldest(led, pages)

    def _judge_oldest(self, led: LedgerFields, pages: list[PendingPage]) -> None:
        page = pages.pop(0)
        if led.pending is not None:
            del led.pending[:page.remaining * 4]
        led.verdicts = ((led.verdicts << 1) | (page.fetched == 0)) & self._verdict_mask
        if led.judged < self.verdict_window:
            led.judged += 1

"""What the demo shop looks like from outside: record URLs, page assets, and how to read an answer.

Records (profiles) are served under three shapes (scrapeshield.demo_origin): `/user/N`, which the
default policy names, and `/people/N` (a path id) and `/profile?id=N` (a query id), which it does
not. Scrapers in this bench go for the two unnamed shapes.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum

PRODUCT_COUNT = 500
USER_COUNT = 100_000
PROFILE_MARK = 'class="profile"'
UNNAMED_RECORD_SHAPES = ("path", "query")
_ASSET = re.compile(r'<(?:link|script|img)\b[^>]*?\b(?:href|src)="(/[^"]+)"')


def record_path(user_id: int, shape: str) -> str:
    """A profile's URL path: shape "named" (/user/N), "path" (/people/N) or "query" (/profile?id=N)."""
    if shape == "named":
        return f"/user/{user_id}"
    if shape == "path":
        return f"/people/{user_id}"
    if shape == "query":
        return f"/profile?id={user_id}"
    raise ValueError(f"unknown record shape {shape!r}")


def page_assets(page: str) -> list[str]:
    """The same-site CSS, JS, icon and image URLs a browser loads for `page`, in document order."""
    seen: dict[str, None] = {}
    for match in _ASSET.finditer(page):
        seen.setdefault(match.group(1), None)
    return list(seen)


class Outcome(StrEnum):
    """How the shield (or the origin) answered one request."""

    OK = "ok"                # passed to the origin and answered 2xx/3xx
    RECORD = "record"        # a profile page, passed
    CHALLENGE = "challenge"
    THROTTLE = "throttle"
    BLOCK = "block"          # block, ban or drop by the shield
    OTHER = "other"          # an origin error (404, ...)
    ERROR = "error"          # no answer (timeout, reset)


def classify(status: int, headers: Mapping[str, str], body: str) -> Outcome:
    action = (headers.get("shield-action") or headers.get("Shield-Action") or "").lower()
    if action:
        if action == "challenge":
            return Outcome.CHALLENGE
        if action == "throttle":
            return Outcome.THROTTLE
        if action in ("block", "ban", "drop", "tarpit"):
            return Outcome.BLOCK
        return Outcome.OTHER if action == "allow" else Outcome.BLOCK
    if status == 200 and PROFILE_MARK in body:
        return Outcome.RECORD
    if 200 <= status < 400:
        return Outcome.OK
    if status == 429:
        return Outcome.THROTTLE
    return Outcome.OTHER

"""The one canonical spelling of a request path that rules match against. Pure and total.

Web frameworks route `/%75ser/7`, `/static/../user/7` and `//user//7` to the handler of
`/user/7`; a rule on `/user/*` has to see them as that path too, or spelling becomes a bypass.
`canonical_path` applies, in this order:

1. percent-decoding of the unreserved characters (RFC 3986 2.3: letters, digits, `-._~`) and of
   `%2F` (`/`); every other escape keeps its encoding with upper-case hex (`%3a` -> `%3A`), and
   `%25` stays `%25` and a `%` that starts no escape becomes `%25`, so the result is a fixed point
   (canonicalising it again changes nothing);
2. repeated slashes collapsed (`//` -> `/`);
3. dot segments removed (RFC 3986 5.2.4), never above the root (`/../a` -> `/a`).

Choices: `%2F` is decoded because the common upstreams (WSGI/ASGI servers, nginx location
matching) decode it before routing: treating `/user%2F7` as `/user/7` can only make a rule match
more, never less. Case is kept: Flask, Django, Rails, Go and nginx route case-sensitively; for an
upstream that does not (Express's default, ASP.NET), write `path_regex: '(?i)^/user/'`. The query
is not part of the path. Rules that want the bytes as sent use `raw_path` / `raw_path_regex`.

Cost is linear in the path's length, and a path without `%`, `//` or `/.` is returned as is.
"""
from __future__ import annotations

import re

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})?")


def _unescape(m: re.Match[str]) -> str:
    hexdigits = m.group(1)
    if hexdigits is None:
        return "%25"  # a lone `%` is a literal one: escaped, so `%2%46` cannot become `%2F` on a second pass
    char = chr(int(hexdigits, 16))
    return char if char in _UNRESERVED else "%" + hexdigits.upper()


def canonical_path(raw: str) -> str:
    """`/%75ser//7/./x/..` -> `/user/7`. The query must already be split off."""
    if not raw.startswith("/"):
        if raw == "*":  # `OPTIONS *`
            return raw
        raw = "/" + raw
    if "%" not in raw and "//" not in raw and "/." not in raw:
        return raw
    path = _ESCAPE.sub(_unescape, raw) if "%" in raw else raw
    segments = path.split("/")
    out: list[str] = []
    for segment in segments[1:-1]:
        if segment == "..":
            if out:
                out.pop()
        elif segment and segment != ".":
            out.append(segment)
    last = segments[-1]
    if last == "..":
        if out:
            out.pop()
        last = ""
    elif last == ".":
        last = ""
    out.append(last)  # "" keeps a trailing slash: `/a/` and `/a/.` stay `/a/`
    return "/" + "/".join(out)

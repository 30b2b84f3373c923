"""Header reads and writes on a mitmproxy `Headers`, in one pass over its fields.

`Headers.get`, `get_all`, `set_all` and `add` go through the multidict's generic layer: every call
lowercases every field name through a Python-level method and converts every value, and the
shield asks several per proxied request (Host, X-Forwarded-For, X-Request-Id read and replaced,
Content-Type, Set-Cookie). These do the same on `headers.fields` directly, with mitmproxy's exact semantics (values
decoded as UTF-8 with surrogateescape, names compared case-insensitively, a replaced field keeping
its place and its spelling).
"""
from __future__ import annotations

from mitmproxy import http

_ENCODING = "utf-8"
_ERRORS = "surrogateescape"


def values_of(headers: http.Headers, name: str) -> list[str]:
    """`headers.get_all(name)`."""
    lowered = _lowered(name)
    return [v.decode(_ENCODING, _ERRORS) for k, v in headers.fields if k.lower() == lowered]


def value_of(headers: http.Headers, name: str) -> str | None:
    """`headers.get(name)`: every value of the field joined with ", ", None without one."""
    values = values_of(headers, name)
    return ", ".join(values) if values else None


def replace(headers: http.Headers, name: str, value: str) -> list[str]:
    """`headers[name] = value` (the first field of that name keeps its place and spelling and gets
    the value, later ones are dropped; without one the field is appended); returns what
    `headers.get_all(name)` said before."""
    raw, lowered = value.encode(_ENCODING, _ERRORS), _lowered(name)
    prior: list[str] = []
    fields: list[tuple[bytes, bytes]] = []
    for k, v in headers.fields:
        if k.lower() == lowered:
            if not prior:
                fields.append((k, raw))
            prior.append(v.decode(_ENCODING, _ERRORS))
        else:
            fields.append((k, v))
    if not prior:
        fields.append((name.encode(_ENCODING, _ERRORS), raw))
    headers.fields = tuple(fields)
    return prior


def append(headers: http.Headers, name: str, value: str) -> None:
    """`headers.add(name, value)`: one more field at the end."""
    headers.fields = (*headers.fields, (name.encode(_ENCODING, _ERRORS), value.encode(_ENCODING, _ERRORS)))


def _lowered(name: str) -> bytes:
    """The name as mitmproxy compares it: in lower case, as bytes."""
    return name.lower().encode(_ENCODING, _ERRORS)

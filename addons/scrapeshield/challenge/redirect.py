"""Where a solved challenge sends the browser back to: a same-origin relative path, or `/`.

The return path comes from the request that was challenged, so an attacker chooses it; a
Location header built from it must never leave the origin (open redirect) nor split the
response (CR/LF). Anything that is not plainly `/something` on this origin becomes `/`.
"""
from __future__ import annotations

from urllib.parse import quote, unquote, urlsplit

MAX_RETURN_LEN = 2048
# RFC 3986 reserved + unreserved characters and '%'; everything else (space, quotes, <, >, `,
# non-ASCII) is percent-encoded, so the path is also inert inside HTML attributes and headers.
_SAFE = "/?#[]@!$&'()*+,;=:-._~%"


def safe_return_path(raw: object, max_len: int = MAX_RETURN_LEN) -> str:
    if not isinstance(raw, str) or not raw or len(raw) > max_len:
        return "/"
    if any(c < " " or c == "\x7f" or "\x80" <= c <= "\x9f" for c in raw) or "\\" in raw:
        return "/"  # control characters (header splitting) and backslashes (`/\evil.com` is `//evil.com`)
    if not raw.startswith("/") or raw.startswith("//"):
        return "/"  # scheme-relative, absolute (`https:`, `javascript:`) or relative-to-page
    decoded = unquote(raw)
    if decoded.startswith(("//", "/\\")) or any(c < " " for c in decoded):
        return "/"  # `/%2F%2Fevil.com`: harmless to a browser, not to a backend that decodes and redirects
    path = quote(raw, safe=_SAFE)
    parts = urlsplit(path)
    if parts.scheme or parts.netloc or len(path) > max_len:
        return "/"
    return path

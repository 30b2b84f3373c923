"""The shield's own minimal error pages, and no version banner.

mitmproxy answers protocol errors (a malformed request line, CONNECT or absolute-form sent to the
reverse proxy, an unreachable upstream) itself, with an HTML page and `Server: mitmproxy 12.x`:
that tells a prober what we run and which version. No hook sees these answers, so this module
replaces the two producers mitmproxy has for them -- `make_error_response` (HTTP/1) and
`format_error` (the body HTTP/2 sends) -- and blanks the banner HTTP/2 puts in its `server`
header. It is the one place that does so, checked against the mitmproxy major version we pin;
`install()` refuses to guess on another one.
"""
from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus

SHIELD_ACTION = "reject"
_PINNED_MAJOR = "12."

# Told about every protocol error answered this way (status); set by the serving addon for metrics.
on_protocol_error: Callable[[int], None] | None = None


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def page_body(status: int) -> bytes:
    return f"{status} {reason_phrase(status)}\n".encode("ascii")


def plain_response(status: int, *, close: bool = True, extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    """An HTTP/1.1 answer written straight to a socket (before or outside any flow)."""
    body = page_body(status)
    head = [f"HTTP/1.1 {status} {reason_phrase(status)}", "Content-Type: text/plain; charset=utf-8",
            f"Content-Length: {len(body)}", f"Shield-Action: {SHIELD_ACTION}", "Cache-Control: no-store"]
    head += [f"{k}: {v}" for k, v in extra]
    if close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


def _make_error_response(status_code: int, message: str = "") -> bytes:
    # `message` is mitmproxy's explanation (proxy modes, upstream addresses): never sent to a client.
    if on_protocol_error is not None:
        on_protocol_error(status_code)
    return plain_response(status_code)


def _format_error(status_code: int, message: str) -> bytes:
    if on_protocol_error is not None:
        on_protocol_error(status_code)
    return page_body(status_code)


def install() -> None:
    """Replace mitmproxy's error pages and banner in this process (idempotent)."""
    from mitmproxy import version
    from mitmproxy.proxy.layers.http import _http1, _http2

    if not version.VERSION.startswith(_PINNED_MAJOR):
        raise RuntimeError(f"error pages are written for mitmproxy {_PINNED_MAJOR}x, found {version.VERSION}")
    _http1.make_error_response = _make_error_response
    setattr(_http2, "format_error", _format_error)  # noqa: B010 - mypy: the module does not re-export it
    # HTTP/2 error answers carry `server: <version.MITMPROXY>`; an empty value says nothing.
    version.MITMPROXY = ""

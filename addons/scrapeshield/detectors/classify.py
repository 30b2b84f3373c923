"""Request classification: is this a page (document), an asset, or neither (API)?

Browsers say it outright in `Sec-Fetch-Dest`; older browsers and non-browser
clients don't, so we fall back to `Accept` and the path extension. Header
mappings are expected to be case-insensitive (mitmproxy `Headers`) or to use
lower-case names.
"""
from __future__ import annotations

from collections.abc import Mapping

ASSET_EXTENSIONS = frozenset({
    "css", "js", "mjs", "map",
    "png", "jpg", "jpeg", "gif", "webp", "avif", "svg", "ico", "bmp",
    "woff", "woff2", "ttf", "otf", "eot",
    "mp4", "webm", "ogg", "mp3", "wav", "m4a", "vtt",
})
DOCUMENT_EXTENSIONS = frozenset({"", "html", "htm", "xhtml", "shtml", "php", "asp", "aspx", "jsp", "cfm"})

# https://fetch.spec.whatwg.org/#concept-request-destination
_ASSET_DESTS = frozenset({
    "style", "script", "image", "font", "audio", "video", "track", "manifest",
    "worker", "sharedworker", "serviceworker", "audioworklet", "paintworklet", "xslt",
})
_DOCUMENT_DESTS = frozenset({"document", "iframe", "frame", "fencedframe"})


def path_extension(path: str) -> str:
    """Lower-case extension of the last path segment ('' if none); ignores any query."""
    segment = path.partition("?")[0].rpartition("/")[2]
    dot = segment.rfind(".")
    return segment[dot + 1:].lower() if dot >= 0 else ""


def is_asset_path(path: str) -> bool:
    """A stylesheet, script, image, font or media file, judged by extension."""
    return path_extension(path) in ASSET_EXTENSIONS


# What `request_kind` answers, (asset, document): one constant each, nothing allocated per request.
ASSET: tuple[bool, bool] = (True, False)
DOCUMENT: tuple[bool, bool] = (False, True)
OTHER: tuple[bool, bool] = (False, False)  # neither: an API call, a form post, ...


def request_kind(method: str, path: str, headers: Mapping[str, str]) -> tuple[bool, bool]:
    """ASSET, DOCUMENT or OTHER: `Sec-Fetch-Dest` and the path's extension read once for both questions.

    An asset is a sub-resource a browser loads for a page; `Sec-Fetch-Dest` wins over the
    extension. A document is a page navigation (HTML), as opposed to an asset or an API call.
    Without `Sec-Fetch-Dest`: an `Accept` naming HTML decides; a client sending `*/*` or no
    `Accept` (curl, python-requests, most harvesters) fetching an extension-less or
    .html/.php-like path is treated as fetching a page; a specific non-HTML `Accept`
    (application/json) is an API call.
    """
    dest = headers.get("sec-fetch-dest")
    if dest:
        if dest in _ASSET_DESTS:
            return ASSET
        return DOCUMENT if dest in _DOCUMENT_DESTS else OTHER
    extension = path_extension(path)
    if extension in ASSET_EXTENSIONS:
        return ASSET
    if method != "GET" and method != "HEAD":
        return OTHER
    accept = headers.get("accept", "")
    if "text/html" in accept or "application/xhtml+xml" in accept:
        return DOCUMENT
    if accept and "*/*" not in accept:
        return OTHER
    return DOCUMENT if extension in DOCUMENT_EXTENSIONS else OTHER


def is_asset_request(method: str, path: str, headers: Mapping[str, str]) -> bool:
    """Sub-resource a browser loads for a page (`request_kind`)."""
    return request_kind(method, path, headers)[0]


def is_document_request(method: str, path: str, headers: Mapping[str, str]) -> bool:
    """A page navigation (HTML document), as opposed to an asset or an API call (`request_kind`)."""
    return request_kind(method, path, headers)[1]

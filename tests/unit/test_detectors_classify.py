"""Request classification: page, asset, or neither."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from scrapeshield.detectors import is_asset_path, is_asset_request, is_document_request
from scrapeshield.detectors.classify import (
    _ASSET_DESTS,
    _DOCUMENT_DESTS,
    ASSET,
    ASSET_EXTENSIONS,
    DOCUMENT,
    DOCUMENT_EXTENSIONS,
    OTHER,
    path_extension,
    request_kind,
)


def test_asset_paths_are_recognised_by_extension() -> None:
    assert is_asset_path("/static/site.CSS")
    assert is_asset_path("/img/a.b/photo.webp")
    assert not is_asset_path("/product/blue-shoes")
    assert not is_asset_path("/docs/manual.pdf")


def test_sec_fetch_dest_decides_when_present() -> None:
    assert is_document_request("GET", "/x.png", {"sec-fetch-dest": "document"})
    assert is_document_request("POST", "/login", {"sec-fetch-dest": "document"})
    assert not is_document_request("GET", "/page", {"sec-fetch-dest": "empty", "accept": "text/html"})
    assert is_asset_request("GET", "/api/logo", {"sec-fetch-dest": "image"})
    assert not is_asset_request("GET", "/bundle.js", {"sec-fetch-dest": "empty"})


def test_accept_html_means_a_page() -> None:
    assert is_document_request("GET", "/a", {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"})


def test_a_non_browser_client_fetching_a_page_url_counts_as_fetching_a_page() -> None:
    assert is_document_request("GET", "/user/1001", {"accept": "*/*"})
    assert is_document_request("GET", "/item.php", {})


def test_api_calls_and_assets_are_not_pages() -> None:
    assert not is_document_request("GET", "/api/items", {"accept": "application/json"})
    assert not is_document_request("GET", "/static/app.js", {"accept": "*/*"})
    assert not is_document_request("POST", "/api/items", {})


def _asset_as_specified(method: str, path: str, headers: dict[str, str]) -> bool:
    dest = headers.get("sec-fetch-dest")
    return dest in _ASSET_DESTS if dest else path_extension(path) in ASSET_EXTENSIONS


def _document_as_specified(method: str, path: str, headers: dict[str, str]) -> bool:
    dest = headers.get("sec-fetch-dest")
    if dest:
        return dest in _DOCUMENT_DESTS
    if method not in ("GET", "HEAD") or path_extension(path) in ASSET_EXTENSIONS:
        return False
    accept = headers.get("accept", "")
    if "text/html" in accept or "application/xhtml+xml" in accept:
        return True
    return not (accept and "*/*" not in accept) and path_extension(path) in DOCUMENT_EXTENSIONS


@given(st.sampled_from(["GET", "HEAD", "POST", "PUT"]),
       st.sampled_from(["/", "/a.css", "/p/7", "/x.html", "/x.json", "/img/1.webp", "/a.PHP", "/b.", "/c/"]),
       st.sampled_from([None, "", "document", "image", "script", "empty", "iframe", "worker"]),
       st.sampled_from([None, "", "*/*", "text/html,*/*;q=0.8", "application/json", "application/xhtml+xml"]))
def test_a_request_is_an_asset_a_page_or_neither_as_each_question_answers_it(
        method: str, path: str, dest: str | None, accept: str | None) -> None:
    headers = {k: v for k, v in (("sec-fetch-dest", dest), ("accept", accept)) if v is not None}
    asset, document = request_kind(method, path, headers)
    assert (asset, document) == (_asset_as_specified(method, path, headers),
                                 not _asset_as_specified(method, path, headers)
                                 and _document_as_specified(method, path, headers))
    assert (is_asset_request(method, path, headers), is_document_request(method, path, headers)) == (
        asset, _document_as_specified(method, path, headers))
    assert (asset, document) in (ASSET, DOCUMENT, OTHER)

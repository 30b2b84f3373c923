"""Request classification: page, asset, or neither."""
from __future__ import annotations

from scrapeshield.detectors import is_asset_path, is_asset_request, is_document_request


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

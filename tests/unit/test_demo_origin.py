"""The demo origin: the shop pages, its assets, its records, and what tests read off it."""
from __future__ import annotations

import struct
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from demo.shop import (
    PRODUCT_COUNT,
    SHARED_ASSETS,
    USER_COUNT,
    build_app,
    path_prefix,
    start_demo_origin,
    user_record,
)

from harness import bind_client, bind_session, origin_stats, reset_origin_stats

Client = TestClient[web.Request, web.Application]


@pytest_asyncio.fixture
async def client() -> AsyncIterator[Client]:
    async with TestClient(TestServer(build_app())) as c:
        yield c


# --- records ---------------------------------------------------------------------------------

def test_a_user_record_is_the_same_for_the_same_id() -> None:
    assert user_record(4242) == user_record(4242)


def test_user_records_differ_between_ids() -> None:
    records = {(r.name, r.phone) for r in map(user_record, range(1, 201))}
    assert len(records) > 190


def test_a_user_record_has_a_name_and_a_phone_number() -> None:
    record = user_record(7)
    assert len(record.name.split()) == 2
    assert record.phone.startswith("+1-") and record.phone.replace("-", "")[1:].isdigit()


def test_user_ids_outside_the_range_have_no_record() -> None:
    with pytest.raises(ValueError):
        user_record(USER_COUNT + 1)


def test_path_prefix_is_the_first_segment() -> None:
    assert [path_prefix(p) for p in ("/", "/user/7", "/api/users/3", "/robots.txt")] == [
        "/", "/user", "/api", "/robots.txt",
    ]


# --- pages -----------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_home_page_references_the_shared_assets_products_and_users(client: Client) -> None:
    response = await client.get("/")
    html = await response.text()
    assert response.status == 200
    assert response.content_type == "text/html"
    for asset in (*SHARED_ASSETS, "/static/img/p1.svg", "/static/img/p2.svg"):
        assert f'"{asset}"' in html
    assert 'href="/products/1"' in html and 'href="/user/1"' in html


@pytest.mark.asyncio
async def test_product_page_shows_its_image_and_links_to_neighbours(client: Client) -> None:
    html = await (await client.get("/products/10")).text()
    assert '"/static/img/p10.svg"' in html
    assert 'href="/products/9"' in html and 'href="/products/11"' in html
    assert all(f'"{asset}"' in html for asset in SHARED_ASSETS)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "path",
    ["/products/0", f"/products/{PRODUCT_COUNT + 1}", "/products/abc", "/user/0",
     f"/user/{USER_COUNT + 1}", "/user/99999999999999", "/static/nope.css", "/no/such/page"],
)
async def test_unknown_pages_are_html_404s(client: Client, path: str) -> None:
    response = await client.get(path)
    assert response.status == 404
    assert response.content_type == "text/html"


@pytest.mark.asyncio
async def test_user_page_shows_the_record_for_its_id(client: Client) -> None:
    record = user_record(31337)
    html = await (await client.get("/user/31337")).text()
    assert record.name in html and record.phone in html


@pytest.mark.asyncio
async def test_user_api_returns_the_same_record_as_json(client: Client) -> None:
    response = await client.get("/api/users/31337")
    record = user_record(31337)
    assert response.status == 200
    assert await response.json() == {"id": 31337, "name": record.name, "phone": record.phone, "email": record.email}


@pytest.mark.asyncio
async def test_user_api_outside_the_range_is_a_json_404(client: Client) -> None:
    response = await client.get(f"/api/users/{USER_COUNT + 1}")
    assert response.status == 404
    assert response.content_type == "application/json"


@pytest.mark.asyncio
async def test_robots_txt_disallows_the_api(client: Client) -> None:
    response = await client.get("/robots.txt")
    assert response.content_type == "text/plain"
    assert "Disallow: /api/" in (await response.text()).splitlines()


# --- assets ----------------------------------------------------------------------------------

@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/static/site.css", "text/css"), ("/static/app.js", "text/javascript"),
     ("/static/logo.svg", "image/svg+xml"), (f"/static/img/p{PRODUCT_COUNT}.svg", "image/svg+xml"),
     ("/favicon.ico", "image/x-icon")],
)
async def test_assets_have_their_content_type_and_are_cacheable(
    client: Client, path: str, content_type: str
) -> None:
    response = await client.get(path)
    assert response.status == 200
    assert response.content_type == content_type
    assert response.headers["Cache-Control"] == "public, max-age=3600"


@pytest.mark.asyncio
async def test_favicon_is_a_real_icon(client: Client) -> None:
    body = await (await client.get("/favicon.ico")).read()
    reserved, kind, count = struct.unpack("<HHH", body[:6])
    assert (reserved, kind, count) == (0, 1, 1)


@pytest.mark.asyncio
async def test_asset_revalidation_with_its_etag_is_a_304(client: Client) -> None:
    etag = (await client.get("/static/site.css")).headers["ETag"]
    response = await client.get("/static/site.css", headers={"If-None-Match": etag})
    assert response.status == 304


# --- echo and stats ---------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_echo_returns_the_request_as_received(client: Client) -> None:
    response = await client.post(
        "/echo/sub?b=2&a=1&b=3",
        data=b"payload",
        headers={"X-First": "1", "X-Forwarded-For": "203.0.113.9", "x-last": "z"},
    )
    echo = await response.json()
    assert echo["method"] == "POST"
    assert echo["raw_path"] == "/echo/sub?b=2&a=1&b=3"
    assert echo["args"] == [["b", "2"], ["a", "1"], ["b", "3"]]
    assert echo["body"] == "payload"
    names = [name for name, _ in echo["headers"]]
    assert names.index("X-First") < names.index("X-Forwarded-For") < names.index("x-last")
    assert ["X-Forwarded-For", "203.0.113.9"] in echo["headers"]


@pytest.mark.asyncio
async def test_stats_count_requests_by_prefix_and_records_served(client: Client) -> None:
    for path in ("/", "/user/1", "/user/2", "/api/users/3", "/user/0", "/static/site.css"):
        await client.get(path)
    stats = await (await client.get("/__origin/stats")).json()
    assert stats["total"] == 6
    assert stats["prefixes"] == {"/": 1, "/user": 3, "/api": 1, "/static": 1}
    assert stats["records_served"] == 3
    assert stats["paths"]["/user/2"] == 1
    assert stats["statuses"] == {"200": 5, "404": 1}


@pytest.mark.asyncio
async def test_reset_zeroes_the_stats(client: Client) -> None:
    await client.get("/user/1")
    await client.post("/__origin/reset")
    stats = await (await client.get("/__origin/stats")).json()
    assert stats["total"] == 0 and stats["records_served"] == 0 and stats["prefixes"] == {}


@pytest.mark.asyncio
async def test_start_demo_origin_serves_on_a_free_port_until_stopped() -> None:
    origin = await start_demo_origin()
    async with httpx.AsyncClient(trust_env=False) as http:
        try:
            assert origin.url == f"http://127.0.0.1:{origin.port}"
            assert (await http.get(f"{origin.url}/")).status_code == 200
        finally:
            await origin.stop()
        with pytest.raises(httpx.ConnectError):
            await http.get(f"{origin.url}/")


# --- the standalone process, through the harness -------------------------------------------------

@pytest.mark.e2e
def test_the_subprocess_origin_sees_the_bound_source_address(demo_origin: str) -> None:
    with bind_client("127.0.0.2") as http:
        echo = http.get(f"{demo_origin}/echo").json()
    assert echo["remote"] == "127.0.0.2"


@pytest.mark.e2e
def test_a_requests_session_can_be_bound_to_a_source_address(demo_origin: str) -> None:
    with bind_session("127.0.0.3") as session:
        echo = session.get(f"{demo_origin}/echo", timeout=5).json()
    assert echo["remote"] == "127.0.0.3"


@pytest.mark.e2e
def test_the_subprocess_origin_counts_what_it_served(demo_origin: str) -> None:
    reset_origin_stats(demo_origin)
    with bind_client("127.0.0.1") as http:
        assert http.get(f"{demo_origin}/user/5").status_code == 200
    stats = origin_stats(demo_origin)
    assert stats["records_served"] == 1 and stats["prefixes"] == {"/user": 1}

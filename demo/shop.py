"""The demo shop: an origin to put the shield in front of (`python -m demo` runs both).

It is the thing scrapers want: 500 product pages and 100,000 user profiles, each a
fake name and phone number derived from the id, so the same id always yields the
same record and a harvest can be counted. A profile is served under three shapes:
`/user/N`, `/people/N` and `/profile?id=N` (the last two for policies that name only
the first). It also serves what tests need to look at the origin's side of the proxy:
`/echo` (the request as it arrived) and `/__origin/stats` (what reached the origin at all).

Pages and assets are rendered once when the app is built; user pages are a single
string format. The origin must stay much faster than the proxy in benchmarks.

Run standalone: `python -m demo.shop --port 8081` (prints its URL).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import html
import json
import signal
import struct
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Final

from aiohttp import web

PRODUCT_COUNT: Final = 500
USER_COUNT: Final = 100_000
SHARED_ASSETS: Final = ("/static/site.css", "/static/app.js", "/static/logo.svg")
FEATURED_PRODUCTS: Final = (1, 2)  # products whose images the home page shows
HOME_PRODUCT_LINKS: Final = tuple(range(1, 13))
HOME_USER_LINKS: Final = tuple(range(1, 6))
ASSET_MAX_AGE: Final = 3600

_MASK64: Final = (1 << 64) - 1


def _mix(n: int) -> int:
    """splitmix64: a cheap, well-spread, version-independent hash of an id."""
    z = (n * 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


# --- the data --------------------------------------------------------------------------

_FIRST_NAMES: Final = (
    "Ada", "Alan", "Amara", "Ben", "Bianca", "Carlos", "Chen", "Dalia", "Dmitri", "Elena",
    "Emeka", "Farah", "Felix", "Grace", "Hiro", "Ines", "Ivan", "Jamal", "Jana", "Kai",
    "Lena", "Luis", "Maya", "Mei", "Nadia", "Noah", "Olga", "Omar", "Priya", "Quinn",
    "Rosa", "Sami", "Sofia", "Tariq", "Uma", "Victor", "Wen", "Yara", "Yusuf", "Zoe",
)
_LAST_NAMES: Final = (
    "Abara", "Berg", "Castillo", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad",
    "Ito", "Jensen", "Kowalski", "Lindqvist", "Moreau", "Nakamura", "Okafor", "Petrov",
    "Quist", "Rossi", "Santos", "Tanaka", "Usman", "Varga", "Weber", "Xu", "Yilmaz",
    "Zhang", "Novak", "Silva", "Keller", "Brennan",
)
_AREA_CODES: Final = (212, 303, 312, 404, 415, 503, 512, 602, 617, 702, 808, 917)
_ADJECTIVES: Final = (
    "Brass", "Cedar", "Copper", "Linen", "Marble", "Oak", "Slate", "Walnut", "Wool", "Zinc",
)
_NOUNS: Final = (
    "Kettle", "Lamp", "Mug", "Notebook", "Planter", "Rug", "Stool", "Tray", "Vase", "Clock",
)
_COLOURS: Final = ("#d9480f", "#2b8a3e", "#1864ab", "#862e9c", "#e67700", "#0b7285")


@dataclass(frozen=True, slots=True)
class UserRecord:
    """One harvestable record: what `/user/<id>` shows and `/api/users/<id>` returns."""

    id: int
    name: str
    phone: str
    email: str


@dataclass(frozen=True, slots=True)
class Product:
    id: int
    name: str
    price_cents: int
    colour: str

    @property
    def price(self) -> str:
        return f"${self.price_cents // 100}.{self.price_cents % 100:02d}"

    @property
    def image(self) -> str:
        return f"/static/img/p{self.id}.svg"


def user_record(user_id: int) -> UserRecord:
    """The record for `user_id` (1..USER_COUNT); the same id always gives the same record."""
    if not 1 <= user_id <= USER_COUNT:
        raise ValueError(f"user id {user_id} outside 1..{USER_COUNT}")
    h = _mix(user_id)
    first = _FIRST_NAMES[h % len(_FIRST_NAMES)]
    last = _LAST_NAMES[(h >> 8) % len(_LAST_NAMES)]
    area = _AREA_CODES[(h >> 16) % len(_AREA_CODES)]
    line = (h >> 24) % 10_000
    return UserRecord(
        id=user_id,
        name=f"{first} {last}",
        phone=f"+1-{area}-555-{line:04d}",
        email=f"{first.lower()}.{last.lower()}{user_id}@example.com",
    )


def product(product_id: int) -> Product:
    """The product `product_id` (1..PRODUCT_COUNT)."""
    if not 1 <= product_id <= PRODUCT_COUNT:
        raise ValueError(f"product id {product_id} outside 1..{PRODUCT_COUNT}")
    h = _mix(product_id + 1_000_003)
    return Product(
        id=product_id,
        name=f"{_ADJECTIVES[h % len(_ADJECTIVES)]} {_NOUNS[(h >> 8) % len(_NOUNS)]}",
        price_cents=500 + (h >> 16) % 19_500,
        colour=_COLOURS[(h >> 32) % len(_COLOURS)],
    )


# --- rendering (done once per app, except user pages) ------------------------------------

_SITE_CSS: Final = """\
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 60rem; padding: 1rem; }
header { display: flex; align-items: center; gap: .75rem; border-bottom: 1px solid #ddd; }
header img { width: 40px; height: 40px; }
.products { display: grid; grid-template-columns: repeat(auto-fill, minmax(10rem, 1fr)); gap: 1rem; }
.product img, .hero { width: 100%; max-width: 240px; }
.price { font-weight: bold; color: #2b8a3e; }
nav a { margin-right: 1rem; }
"""

_APP_JS: Final = """\
// Marks the page as script-capable; real browsers run this, most scrapers do not.
document.documentElement.classList.add("js");
document.addEventListener("DOMContentLoaded", function () {
  var year = document.getElementById("year");
  if (year) { year.textContent = String(new Date().getFullYear()); }
});
"""

_LOGO_SVG: Final = """\
<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64" width="64" height="64">
<path d="M32 4 L56 14 V32 C56 46 45 56 32 60 C19 56 8 46 8 32 V14 Z" fill="#1864ab"/>
<path d="M22 32 L29 39 L43 25" stroke="#fff" stroke-width="5" fill="none"/>
</svg>
"""

_ROBOTS_TXT: Final = "User-agent: *\nDisallow: /api/\n"


def _product_svg(p: Product) -> str:
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 240 160" width="240" height="160">'
        f'<rect width="240" height="160" fill="{p.colour}"/>'
        f'<circle cx="120" cy="80" r="{30 + p.id % 30}" fill="#fff" fill-opacity=".35"/>'
        f'<text x="120" y="150" font-size="14" text-anchor="middle" fill="#fff">#{p.id}</text>'
        "</svg>\n"
    )


def _favicon_ico() -> bytes:
    """A 16x16 32-bit ICO (BMP payload): the shield blue, so the file is a real icon."""
    size = 16
    header = struct.pack("<IiiHHIIiiII", 40, size, size * 2, 1, 32, 0, 0, 0, 0, 0, 0)
    pixels = bytes((0xAB, 0x64, 0x18, 0xFF)) * (size * size)  # BGRA
    and_mask = bytes(4 * size)  # rows padded to 32 bits, all opaque
    image = header + pixels + and_mask
    icondir = struct.pack("<HHH", 0, 1, 1)
    entry = struct.pack("<BBBBHHII", size, size, 0, 0, 1, 32, len(image), 6 + 16)
    return icondir + entry + image


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)} - Demo Shop</title>\n"
        '<link rel="stylesheet" href="/static/site.css">\n'
        '<link rel="icon" href="/favicon.ico">\n'
        '<script src="/static/app.js" defer></script>\n'
        "</head>\n<body>\n"
        '<header><img src="/static/logo.svg" alt="Demo Shop logo"><h1>Demo Shop</h1>\n'
        '<nav><a href="/">Home</a><a href="/products/1">Products</a><a href="/user/1">People</a></nav>'
        "</header>\n"
        f"<main>\n{body}\n</main>\n"
        '<footer>&copy; <span id="year">2025</span> Demo Shop, served by demo.shop</footer>\n'
        "</body>\n</html>\n"
    )


def _home_html() -> str:
    featured = "\n".join(
        f'<div class="product"><a href="/products/{p.id}"><img src="{p.image}" alt="{html.escape(p.name)}">'
        f'<h3>{html.escape(p.name)}</h3></a><span class="price">{p.price}</span></div>'
        for p in map(product, FEATURED_PRODUCTS)
    )
    products = "\n".join(
        f'<li><a href="/products/{p.id}">{html.escape(p.name)}</a> <span class="price">{p.price}</span></li>'
        for p in map(product, HOME_PRODUCT_LINKS)
    )
    users = "\n".join(
        f'<li><a href="/user/{u.id}">{html.escape(u.name)}</a></li>' for u in map(user_record, HOME_USER_LINKS)
    )
    return _page(
        "Home",
        f'<h2>Featured</h2>\n<div class="products">\n{featured}\n</div>\n'
        f"<h2>All products</h2>\n<ul>\n{products}\n</ul>\n"
        f"<h2>Our community</h2>\n<ul>\n{users}\n</ul>",
    )


def _product_html(p: Product) -> str:
    links = []
    if p.id > 1:
        links.append(f'<a rel="prev" href="/products/{p.id - 1}">Previous</a>')
    if p.id < PRODUCT_COUNT:
        links.append(f'<a rel="next" href="/products/{p.id + 1}">Next</a>')
    return _page(
        p.name,
        f'<article class="product" data-product-id="{p.id}">\n'
        f'<img class="hero" src="{p.image}" alt="{html.escape(p.name)}">\n'
        f'<h2>{html.escape(p.name)}</h2>\n<p class="price">{p.price}</p>\n'
        f'<p>Sold by <a href="/user/{(p.id * 37) % USER_COUNT + 1}">one of our members</a>.</p>\n'
        f"</article>\n<nav>{' '.join(links)}</nav>",
    )


def _user_html(u: UserRecord) -> str:
    # Names come from fixed ASCII tables, so no escaping is needed on this hot path.
    return _page(
        u.name,
        f'<article class="profile" data-user-id="{u.id}">\n'
        f'<h2 class="name">{u.name}</h2>\n'
        f'<p>Phone: <span class="phone">{u.phone}</span></p>\n'
        f'<p>Email: <span class="email">{u.email}</span></p>\n'
        "</article>",
    )


_NOT_FOUND_HTML: Final = _page("Not found", "<h2>404 Not Found</h2>\n<p>No such page.</p>").encode()

_HTML: Final = "text/html; charset=utf-8"


@dataclass(frozen=True, slots=True)
class StaticAsset:
    body: bytes
    content_type: str
    etag: str

    @classmethod
    def of(cls, body: bytes | str, content_type: str) -> StaticAsset:
        data = body.encode() if isinstance(body, str) else body
        return cls(data, content_type, '"' + hashlib.sha256(data).hexdigest()[:16] + '"')


def _static_assets() -> dict[str, StaticAsset]:
    assets = {
        "site.css": StaticAsset.of(_SITE_CSS, "text/css; charset=utf-8"),
        "app.js": StaticAsset.of(_APP_JS, "text/javascript; charset=utf-8"),
        "logo.svg": StaticAsset.of(_LOGO_SVG, "image/svg+xml"),
    }
    for pid in range(1, PRODUCT_COUNT + 1):
        assets[f"img/p{pid}.svg"] = StaticAsset.of(_product_svg(product(pid)), "image/svg+xml")
    return assets


# --- what reached the origin ---------------------------------------------------------------

def path_prefix(path: str) -> str:
    """The counter a path falls under: its first segment ("/user/7" -> "/user", "/" -> "/")."""
    end = path.find("/", 1)
    return path if end == -1 else path[:end]


class OriginStats:
    """Counts of requests that reached the origin. Bounded: distinct paths are capped."""

    MAX_PATHS: Final = 10_000
    RECENT: Final = 100

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.total = 0
        self.records_served = 0
        self.prefixes: dict[str, int] = {}
        self.paths: dict[str, int] = {}
        self.paths_overflow = 0
        self.statuses: dict[int, int] = {}
        self.recent: deque[dict[str, Any]] = deque(maxlen=self.RECENT)

    def record(self, request: web.Request, status: int) -> None:
        path = request.path
        self.total += 1
        prefix = path_prefix(path)
        self.prefixes[prefix] = self.prefixes.get(prefix, 0) + 1
        if path in self.paths or len(self.paths) < self.MAX_PATHS:
            self.paths[path] = self.paths.get(path, 0) + 1
        else:
            self.paths_overflow += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.recent.append({
            "method": request.method,
            "raw_path": request.raw_path,
            "status": status,
            "remote": request.remote,
            "x_forwarded_for": request.headers.get("X-Forwarded-For"),
            "user_agent": request.headers.get("User-Agent"),
        })

    def snapshot(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "records_served": self.records_served,
            "prefixes": dict(self.prefixes),
            "paths": dict(self.paths),
            "paths_overflow": self.paths_overflow,
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "recent": list(self.recent),
        }


STATS_KEY: Final = web.AppKey("stats", OriginStats)

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _not_found() -> web.Response:
    return web.Response(status=404, body=_NOT_FOUND_HTML, content_type="text/html", charset="utf-8")


@web.middleware
async def _count_requests(request: web.Request, handler: _Handler) -> web.StreamResponse:
    if request.path.startswith("/__origin/"):
        return await handler(request)
    stats = request.app[STATS_KEY]
    try:
        response = await handler(request)
    except web.HTTPNotFound:
        response = _not_found()  # unrouted paths get the same HTML 404 as unknown ids
    except web.HTTPException as exc:
        stats.record(request, exc.status)
        raise
    except Exception:
        stats.record(request, 500)
        raise
    stats.record(request, response.status)
    return response


# --- the app ----------------------------------------------------------------------------------

def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(data).encode(), content_type="application/json")


def _id_in(request: web.Request, upper: int) -> int | None:
    value = int(request.match_info["id"])  # the route allows only 1..9 digits
    return value if 1 <= value <= upper else None


def build_app() -> web.Application:
    """The demo shop as an aiohttp application; pages and assets are rendered here, once."""
    stats = OriginStats()
    home = _home_html().encode()
    products = {pid: _product_html(product(pid)).encode() for pid in range(1, PRODUCT_COUNT + 1)}
    assets = _static_assets()
    robots = _ROBOTS_TXT.encode()
    favicon = StaticAsset.of(_favicon_ico(), "image/x-icon")

    def asset_response(request: web.Request, asset: StaticAsset) -> web.Response:
        headers = {"Cache-Control": f"public, max-age={ASSET_MAX_AGE}", "ETag": asset.etag}
        if request.headers.get("If-None-Match") == asset.etag:
            return web.Response(status=304, headers=headers)
        headers["Content-Type"] = asset.content_type
        return web.Response(body=asset.body, headers=headers)

    async def home_page(request: web.Request) -> web.Response:
        return web.Response(body=home, headers={"Content-Type": _HTML})

    async def product_page(request: web.Request) -> web.Response:
        pid = _id_in(request, PRODUCT_COUNT)
        if pid is None:
            return _not_found()
        return web.Response(body=products[pid], headers={"Content-Type": _HTML})

    async def user_page(request: web.Request) -> web.Response:
        uid = _id_in(request, USER_COUNT)
        if uid is None:
            return _not_found()
        stats.records_served += 1
        return web.Response(
            body=_user_html(user_record(uid)).encode(),
            headers={"Content-Type": _HTML, "Cache-Control": "private, no-store"},
        )

    async def user_by_query(request: web.Request) -> web.Response:
        # The same record under a query id (`/profile?id=N`): a record shape that path rules do not see.
        raw = request.query.get("id", "")
        uid = int(raw) if raw.isdigit() and len(raw) <= 9 else 0
        if not 1 <= uid <= USER_COUNT:
            return _not_found()
        stats.records_served += 1
        return web.Response(
            body=_user_html(user_record(uid)).encode(),
            headers={"Content-Type": _HTML, "Cache-Control": "private, no-store"},
        )

    async def user_api(request: web.Request) -> web.Response:
        uid = _id_in(request, USER_COUNT)
        if uid is None:
            return _json({"error": "not found"}, status=404)
        stats.records_served += 1
        return _json(asdict(user_record(uid)))

    async def static(request: web.Request) -> web.Response:
        asset = assets.get(request.match_info["name"])
        return _not_found() if asset is None else asset_response(request, asset)

    async def favicon_ico(request: web.Request) -> web.Response:
        return asset_response(request, favicon)

    async def robots_txt(request: web.Request) -> web.Response:
        return web.Response(body=robots, headers={"Content-Type": "text/plain; charset=utf-8"})

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return _json({
            "method": request.method,
            "path": request.path,
            "raw_path": request.raw_path,
            "query": request.query_string,
            "args": [[k, v] for k, v in request.query.items()],
            "version": f"HTTP/{request.version.major}.{request.version.minor}",
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.raw_headers],
            "remote": request.remote,
            "body": body.decode("utf-8", errors="replace"),
            "body_b64": base64.b64encode(body).decode(),
        })

    async def stats_view(request: web.Request) -> web.Response:
        return _json(stats.snapshot())

    async def stats_reset(request: web.Request) -> web.Response:
        stats.reset()
        return _json(stats.snapshot())

    app = web.Application(middlewares=[_count_requests])
    app[STATS_KEY] = stats
    app.router.add_get("/", home_page)
    app.router.add_get(r"/products/{id:\d{1,9}}", product_page)
    app.router.add_get(r"/user/{id:\d{1,9}}", user_page)
    app.router.add_get(r"/people/{id:\d{1,9}}", user_page)  # the same records under other shapes
    app.router.add_get("/profile", user_by_query)
    app.router.add_get(r"/api/users/{id:\d{1,9}}", user_api)
    app.router.add_get("/static/{name:.+}", static)
    app.router.add_get("/favicon.ico", favicon_ico)
    app.router.add_get("/robots.txt", robots_txt)
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/echo/{tail:.*}", echo)
    app.router.add_get("/__origin/stats", stats_view)
    app.router.add_route("*", "/__origin/reset", stats_reset)
    return app


class DemoOrigin:
    """A running demo origin (see `start_demo_origin`)."""

    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        self._runner = runner
        self.host = host
        self.port = port
        self.app = runner.app

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def stats(self) -> OriginStats:
        return self.app[STATS_KEY]

    async def stop(self) -> None:
        await self._runner.cleanup()


async def start_demo_origin(host: str = "127.0.0.1", port: int = 0) -> DemoOrigin:
    """Serve the demo shop on host:port (0 picks a free port) until `stop()`."""
    runner = web.AppRunner(build_app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = int(runner.addresses[0][1])
    return DemoOrigin(runner, host, bound_port)


async def _serve(host: str, port: int) -> None:
    origin = await start_demo_origin(host, port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    print(origin.url, flush=True)
    try:
        await stopping.wait()
    finally:
        await origin.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo.shop",
        description="Serve the ScrapeShield demo shop (an origin to put the shield in front of).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default 0: a free port)")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

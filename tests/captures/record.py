"""Re-record the captures in this folder: real clients, through a real shield, against the demo shop.

    .venv/bin/python tests/captures/record.py                    # every client
    .venv/bin/python tests/captures/record.py scrapy chromium    # some of them
    .venv/bin/python tests/captures/record.py --out /tmp/caps    # somewhere else

Each client gets its own `scrapeshield run --save FILE` with an allow-everything policy, so it
behaves as it would unhindered, in front of one demo origin (`python -m demo.shop`).
Clients speak TLS to the shield's listen port (self-signed; certificate checks off), so every flow
carries its client's real TLS fingerprint, and each comes from its own loopback address so the
captures can be replayed together as distinct clients:

    curl      127.0.0.2   a few calls, one per process, HTTP and HTTPS
    requests  127.0.0.3   a script reading the home page and 25 records from /api/users/<id>
    httpx     127.0.0.4   a polite HTTP/2 script: five pages, half a second apart
    scrapy    127.0.0.5   `scrapy runspider shop_spider.py`, default settings, CLOSESPIDER_PAGECOUNT=300
    chromium  127.0.0.1   headless Chromium (Playwright) browsing like a person, 1-4 s between pages

Recorded files are compacted (see `compact`) so that each stays small enough to commit.
Chromium is Debian's /usr/bin/chromium (never `playwright install`); override with CHROMIUM=path.
"""
from __future__ import annotations

import argparse
import gzip
import io
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: the process harness
sys.path.insert(0, str(HERE.parent.parent / "addons"))

from harness import PYTHON, OriginProcess, ShieldProcess, bind_session, subprocess_env

ALLOW_EVERYTHING = """\
version: 1
name: record-everything
default_action: allow
rules: []
"""

SOURCE = {"curl": "127.0.0.2", "requests": "127.0.0.3", "httpx": "127.0.0.4", "scrapy": "127.0.0.5",
          "chromium": "127.0.0.1"}
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
SCRAPY_PAGES = 300


# --- clients ------------------------------------------------------------------------------------

def record_curl(shield: ShieldProcess, ip: str) -> None:
    calls = [
        [shield.proxy_url + "/"],
        ["-k", shield.https_url + "/products/7"],
        ["-k", shield.https_url + "/user/42"],
        ["-k", "-H", "Accept: application/json", shield.https_url + "/api/users/42"],
        ["-I", shield.proxy_url + "/static/site.css"],
        [shield.proxy_url + "/robots.txt"],
    ]
    for args in calls:
        subprocess.run(["curl", "-s", "-o", os.devnull, "--interface", ip, *args], check=True, timeout=30)
        time.sleep(0.7)  # a person at a terminal


def record_requests(shield: ShieldProcess, ip: str) -> None:
    import urllib3

    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # the shield's certificate is self-signed
    with bind_session(ip) as session:
        session.verify = False
        session.get(shield.https_url + "/", timeout=10).raise_for_status()
        for uid in range(1, 26):
            session.get(f"{shield.https_url}/api/users/{uid}", timeout=10).raise_for_status()


def record_httpx(shield: ShieldProcess, ip: str) -> None:
    import httpx

    transport = httpx.HTTPTransport(local_address=ip, verify=False, http2=True)
    with httpx.Client(transport=transport, base_url=shield.https_url, trust_env=False, timeout=10) as client:
        for path in ("/", "/products/1", "/products/2", "/user/3", "/products/3"):
            client.get(path).raise_for_status()
            time.sleep(0.5)


def record_scrapy(shield: ShieldProcess, ip: str) -> None:
    subprocess.run(
        [PYTHON, "-m", "scrapy", "runspider", str(HERE / "shop_spider.py"), "-a", f"base={shield.https_url}",
         "-s", f"CLOSESPIDER_PAGECOUNT={SCRAPY_PAGES}", "-s", f"DOWNLOAD_BIND_ADDRESS={ip}", "-s", "LOG_LEVEL=INFO"],
        check=True, timeout=300, env=subprocess_env(), cwd=HERE,
    )


def record_chromium(shield: ShieldProcess, ip: str) -> None:
    """Home, several products, a few profiles, with assets; clicks links like a reader, 1-4 s apart."""
    from playwright.sync_api import sync_playwright

    rng = random.Random(20251129)  # the pauses are random-looking but the same on every recording
    steps = [
        ('a[href="/products/3"]', "a product from the home page"),
        ('a[rel="next"]', "next product"),
        ('a[rel="next"]', "next product"),
        ('main a[href^="/user/"]', "the seller's profile"),
        ('nav a[href="/"]', "home"),
        ('a[href="/user/2"]', "a community profile"),
        ('nav a[href="/products/1"]', "the product list"),
        ('a[rel="next"]', "next product"),
        ('main a[href^="/user/"]', "the seller's profile"),
        ("back", "back to the product"),
        ('nav a[href="/"]', "home"),
    ]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(ignore_https_errors=True)
            page = context.new_page()
            page.goto(shield.https_url + "/", wait_until="load")
            for selector, _what in steps:
                time.sleep(rng.uniform(1.0, 4.0))
                if selector == "back":
                    page.go_back(wait_until="load")
                else:
                    with page.expect_navigation(wait_until="load"):
                        page.click(selector)
            time.sleep(1.0)
        finally:
            browser.close()


CLIENTS: dict[str, Callable[[ShieldProcess, str], None]] = {
    "curl": record_curl, "requests": record_requests, "httpx": record_httpx, "scrapy": record_scrapy,
    "chromium": record_chromium,
}


# --- recording ----------------------------------------------------------------------------------

GZIP_OVER = 256 * 1024  # bytes: a bigger capture is committed gzip-compressed, as NAME.flows.gz


def compact(src: Path, out_dir: Path, name: str) -> tuple[Path, int]:
    """Write `src` to out_dir as NAME.flows (or NAME.flows.gz when large), without what replay never reads.

    Dropped: the upstream connection's details (replay decides on the client side only) and the
    certificate the shield presented. Everything the policy and the detectors see stays: the
    client connection (address, TLS, ALPN), the request, the response with its body, metadata.
    Flows are sorted by request start. mitmproxy's format is verbose, so a crawl of a few hundred
    pages is gzip-compressed; `scrapeshield replay` reads both (`gunzip -k` for mitmproxy itself).
    """
    from mitmproxy import connection, http
    from mitmproxy.io import FlowReader, FlowWriter

    with open(src, "rb") as fh:
        flows = [f for f in FlowReader(fh).stream() if isinstance(f, http.HTTPFlow)]
    flows.sort(key=lambda f: f.request.timestamp_start)
    buf = io.BytesIO()
    writer = FlowWriter(buf)
    for flow in flows:
        flow.server_conn = connection.Server(address=flow.server_conn.address)
        flow.client_conn.mitmcert = None
        flow.client_conn.certificate_list = []
        writer.add(flow)
    data = buf.getvalue()
    plain, packed = out_dir / f"{name}.flows", out_dir / f"{name}.flows.gz"
    for stale in (plain, packed):
        stale.unlink(missing_ok=True)
    if len(data) > GZIP_OVER:
        packed.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))  # mtime=0: same flows, same bytes
        return packed, len(flows)
    plain.write_bytes(data)
    return plain, len(flows)


def record(name: str, origin: OriginProcess, out_dir: Path, workdir: Path) -> None:
    raw = workdir / f"{name}.raw.flows"
    shield = ShieldProcess(origin.url, policy_text=ALLOW_EVERYTHING, save=raw, workdir=workdir / name,
                           decision_log=workdir / f"{name}.decisions.log")
    with shield:
        CLIENTS[name](shield, SOURCE[name])
        time.sleep(0.5)  # let the last flows finish before the shield stops and closes the file
    path, count = compact(raw, out_dir, name)
    print(f"{name}: {count} flows, {path.stat().st_size / 1024:.0f} KiB -> {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clients", nargs="*", metavar="CLIENT",
                        help=f"which captures to record (default: all of {', '.join(CLIENTS)})")
    parser.add_argument("--out", type=Path, default=HERE, help="where to write NAME.flows (default: this folder)")
    args = parser.parse_args(argv)
    names = args.clients or list(CLIENTS)
    if unknown := [n for n in names if n not in CLIENTS]:
        parser.error(f"unknown client(s) {', '.join(unknown)}; choose from {', '.join(CLIENTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="scrapeshield-record-"))
    try:
        with OriginProcess(workdir=workdir / "origin") as origin:
            for name in names:
                record(name, origin, args.out, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

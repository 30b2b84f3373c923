"""End to end: an origin that sends a 445 KB HTML page compressed, as real sites do (gzip, br,
zstd), or as it is (too large to buffer: above `--stream-threshold` the shield streams it),
behind a real `scrapeshield run`. The client gets the page as the origin sent it, with its
session cookie; the `no_assets` detector still learns the page's references -- from the first
64 KiB, decoded (mitm/bodyprefix.py), or tapped from the stream (`BodyTap`) -- so a client that
fetches the page but not its stylesheet and script is the one with pages owed.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from mitmproxy.net import encoding

from harness import ShieldProcess

pytestmark = pytest.mark.e2e

PAGE = (b"<!doctype html><html><head><title>record</title>"
        b"<link rel=stylesheet href=/static/record.css><script src=/static/record.js></script></head><body>"
        + b"".join(b"<p>entry %d: name, phone, city</p>\n" % i for i in range(12_000)) + b"</body></html>")
TOKEN = "compressed-pages-e2e-token-0123"  # the control API's, for /api/inspect
POLICY = """\
version: 1
name: compressed
session: {ttl: 1d}
detectors: {key: ip}
rules: []
"""
STREAM_THRESHOLD = 256 * 1024  # the shield's default --stream-threshold


class CompressingOrigin(BaseHTTPRequestHandler):
    """`/page?coding=X`: PAGE with Content-Encoding X; `/chunked`: PAGE chunked; `/static/*`: a small asset."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/chunked":  # no Content-Length: the shield finds out it is large while reading it
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(PAGE), 32768):
                chunk = PAGE[start:start + 32768]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path.startswith("/static/"):
            body, headers = b"/* asset */", {"Content-Type": "text/css"}
        else:
            coding = self.path.partition("coding=")[2] or "identity"
            body = encoding.encode(PAGE, coding)
            headers = {"Content-Type": "text/html; charset=utf-8", "Content-Encoding": coding}
        self.send_response(200)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), CompressingOrigin)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def shield(shield_factory: Callable[..., ShieldProcess], origin: str, tmp_path: Path) -> ShieldProcess:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    return shield_factory(upstream=origin, policy_text=POLICY, extra_args=["--admin-token-file", str(token)])


def detectors_of(shield: ShieldProcess, ip: str) -> dict[str, object]:
    answer = httpx.get(f"{shield.admin_url}/api/inspect", params={"key": f"ip={ip}"}, trust_env=False,
                       headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    answer.raise_for_status()
    state = answer.json()["detectors"]
    assert isinstance(state, dict)
    return state


def get(shield: ShieldProcess, ip: str, path: str) -> httpx.Response:
    with httpx.Client(transport=httpx.HTTPTransport(local_address=ip), base_url=shield.proxy_url,
                      trust_env=False, timeout=10, headers={"Accept": "text/html"}) as client:
        return client.get(path)


@pytest.mark.parametrize(("coding", "ip"), [("gzip", "127.0.8.1"), ("br", "127.0.8.2"), ("zstd", "127.0.8.3"),
                                            ("identity", "127.0.8.4")])
def test_a_large_page_reaches_the_client_intact_with_its_cookie_and_its_references_the_detectors(
        shield: ShieldProcess, coding: str, ip: str) -> None:
    # when a client fetches the page as the origin sends it
    page = get(shield, ip, f"/page?coding={coding}")
    # then it gets the page as sent (the shield does not re-encode it) ...
    assert page.status_code == 200
    assert page.headers["content-encoding"] == coding
    sent = int(page.headers["content-length"])
    assert (sent > STREAM_THRESHOLD) == (coding == "identity")  # the identity page is streamed
    body = page.content if coding != "zstd" else encoding.decode(page.content, "zstd")  # httpx has no zstd
    assert body == PAGE and len(PAGE) > 400_000
    # ... with the session the shield minted for it, also when the body was streamed ...
    assert "shield_session=" in page.headers.get("set-cookie", "")
    # ... and the shield learnt the page's two references: one page owed its assets
    state = detectors_of(shield, ip)
    assert (state["html_pages"], state["pending_pages"]) == (1, 1)


def test_the_assets_fetched_for_a_streamed_page_are_matched_to_it(shield: ShieldProcess) -> None:
    ip = "127.0.8.9"
    assert get(shield, ip, "/page?coding=identity").status_code == 200
    for asset in ("/static/record.css", "/static/record.js"):
        assert get(shield, ip, asset).status_code == 200
    state = detectors_of(shield, ip)
    assert (state["html_pages"], state["assets"]) == (1, 2)


def test_a_large_chunked_page_gets_its_cookie_and_is_observed(shield: ShieldProcess) -> None:
    """No Content-Length: the shield streams the HTML page from its first byte through a tap
    (left to itself, mitmproxy would buffer it until it outgrew the threshold and then stream the
    rest, after the shield's last look at it)."""
    page = get(shield, "127.0.8.10", "/chunked")
    assert page.status_code == 200 and page.content == PAGE
    assert "content-length" not in page.headers
    assert "shield_session=" in page.headers.get("set-cookie", "")
    state = detectors_of(shield, "127.0.8.10")
    assert (state["html_pages"], state["pending_pages"]) == (1, 1)


"""The challenge through a real `scrapeshield run` in front of the demo origin (one shield per module).

Source addresses: every test uses its own loopback address(es), because the reserved prefix has a
per-address budget (30/min) shared by the whole module. 127.0.0.x share one /24 (accepted by design);
127.0.1.2 is in another /24.
"""
from __future__ import annotations

import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from challenge_helpers import challenge_and_solve, metric_values, parse_challenge, path_count, solve

from harness import bind_client, bind_session, origin_stats, require_executable

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
UA = "ChallengeE2E/1.0"
VERIFY = "/.shield/verify"


def client(shield, ip: str, ua: str = UA) -> httpx.Client:  # type: ignore[no-untyped-def]
    return bind_client(ip, base_url=shield.proxy_url, headers={"User-Agent": ua})


def cookie_from(resp: httpx.Response) -> str:
    set_cookie = resp.headers["set-cookie"]
    assert set_cookie.startswith("shield_clearance="), set_cookie
    return set_cookie.split(";", 1)[0].split("=", 1)[1]


def assert_challenge_page(status: int, headers, body: str) -> None:  # type: ignore[no-untyped-def]
    h = {k.lower(): v for k, v in headers.items()}
    assert status == 403
    assert h["shield-action"] == "challenge"
    csp = h["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'nonce-" in csp and "unsafe-inline" not in csp
    assert "noindex" in h["x-robots-tag"]
    assert '<meta name="robots"' in body and "noindex" in body
    assert 'name="token"' in body


# --- 1. a real browser ------------------------------------------------------------------------------

@pytest.mark.browser
async def test_chromium_solves_lands_on_the_original_url_and_is_not_challenged_again(shield, demo_origin):
    from playwright.async_api import async_playwright

    require_executable(CHROMIUM)
    base = shield.proxy_url
    first = "/products/101?ref=a%20b&page=2"
    pages = [f"/products/{102 + i}" if i % 2 == 0 else f"/user/{2001 + i}" for i in range(20)]
    before = origin_stats(demo_origin)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            ctx = await browser.new_context()
            page = await ctx.new_page()
            documents: list[tuple[str, int, str | None]] = []
            page.on("response", lambda r: documents.append((r.url, r.status, r.headers.get("shield-action")))
                    if r.request.resource_type == "document" else None)
            async with page.expect_response(lambda r: r.url == base + first and r.status == 200, timeout=60_000):
                await page.goto(base + first)
            # The 200 arrives before its navigation commits: wait for the commit, not just the response.
            await page.wait_for_function(
                "() => document.readyState === 'complete' && !document.getElementById('shield-form')")
            await page.wait_for_load_state()
            assert page.url == base + first  # same path and query
            assert [d[1:] for d in documents] == [(403, "challenge"), (303, None), (200, None)]
            (cookie,) = [c for c in await ctx.cookies() if c["name"] == "shield_clearance"]
            assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

            documents.clear()
            for path in pages:
                response = await page.goto(base + path)
                assert response is not None and response.status == 200, path
                assert response.headers.get("shield-action") is None, path
            assert len(documents) == 20 and all(d[1] == 200 and d[2] is None for d in documents), documents
        finally:
            await browser.close()
    after = origin_stats(demo_origin)
    assert path_count(after, "/products/101") - path_count(before, "/products/101") == 1  # only once solved
    for path in pages:
        assert path_count(after, path) - path_count(before, path) == 1, path


# --- 2. clients that do not run JavaScript --------------------------------------------------------

def test_curl_and_requests_get_the_challenge_and_never_reach_the_origin(shield, demo_origin):
    paths = ["/products/201", "/user/202", "/"]
    before = origin_stats(demo_origin)
    for path in paths:
        out = subprocess.run(["curl", "-s", "-i", "--noproxy", "*", "--interface", "127.0.0.11",
                              shield.proxy_url + path], capture_output=True, timeout=10, check=True).stdout
        head, _, body = out.decode("utf-8", "replace").partition("\r\n\r\n")
        status = int(head.split()[1])
        headers = dict(line.split(": ", 1) for line in head.split("\r\n")[1:])
        assert_challenge_page(status, headers, body)

        with bind_session("127.0.0.12") as session:
            r = session.get(shield.proxy_url + path, timeout=10, allow_redirects=True)
        assert_challenge_page(r.status_code, r.headers, r.text)

    # An API-style client (no HTML in Accept) gets the short text answer, still a challenge.
    with client(shield, "127.0.0.12") as c:
        r = c.get("/products/201", headers={"Accept": "application/json"})
    assert r.status_code == 403 and r.headers["shield-action"] == "challenge"
    assert r.headers["content-type"].startswith("text/plain")

    after = origin_stats(demo_origin)
    for path in paths:
        assert path_count(after, path) == path_count(before, path), path


# --- 3. refusals --------------------------------------------------------------------------------------

def test_forged_and_tampered_cookies_are_refused(shield, demo_origin):
    m0 = metric_values(shield.admin_url)
    with client(shield, "127.0.0.3") as c:
        form = challenge_and_solve(c, "/products/301")
        good = cookie_from(c.post(VERIFY, data=form))
        kind, kid, payload, mac = good.split(".")
        forgeries = [
            "c.00000000.eyJleHAiOjk5OTk5OTk5OTl9.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  # unknown key
            f"{kind}.{kid}.{payload}.{mac[:-2]}{'AA' if mac[-2:] != 'AA' else 'BB'}",  # bad MAC
            f"p.{kid}.{payload}.{mac}",  # another kind
            "garbage",
        ]
        before = origin_stats(demo_origin)
        for forged in forgeries:
            c.cookies.clear()
            r = c.get("/products/302", headers={"Cookie": f"shield_clearance={forged}"})
            assert r.status_code == 403 and r.headers["shield-action"] == "challenge", forged
        assert path_count(origin_stats(demo_origin), "/products/302") == path_count(before, "/products/302")
    m1 = metric_values(shield.admin_url)
    refused = sum(m1.get(k, 0) - m0.get(k, 0) for k in ("cookie.bad_signature", "cookie.malformed"))
    assert refused == len(forgeries)
    assert m1.get("cookie.bad_signature", 0) - m0.get("cookie.bad_signature", 0) >= 2


def test_valid_cookie_is_bound_to_the_network_and_the_user_agent(shield, demo_origin):
    with client(shield, "127.0.0.3") as c:
        form = challenge_and_solve(c, "/products/311")
        r = c.post(VERIFY, data=form)
        assert r.status_code == 303 and r.headers["location"] == "/products/311"
        value = cookie_from(r)
    sent = {"Cookie": f"shield_clearance={value}"}
    m0 = metric_values(shield.admin_url)
    before = origin_stats(demo_origin)

    def get(ip: str, path: str, ua: str = UA) -> httpx.Response:
        with client(shield, ip, ua) as other:
            return other.get(path, headers=sent)

    assert get("127.0.0.3", "/products/311").status_code == 200  # the solver itself
    r = get("127.0.1.2", "/products/312")  # another /24
    assert r.status_code == 403 and r.headers["shield-action"] == "challenge"
    r = get("127.0.0.2", "/products/313")  # same /24: accepted by design
    assert r.status_code == 200 and "shield-action" not in r.headers
    r = get("127.0.0.3", "/products/314", ua="OtherAgent/2.0")  # another User-Agent
    assert r.status_code == 403 and r.headers["shield-action"] == "challenge"

    after = origin_stats(demo_origin)
    delta = {p: path_count(after, p) - path_count(before, p)
             for p in ("/products/311", "/products/312", "/products/313", "/products/314")}
    assert delta == {"/products/311": 1, "/products/312": 0, "/products/313": 1, "/products/314": 0}
    m1 = metric_values(shield.admin_url)
    assert m1["cookie.wrong_client"] - m0.get("cookie.wrong_client", 0) == 1
    assert m1["cookie.wrong_ua"] - m0.get("cookie.wrong_ua", 0) == 1
    assert m1["cookie.ok"] - m0.get("cookie.ok", 0) == 2


def test_solution_bound_to_client_and_ua_at_verification(shield):
    m0 = metric_values(shield.admin_url)
    with client(shield, "127.0.0.9") as c:
        form = challenge_and_solve(c, "/products/321")
    with client(shield, "127.0.0.9", ua="OtherAgent/2.0") as other_ua:
        r = other_ua.post(VERIFY, data=form)
        assert r.status_code == 403 and "set-cookie" not in r.headers
    with client(shield, "127.0.1.9") as other_net:
        r = other_net.post(VERIFY, data=form)
        assert r.status_code == 303 and r.headers["location"] == "/products/321" and "set-cookie" not in r.headers
    with client(shield, "127.0.0.9") as c:  # neither refusal used the challenge up
        r = c.post(VERIFY, data={**form, "nonce": "not a nonce!"})
        assert r.status_code == 403 and "set-cookie" not in r.headers
        r = c.post(VERIFY, data=form)
        assert r.status_code == 303 and "set-cookie" in r.headers
    m1 = metric_values(shield.admin_url)
    for reason in ("pow.wrong_ua", "pow.wrong_client", "pow.bad_proof", "pow.ok"):
        assert m1[reason] - m0.get(reason, 0) == 1, reason


def test_solution_is_single_use_even_when_submitted_concurrently(shield):
    m0 = metric_values(shield.admin_url)
    with client(shield, "127.0.0.4") as c:
        form = challenge_and_solve(c, "/products/331")
        first, second = c.post(VERIFY, data=form), c.post(VERIFY, data=form)
    assert first.status_code == 303 and "set-cookie" in first.headers
    assert second.status_code == 303 and "set-cookie" not in second.headers  # replayed: back to the page

    with client(shield, "127.0.0.5") as c:
        form = challenge_and_solve(c, "/products/332")

    def submit(_: int) -> httpx.Response:
        with client(shield, "127.0.0.5") as own:  # own connection each
            return own.post(VERIFY, data=form)

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(submit, range(10)))
    assert all(r.status_code == 303 for r in results), [r.status_code for r in results]
    assert sum("set-cookie" in r.headers for r in results) == 1
    m1 = metric_values(shield.admin_url)
    assert m1["pow.replayed"] - m0.get("pow.replayed", 0) == 1 + 9
    assert m1["pow.ok"] - m0.get("pow.ok", 0) == 2


# --- 4. open redirect and XSS in the return path ---------------------------------------------------

XSS = '"><script>alert(1)</script>'


def raw_get(port: int, target: bytes, source: str) -> tuple[int, dict[str, str], str]:
    """A request with an exact request-target (httpx would normalise these)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: " + UA.encode()
                     + b"\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.decode("utf-8", "replace").partition("\r\n\r\n")
    lines = head.split("\r\n")
    return int(lines[0].split()[1]), {k.lower(): v for k, v in (ln.split(": ", 1) for ln in lines[1:])}, body


@pytest.mark.parametrize("target", [
    "//evil.com", "//evil.com/products/1", "/\\evil.com", "/products/1/..//evil.com",
    "/products/%2F%2Fevil.com", "/products/1?next=" + XSS, "/" + XSS,
])
def test_return_path_payloads_are_neutralised(shield, target):
    status, headers, body = raw_get(shield.port, target.encode(), "127.0.0.6")
    assert_challenge_page(status, headers, body)
    assert "<script>alert" not in body and "evil.com" not in body
    token, seed, bits = parse_challenge(body)
    with client(shield, "127.0.0.6") as c:
        r = c.post(VERIFY, data={"token": token, "nonce": solve(seed, bits),
                                 # a return field of our own: ignored, the return path is in the signed token
                                 "return": "//evil.com", "return_to": "https://evil.com", "next": "/\\evil.com"})
    assert r.status_code == 303 and "set-cookie" in r.headers
    location = r.headers["location"]
    assert location.startswith("/") and not location.startswith(("//", "/\\")), location
    assert "\\" not in location and "<" not in location and '"' not in location and ">" not in location
    assert httpx.URL("http://127.0.0.1:1").join(location).host == "127.0.0.1"
    if "evil.com" in location:  # kept only as a harmless same-origin path segment or query value
        # (`/evil.com` is the canonical path of `//evil.com`, see docs/policy.md: a page of this site)
        assert location.startswith(("/products/", "/?", "/evil.com")) or "?" in location, location


def test_an_absolute_form_target_is_refused_before_any_challenge(shield):
    # A proxy-style request line (`GET https://evil.com/`) is no request for this site (#15.6).
    status, headers, body = raw_get(shield.port, b"https://evil.com/", "127.0.0.6")
    assert status == 400 and headers["shield-action"] == "reject"
    assert "evil.com" not in body


# --- 5. the reserved prefix ------------------------------------------------------------------------

def test_reserved_prefix_never_reaches_the_origin(shield, demo_origin):
    before = origin_stats(demo_origin)
    with client(shield, "127.0.0.8") as c:
        for method, path in (("GET", "/.shield/anything"), ("GET", "/.shield/verify/../x"), ("POST", "/.shield/x"),
                             ("GET", "/.shield"), ("DELETE", VERIFY)):
            r = c.request(method, path, content=b"a=b")
            assert r.status_code in (404, 405), (method, path, r.status_code)
            assert "x-origin" not in {k.lower() for k in r.headers}
        r = c.get("/.shield/anything")
        assert r.status_code == 404 and r.headers["shield-action"] == "challenge"
    after = origin_stats(demo_origin)
    assert after["total"] == before["total"]
    assert not any(p.startswith("/.shield") for p in after["paths"])


def test_reserved_prefix_is_rate_limited_per_address(shield):
    with client(shield, "127.0.0.7") as c:
        statuses = [c.get(f"/.shield/n{i}").status_code for i in range(30)]
        assert statuses == [404] * 30
        r = c.get("/.shield/n30")
        assert r.status_code == 429 and r.headers["shield-action"] == "throttle"
        r = c.post(VERIFY, data={"token": "x", "nonce": "1"})
        assert r.status_code == 429
    with client(shield, "127.0.0.10") as c:  # another address has its own budget
        assert c.get("/.shield/n0").status_code == 404

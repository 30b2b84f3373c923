"""The proof-of-work page in real headless Chromium, against a tiny local origin (not the proxy).

The browser must solve unaided, POST the solution, follow the 303, keep the cookie and land on
the URL it asked for: on a secure origin (http://127.0.0.1) and on a plain-HTTP origin where
crypto.subtle does not exist (http://shield.test, mapped to 127.0.0.1 by a resolver rule: Chromium
treats all of 127.0.0.0/8 as potentially trustworthy, so 127.0.0.2 would not do).
"""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from pow_server import PowServer

from harness import require_executable
from scrapeshield.challenge import ChallengeConfig, ChallengeService, KeyRing

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync", "--host-resolver-rules=MAP shield.test 127.0.0.1"]
BITS = 14

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]


@pytest.fixture(autouse=True)
def _chromium_installed() -> None:
    require_executable(CHROMIUM)


@contextlib.asynccontextmanager
async def origin_and_browser(**server: object) -> AsyncIterator[tuple[PowServer, int, object]]:
    from playwright.async_api import async_playwright

    srv = PowServer(**server)  # type: ignore[arg-type]
    port = await srv.start(("127.0.0.1",))
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                yield srv, port, browser
            finally:
                await browser.close()
    finally:
        await srv.stop()


async def visit(browser, url: str, landed: str | None = None, **context: object):  # type: ignore[no-untyped-def]
    """Open `url` in a fresh context; return (context, page) once `landed` (default: url) answered 200."""
    ctx = await browser.new_context(**context)
    page = await ctx.new_page()
    target = landed or url
    async with page.expect_response(lambda r: r.url == target and r.status == 200, timeout=60_000):
        await page.goto(url)
    # The 200 arrives before its navigation commits: wait for the commit, not just the response.
    await page.wait_for_function("() => document.readyState === 'complete' && !document.getElementById('shield-form')")
    await page.wait_for_load_state()
    return ctx, page


async def is_secure_context(browser, origin: str) -> bool:  # type: ignore[no-untyped-def]
    page = await browser.new_page()
    await page.goto(origin + "/plain")
    secure = await page.evaluate("() => isSecureContext && !!(self.crypto && crypto.subtle)")
    await page.close()
    return bool(secure)


async def test_page_solves_in_workers_and_lands_on_the_original_url_with_the_cookie():
    async with origin_and_browser(difficulty=BITS) as (srv, port, browser):
        url = f"http://127.0.0.1:{port}/protected/item?id=7&ref=a%20b"

        ctx, page = await visit(browser, url)

        assert page.url == url
        assert await page.inner_text("body") == "landed /protected/item?id=7&ref=a%20b"
        assert [s.status for s in srv.submissions] == [303]
        assert srv.submissions[0].engine.startswith("js/workers")
        (cookie,) = await ctx.cookies()
        assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"], cookie["secure"]) == (
            "shield_clearance", True, "Lax", False)


async def test_cleared_browser_is_not_challenged_again():
    async with origin_and_browser(difficulty=BITS) as (srv, port, browser):
        _ctx, page = await visit(browser, f"http://127.0.0.1:{port}/protected/one")

        response = await page.goto(f"http://127.0.0.1:{port}/protected/two")

        assert response.status == 200 and len(srv.challenged_at) == 1


async def test_page_solves_with_pure_js_where_crypto_subtle_does_not_exist():
    async with origin_and_browser(difficulty=BITS) as (srv, port, browser):
        origin = f"http://shield.test:{port}"
        assert not await is_secure_context(browser, origin)

        _ctx, page = await visit(browser, origin + "/protected/plain-http")

        assert await page.inner_text("body") == "landed /protected/plain-http"
        assert srv.submissions[-1].engine.startswith("js/workers")


async def test_webcrypto_solver_works_where_crypto_subtle_exists():
    service = ChallengeService(KeyRing.generate(), ChallengeConfig(solver="webcrypto"))
    async with origin_and_browser(difficulty=10, service=service) as (srv, port, browser):
        origin = f"http://127.0.0.1:{port}"
        assert await is_secure_context(browser, origin)

        _ctx, page = await visit(browser, origin + "/protected/webcrypto")

        assert await page.inner_text("body") == "landed /protected/webcrypto"
        assert srv.submissions[-1].engine.startswith("subtle/workers")


async def test_page_solves_on_the_main_thread_when_workers_are_unavailable():
    async with origin_and_browser(difficulty=BITS) as (srv, port, browser):
        ctx = await browser.new_context()
        await ctx.add_init_script("delete window.Worker;")
        page = await ctx.new_page()
        url = f"http://127.0.0.1:{port}/protected/no-workers"
        async with page.expect_response(lambda r: r.url == url and r.status == 200, timeout=60_000):
            await page.goto(url)

        assert srv.submissions[-1].engine == "js/main"


async def test_return_path_that_redirects_to_another_origin_is_followed():
    # Guards the CSP choice: with form-action 'self', Chromium blocks the whole submission here.
    async with origin_and_browser(difficulty=BITS) as (_srv, port, browser):
        elsewhere = f"http://shield.test:{port}/elsewhere"
        url = f"http://127.0.0.1:{port}/protected/sso?redirect={elsewhere}"

        _ctx, page = await visit(browser, url, landed=elsewhere)

        assert await page.inner_text("body") == "elsewhere reached"


async def test_browser_without_javascript_gets_through_the_wait_fallback():
    service = ChallengeService(KeyRing.generate(), ChallengeConfig(wait_seconds=1))
    async with origin_and_browser(difficulty=BITS, no_js=True, service=service) as (srv, port, browser):
        url = f"http://127.0.0.1:{port}/protected/no-js"

        _ctx, page = await visit(browser, url, java_script_enabled=False)

        assert await page.inner_text("body") == "landed /protected/no-js"
        assert srv.submissions == [] and srv.service.counters["wait.ok"] == 1


async def test_browser_without_javascript_is_stuck_when_the_rule_has_no_fallback():
    async with origin_and_browser(difficulty=BITS) as (_srv, port, browser):
        ctx = await browser.new_context(java_script_enabled=False)
        page = await ctx.new_page()

        response = await page.goto(f"http://127.0.0.1:{port}/protected/stuck")
        await page.wait_for_timeout(1500)

        assert response.status == 403
        assert "Please enable JavaScript" in await page.inner_text("body")
        assert await ctx.cookies() == []

"""A headless-browser harvesting fleet: Chromium through a pool of source addresses.

Playwright drives Debian's Chromium (never a downloaded one). Each browser context gets its own
HTTP proxy: a tiny CONNECT forwarder on 127.0.0.1 that opens its upstream connection from one
source address of the pool (each in its own /24), so the shield sees the fleet arrive from many
networks with real Chromium TLS, real headers and real JavaScript. A context (fresh cookies) is
used for `records_per_context` records and then thrown away; `tabs` contexts work at once.
A challenge page solves itself in the page, as it would for a person; the fleet just waits for
the profile to appear.
"""
from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from itertools import count as counter
from typing import TYPE_CHECKING

from .scrapers import ScraperResult, record_targets, rotating_addresses
from .shop import PROFILE_MARK, Outcome

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, Response

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-gpu", "--disable-dev-shm-usage"]


class ForwardingProxy:
    """An HTTP CONNECT proxy on 127.0.0.1 whose upstream connections come from `source_address`."""

    def __init__(self, source_address: str) -> None:
        self.source_address = source_address
        self.server: asyncio.Server | None = None
        self.port = 0
        self.connections: set[asyncio.Task[None]] = set()

    async def start(self) -> ForwardingProxy:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for task in self.connections:
            task.cancel()
        await asyncio.gather(*self.connections, return_exceptions=True)
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_writer: asyncio.StreamWriter | None = None
        task = asyncio.current_task()
        if task is not None:
            self.connections.add(task)
            task.add_done_callback(self.connections.discard)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            if method != "CONNECT":
                writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            host, port = target.rsplit(":", 1)
            upstream_reader, upstream_writer = await asyncio.open_connection(
                host, int(port), local_addr=(self.source_address, 0))
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            pass
        finally:
            for w in (writer, upstream_writer):
                if w is not None:
                    w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.write_eof()


async def _fleet(base: str, until: float, addresses: int, records_per_context: int, tabs: int,
                 first_id: int) -> ScraperResult:
    from playwright.async_api import Error as PlaywrightError
    from playwright.async_api import async_playwright

    result = ScraperResult("browser-fleet",
                           f"headless Chromium, {addresses} addresses in {addresses} /24s, "
                           f"fresh context every {records_per_context} records, {tabs} at once")
    proxies = [await ForwardingProxy(ip).start() for ip in rotating_addresses(addresses, 120)]
    targets = record_targets(first_id)
    contexts = counter()
    started = time.time()
    result.halfway = (started + until) / 2

    async def one_context(browser: Browser) -> None:
        proxy = proxies[next(contexts) % len(proxies)]
        context = await browser.new_context(
            ignore_https_errors=True, proxy={"server": f"http://127.0.0.1:{proxy.port}", "bypass": "<-loopback>"})
        page = await context.new_page()
        navigation = NavigationLog()
        page.on("response", navigation.saw)
        try:
            for _ in range(records_per_context):
                if time.time() >= until:
                    break
                shape, path = next(targets)
                before = navigation.challenges
                outcome = await _load_record(page, base + path, until, navigation)
                result.challenges += navigation.challenges - before
                if navigation.challenges > before and outcome is Outcome.RECORD:
                    result.solved += 1
                if outcome is Outcome.CHALLENGE:
                    result.challenges -= 1  # tallied below as the refusal
                result.tally(outcome, shape)
        except PlaywrightError:
            result.errors += 1
        finally:
            with contextlib.suppress(PlaywrightError):
                await context.close()

    async def tab_loop(browser: Browser) -> None:
        while time.time() < until:
            await one_context(browser)

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            await asyncio.gather(*(tab_loop(browser) for _ in range(tabs)))
        finally:
            await browser.close()
    for proxy in proxies:
        await proxy.stop()
    result.wall_s = time.time() - started
    return result


class NavigationLog:
    """The Shield-Action of the page's main-frame navigations, as the browser receives them."""

    def __init__(self) -> None:
        self.challenges = 0
        self.last_action = ""

    def saw(self, response: Response) -> None:
        request = response.request
        if not request.is_navigation_request() or request.frame.parent_frame is not None:
            return
        self.last_action = response.headers.get("shield-action") or ""
        if self.last_action == "challenge":
            self.challenges += 1


async def _load_record(page: Page, url: str, until: float, navigation: NavigationLog) -> Outcome:
    """Navigate and wait (up to 20 s, or `until`) for the profile; a challenge page solves and redirects."""
    from playwright.async_api import Error as PlaywrightError

    try:
        await page.goto(url, wait_until="domcontentloaded", timeout=20_000)
    except PlaywrightError:
        return Outcome.ERROR
    deadline = min(time.time() + 20, until + 5)
    while time.time() < deadline:
        action = navigation.last_action
        if action == "throttle":
            return Outcome.THROTTLE
        if action and action != "challenge":
            return Outcome.BLOCK
        try:
            html = await page.content()
        except PlaywrightError:  # navigating (the challenge form posting): look again
            html = ""
        if PROFILE_MARK in html:
            return Outcome.RECORD
        if not action and html:
            return Outcome.OTHER
        await asyncio.sleep(0.1)
    return Outcome.CHALLENGE  # still on the challenge page: counted as refused


def browser_fleet(base: str, until: float, addresses: int = 50, records_per_context: int = 5, tabs: int = 2,
                  first_id: int = 50_001) -> ScraperResult:
    """Run the fleet until `until` (epoch seconds) in this process; CPU of Chromium included at the end."""
    result = asyncio.run(_fleet(base, until, addresses, records_per_context, tabs, first_id))
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    result.process_cpu_s = children.ru_utime + children.ru_stime + own.ru_utime + own.ru_stime
    return result

"""Simulated people: browser builds over TLS, browsing the demo shop -- most from their own /24; the
groups in SHARED_NETWORKS share one network (an office on one /24, subscribers behind a few CGNAT
addresses).

A person is one curl_cffi `AsyncSession` impersonating one Chrome, Firefox or Safari build (its
TLS handshake, HTTP/2 settings and default headers), bound to its own loopback address, with a
cookie jar for the whole visit. They arrive at the home page or, from a search engine, straight
on a profile; every page is followed by its CSS, JS, icon and images (each fetched once per
person, as a browser cache does, with the page as Referer and the Sec-Fetch headers of a
subresource); between pages they think for 1-10 s and then open a random product or profile.
A challenge page is solved like the page's JavaScript would solve it, at a browser's speed
(solver.BrowserSolver), and submitted as its form; the browser follows the redirect back to the page.
"""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from curl_cffi.requests import AsyncSession

from .shop import PRODUCT_COUNT, USER_COUNT, Outcome, classify, page_assets, record_path
from .solver import BrowserSolver, ChallengeForm

# Weighted like a real audience: most people on the current Chrome (which the scrapers impersonate
# too), the rest on older Chromes, Edge, Firefox and Safari.
BROWSER_BUILDS = ("chrome131", "chrome131", "chrome131", "chrome131", "chrome136", "chrome124", "edge101",
                  "firefox133", "firefox135", "safari17_0", "safari18_0", "safari184")
SEARCH_ENGINE = "https://www.google.com/"
MAX_SOLVES_PER_PAGE = 3
_ASSET_KINDS = {".css": ("style", "text/css,*/*;q=0.1"), ".js": ("script", "*/*"),
                ".svg": ("image", "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"),
                ".ico": ("image", "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8")}


def person_address(index: int) -> str:
    """Person `index`'s own address, each in its own /24: 127.20.0.10, 127.20.1.10, ..."""
    return f"127.{20 + index // 250}.{index % 250}.10"


# Groups of people on one network, by group name: each person's address from their rank in the group.
# An office: everyone on one /24, a desk (address) each. A carrier-grade NAT: many subscribers behind
# the same few public addresses of one /24.
CGNAT_ADDRESSES = 4
SHARED_NETWORKS = {
    "office": lambda k: f"127.30.0.{10 + k % 240}",
    "cgnat": lambda k: f"127.31.0.{1 + k % CGNAT_ADDRESSES}",
}


@dataclass
class PersonResult:
    index: int
    group: str                 # "before" (browsing before the attack), "during" (arrived during it), "baseline",
                               # or a shared network's ("office", "cgnat": SHARED_NETWORKS)
    address: str
    build: str
    arrived_s: float           # seconds after the run started
    deep_link: bool
    pages: int = 0
    assets: int = 0
    records: int = 0           # profile pages seen
    challenges: int = 0        # challenge answers to pages (each solved)
    asset_challenges: int = 0  # challenge answers to subresources (a browser cannot solve those)
    throttles: int = 0
    blocks: int = 0
    errors: int = 0
    first_challenge_s: float | None = None
    max_bits: int = 0          # the hardest proof of work this person was asked for
    gave_up: int = 0           # challenges left unsolved: the browser would still be hashing at the run's end
    refused_paths: list[str] = field(default_factory=list)

    @property
    def challenged(self) -> int:
        return self.challenges + self.asset_challenges


class Person:
    def __init__(self, result: PersonResult, base_url: str, rng: random.Random, solver: BrowserSolver,
                 run_started: float, think_s: tuple[float, float]) -> None:
        self.result = result
        self.base = base_url
        self.rng = rng
        self.solver = solver
        self.run_started = run_started
        self.think_s = think_s
        self.cache: set[str] = set()
        self.until = float("inf")
        self.session: AsyncSession[Any] = AsyncSession(impersonate=result.build, interface=result.address,
                                                       verify=False, timeout=30, proxies={})

    async def browse(self, until: float) -> None:
        self.until = until
        try:
            if self.result.deep_link:
                shape = self.rng.choice(("named", "path", "query"))
                url, referer = record_path(self.rng.randrange(1, USER_COUNT + 1), shape), SEARCH_ENGINE
            else:
                url, referer = "/", None
            while time.time() < until:
                await self.visit(url, referer)
                pause = self.rng.uniform(*self.think_s)
                if time.time() + pause >= until:
                    break
                await asyncio.sleep(pause)
                referer = self.base + url
                url = self.next_page()
        finally:
            await self.session.close()

    def next_page(self) -> str:
        roll = self.rng.random()
        if roll < 0.5:
            return f"/products/{self.rng.randrange(1, PRODUCT_COUNT + 1)}"
        if roll < 0.85:
            return record_path(self.rng.randrange(1, USER_COUNT + 1), self.rng.choice(("named", "path", "query")))
        return "/"

    def _navigation_headers(self, referer: str | None) -> dict[str, str]:
        if referer is None:
            return {}
        site = "same-origin" if referer.startswith(self.base) else "cross-site"
        return {"Referer": referer, "Sec-Fetch-Site": site}

    async def _request(self, method: str, url: str, **kwargs: Any) -> tuple[Outcome, str]:
        try:
            response = await self.session.request(method, self.base + url, **kwargs)  # type: ignore[arg-type]
        except Exception:
            self.result.errors += 1
            return Outcome.ERROR, ""
        text = response.text
        return classify(response.status_code, response.headers, text), text

    def _refused(self, outcome: Outcome, url: str) -> None:
        if outcome is Outcome.THROTTLE:
            self.result.throttles += 1
        elif outcome is Outcome.BLOCK:
            self.result.blocks += 1
        else:
            return
        if len(self.result.refused_paths) < 10:
            self.result.refused_paths.append(f"{outcome}:{url}")

    async def visit(self, url: str, referer: str | None) -> None:
        outcome, page = await self._request("GET", url, headers=self._navigation_headers(referer))
        solves = 0
        while outcome is Outcome.CHALLENGE and solves < MAX_SOLVES_PER_PAGE:
            self.result.challenges += 1
            if self.result.first_challenge_s is None:
                self.result.first_challenge_s = round(time.time() - self.run_started, 1)
            form = ChallengeForm.parse(page)
            if form is None:
                break
            self.result.max_bits = max(self.result.max_bits, form.bits)
            if time.time() + self.solver.browser_seconds(form.bits) > self.until:
                self.result.gave_up += 1  # keeps every run bounded in time; the challenge still counts
                break
            nonce, ms = await self.solver.solve(form)
            solves += 1
            # The form POST; the browser follows the 303 back to the page.
            outcome, page = await self._request(
                "POST", form.action, data=form.fields(nonce, "js/workers2", ms),
                headers={"Referer": self.base + url, "Origin": self.base, "Sec-Fetch-Site": "same-origin"})
        self._refused(outcome, url)
        if outcome not in (Outcome.OK, Outcome.RECORD):
            return
        self.result.pages += 1
        self.result.records += outcome is Outcome.RECORD
        await asyncio.gather(*(self._asset(a, url) for a in page_assets(page) if a not in self.cache))

    async def _asset(self, asset: str, page_url: str) -> None:
        self.cache.add(asset)
        dest, accept = _ASSET_KINDS.get(asset[asset.rfind("."):], ("empty", "*/*"))
        headers = {"Accept": accept, "Referer": self.base + page_url, "Sec-Fetch-Site": "same-origin",
                   "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": dest}
        outcome, _ = await self._request("GET", asset, headers=headers)
        if outcome is Outcome.CHALLENGE:
            self.result.asset_challenges += 1
            if self.result.first_challenge_s is None:
                self.result.first_challenge_s = round(time.time() - self.run_started, 1)
        self._refused(outcome, asset)
        if outcome in (Outcome.OK, Outcome.OTHER):
            self.result.assets += 1
        else:
            self.cache.discard(asset)  # not loaded: the next page tries again


async def crowd(base_url: str, *, groups: list[tuple[str, int, float, float]], run_started: float, until: float,
                seed: int, deep_link_share: float = 0.25, think_s: tuple[float, float] = (1.0, 10.0),
                builds: tuple[str, ...] = BROWSER_BUILDS, first_index: int = 0,
                solver: BrowserSolver | None = None) -> list[PersonResult]:
    """Run people until `until` (epoch seconds). `groups`: (name, count, arrive_from, arrive_to) with arrival
    times in seconds after `run_started`, spread uniformly; a group named in SHARED_NETWORKS shares its
    network, every other person has a /24 of their own. Returns one result per person."""
    rng = random.Random(seed)
    solver = solver or BrowserSolver()
    results: list[PersonResult] = []
    tasks = []
    index = first_index
    for name, count, start, end in groups:
        address = SHARED_NETWORKS.get(name)
        for k in range(count):
            arrive = start + (end - start) * (k + rng.random()) / max(count, 1)
            result = PersonResult(index, name, address(k) if address else person_address(index),
                                  rng.choice(builds), round(arrive, 1), rng.random() < deep_link_share)
            results.append(result)
            tasks.append(_arrive_and_browse(result, base_url, random.Random(rng.random()), solver, run_started,
                                            until, think_s))
            index += 1
    await asyncio.gather(*tasks)
    return results


async def _arrive_and_browse(result: PersonResult, base_url: str, rng: random.Random, solver: BrowserSolver,
                             run_started: float, until: float, think_s: tuple[float, float]) -> None:
    delay = run_started + result.arrived_s - time.time()
    if delay > 0:
        await asyncio.sleep(delay)
    if time.time() >= until:
        return
    await Person(result, base_url, rng, solver, run_started, think_s).browse(until)

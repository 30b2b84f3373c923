"""The scrapers: what harvests the demo shop's profiles while the people browse.

Every scraper walks its own range of user ids in order, alternating the two record shapes the
default policy does not name (`/people/N`, `/profile?id=N`), and never gives up: a refused
request is followed by the next id (after `refusal_pause` seconds, to keep the shared machine
usable). All stop at `until` (epoch seconds) and return a `ScraperResult`.

- naive          python-requests, one address
- rotating       httpx, one client per address over 200 addresses in 200 /24s, round robin
- impersonating  curl_cffi as the people's most common Chrome build (handshake and navigation
                 headers), one address, cookies, Referer
- pow-fleet      one process per core; each owns a slice of 200 addresses (own /24 each), a curl_cffi
                 Chrome session (cookie jar) per address, round robin; a challenge is solved with the
                 native OpenSSL solver and submitted; a refused address rests for a minute
- browser-fleet  headless Chromium (Playwright) through one forwarding proxy per source address (50
                 addresses, own /24 each), a fresh context every few records; the page's own
                 JavaScript solves any challenge (see browser_fleet.py)
- mimic-fleet    one process per core; 50 addresses (own /24 each), a curl_cffi Chrome session per
                 address, all at once: each shows a person's history (a page, its assets, a link,
                 past `fresh_for`), then reads records by random id, about one a second at
                 irregular intervals, each
                 named from the previous page and with its assets; native solves
"""
from __future__ import annotations

import asyncio
import contextlib
import random
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .shop import PRODUCT_COUNT, UNNAMED_RECORD_SHAPES, USER_COUNT, Outcome, classify, page_assets, record_path
from .solver import ChallengeForm

REFUSAL_PAUSE_S = 0.25
# The Chrome build the impersonating scrapers claim: the one most people use (people.BROWSER_BUILDS).
SCRAPER_BUILD = "chrome131"


@dataclass
class ScraperResult:
    name: str
    description: str
    requests: int = 0
    records: int = 0
    challenges: int = 0              # challenge answers received
    solved: int = 0                  # challenges solved and accepted (clearance obtained)
    throttles: int = 0
    blocks: int = 0
    errors: int = 0
    other: int = 0
    records_by_shape: dict[str, int] = field(default_factory=dict)
    first_refusal: int | None = None  # 1-based request index of the first refusal
    wall_s: float = 0.0
    solver_cpu_s: float = 0.0        # CPU time inside the PoW solver (native fleet)
    process_cpu_s: float = 0.0       # CPU time of the scraper's processes (fleets), HTTP included
    hashes: int = 0
    max_bits: int = 0
    workers: int = 1
    notes: str = ""
    late_records: int = 0            # records in the second half of the attack window (for the 10-min projection)
    halfway: float = 0.0             # epoch seconds: the middle of the attack window

    def summary(self) -> str:
        return (f"{self.name}: {self.records} records of {self.requests} requests ({self.late_records} late), "
                f"{self.challenges} challenges, {self.solved} solved, {self.throttles} throttles, {self.blocks} "
                f"blocks, {self.errors} errors, solver {self.solver_cpu_s:.2f} CPU-s, max {self.max_bits} bits")

    def tally(self, outcome: Outcome, shape: str) -> None:
        self.requests += 1
        if outcome is Outcome.RECORD:
            self.records += 1
            self.late_records += time.time() >= self.halfway
            self.records_by_shape[shape] = self.records_by_shape.get(shape, 0) + 1
            return
        if outcome is Outcome.CHALLENGE:
            self.challenges += 1
        elif outcome is Outcome.THROTTLE:
            self.throttles += 1
        elif outcome is Outcome.BLOCK:
            self.blocks += 1
        elif outcome is Outcome.ERROR:
            self.errors += 1
        else:
            self.other += 1
            return
        if self.first_refusal is None and outcome is not Outcome.ERROR:
            self.first_refusal = self.requests

    def challenge_form(self, page: str, max_bits: int) -> ChallengeForm | None:
        """A challenge received: its form, or None when the fleet gives up on it (noted)."""
        self.challenges += 1
        form = ChallengeForm.parse(page)
        if form is None or form.bits > max_bits:
            self.notes = f"gave up on {form.bits if form else '?'}-bit challenges"
            return None
        return form

    def paid(self, hashes: int, cpu: float, bits: int) -> None:
        """One native solve: its hashes, solver CPU-seconds and difficulty."""
        self.hashes += hashes
        self.solver_cpu_s += cpu
        self.max_bits = max(self.max_bits, bits)

    def merge(self, other: ScraperResult) -> None:
        for name in ("requests", "records", "late_records", "challenges", "solved", "throttles", "blocks", "errors",
                     "other", "solver_cpu_s", "process_cpu_s", "hashes"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for shape, n in other.records_by_shape.items():
            self.records_by_shape[shape] = self.records_by_shape.get(shape, 0) + n
        self.max_bits = max(self.max_bits, other.max_bits)
        self.wall_s = max(self.wall_s, other.wall_s)
        if other.first_refusal is not None and self.first_refusal is None:
            self.first_refusal = other.first_refusal


def record_targets(first_id: int, stride: int = 1) -> Iterator[tuple[str, str]]:
    """(shape, path) for ids first_id, first_id + stride, ..., alternating the unnamed shapes."""
    user_id, k = first_id, 0
    while True:
        shape = UNNAMED_RECORD_SHAPES[k % len(UNNAMED_RECORD_SHAPES)]
        yield shape, record_path(user_id, shape)
        user_id, k = user_id + stride, k + 1


def rotating_addresses(count: int, second_octet: int) -> list[str]:
    """`count` addresses, each in its own /24: 127.<second>.0.2, 127.<second>.1.2, ... (wrapping octets)."""
    return [f"127.{second_octet + i // 250}.{i % 250}.2" for i in range(count)]


def _walk(result: ScraperResult, base: str, until: float, first_id: int,
          fetch: Callable[[int, str], tuple[int, Any, str] | None], refusal_pause: float) -> ScraperResult:
    started = time.time()
    result.halfway = (started + until) / 2
    for index, (shape, path) in enumerate(record_targets(first_id)):
        if time.time() >= until:
            break
        answer = fetch(index, base + path)
        outcome = Outcome.ERROR if answer is None else classify(*answer)
        result.tally(outcome, shape)
        if outcome not in (Outcome.RECORD, Outcome.OK, Outcome.OTHER):
            time.sleep(refusal_pause)
    result.wall_s = time.time() - started
    return result


def naive(base: str, until: float, first_id: int = 10_001, address: str = "127.5.0.1",
          refusal_pause: float = REFUSAL_PAUSE_S) -> ScraperResult:
    import requests
    import urllib3

    from harness import bind_session

    urllib3.disable_warnings()
    session = bind_session(address)

    def fetch(_index: int, url: str) -> tuple[int, Any, str] | None:
        try:
            r = session.get(url, timeout=15, verify=False)
        except requests.RequestException:
            return None
        return r.status_code, r.headers, r.text

    with session:
        return _walk(ScraperResult("naive", f"python-requests, 1 address ({address})"), base, until, first_id,
                     fetch, refusal_pause)


def rotating(base: str, until: float, first_id: int = 20_001, count: int = 200,
             refusal_pause: float = REFUSAL_PAUSE_S) -> ScraperResult:
    import httpx

    addresses = rotating_addresses(count, 100)
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(httpx.Client(transport=httpx.HTTPTransport(local_address=ip, verify=False),
                                                    trust_env=False, timeout=15.0)) for ip in addresses]

        def fetch(index: int, url: str) -> tuple[int, Any, str] | None:
            try:
                r = clients[index % len(clients)].get(url)
            except httpx.HTTPError:
                return None
            return r.status_code, r.headers, r.text

        return _walk(ScraperResult("rotating", f"httpx, {count} addresses in {count} /24s, round robin"), base,
                     until, first_id, fetch, refusal_pause)


def impersonating(base: str, until: float, first_id: int = 30_001, address: str = "127.5.1.1",
                  refusal_pause: float = REFUSAL_PAUSE_S) -> ScraperResult:
    from curl_cffi import requests as curl_requests

    referer = [f"{base}/"]
    with curl_requests.Session(impersonate=SCRAPER_BUILD, verify=False, timeout=15, interface=address,
                               proxies={}) as session:

        def fetch(_index: int, url: str) -> tuple[int, Any, str] | None:
            try:
                r = session.get(url, headers={"Referer": referer[0], "Sec-Fetch-Site": "same-origin"})
            except Exception:
                return None
            referer[0] = url
            return r.status_code, r.headers, r.text

        return _walk(ScraperResult("impersonating", f"curl_cffi as {SCRAPER_BUILD}, 1 address ({address}), cookies"),
                     base, until, first_id, fetch, refusal_pause)


# --- the proof-of-work fleet (one process per core) ------------------------------------------------

def pow_fleet_worker(base: str, until: float, worker: int, workers: int, library: str, count: int = 200,
                     max_bits: int = 26, rest_s: float = 60.0, refusal_pause: float = 0.05,
                     referer: bool = True) -> ScraperResult:
    """One fleet process: its slice of `count` addresses, a Chrome session per address, native solves.
    With `referer`, every record request claims to come from the shop's home page (a forged same-site
    Referer, as a scraper copying a browser's headers sends)."""
    from curl_cffi import requests as curl_requests

    from .solver import NativeSolver

    solver = NativeSolver(Path(library))
    solver_rate = 3e6  # hashes/s, a little under this VM's measured rate (BENCHMARKS.md)
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    addresses = rotating_addresses(count, 110)[worker::workers]
    result = ScraperResult("pow-fleet", "", workers=workers)
    sessions: dict[str, Any] = {}
    resting: dict[str, float] = {}
    started = time.time()
    result.halfway = (started + until) / 2

    def session_for(address: str) -> Any:
        if address not in sessions:
            sessions[address] = curl_requests.Session(impersonate=SCRAPER_BUILD, verify=False, timeout=30,
                                                      interface=address, proxies={})
        return sessions[address]

    def get(session: Any, method: str, url: str, **kwargs: Any) -> tuple[Outcome, str]:
        try:
            r = session.request(method, url, **kwargs)
        except Exception:
            return Outcome.ERROR, ""
        return classify(r.status_code, r.headers, r.text), r.text

    targets = record_targets(40_001 + worker, workers)
    turn = 0
    try:
        while time.time() < until:
            now = time.time()
            ready = [a for a in addresses if resting.get(a, 0.0) <= now]
            if not ready:
                time.sleep(min(1.0, max(0.0, until - now)))
                continue
            address = ready[turn % len(ready)]
            turn += 1
            session = session_for(address)
            shape, path = next(targets)
            outcome, page = get(session, "GET", base + path, headers={"Referer": base + "/"} if referer else {})
            solves = 0
            while outcome is Outcome.CHALLENGE and solves < 2 and time.time() < until:
                form = result.challenge_form(page, max_bits)
                if form is None or time.time() + (1 << form.bits) / solver_rate > until:
                    break  # given up, or it would still be hashing when the run ends
                nonce, hashes, cpu = solver.solve(form.seed, form.bits)
                solves += 1
                result.paid(hashes, cpu, form.bits)
                outcome, page = get(session, "POST", base + form.action,
                                    data=form.fields(nonce, "js/workers8", 50),
                                    headers={"Referer": base + path, "Origin": base})
                if outcome is not Outcome.CHALLENGE:
                    result.solved += 1
            if outcome is Outcome.CHALLENGE:  # still challenged after solving: count it as the refusal
                result.challenges -= 1
            result.tally(outcome, shape)
            if outcome in (Outcome.THROTTLE, Outcome.BLOCK, Outcome.CHALLENGE):
                resting[address] = time.time() + rest_s
                time.sleep(refusal_pause)
    finally:
        for session in sessions.values():
            session.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result.process_cpu_s = (usage.ru_utime - usage0.ru_utime) + (usage.ru_stime - usage0.ru_stime)
    result.wall_s = time.time() - started
    return result


# --- the mimic fleet: identities that show a person's history, then harvest at a person's pace ------

def mimic_fleet_worker(base: str, until: float, worker: int, workers: int, library: str, count: int = 50,
                       max_bits: int = 26, pace_s: float = 1.0, rest_s: float = 60.0,
                       rotate_after: int = 0, seed: int = 7) -> ScraperResult:
    """One fleet process: its slice of `count` addresses (own /24 each), one curl_cffi Chrome session
    per address, all browsing at once. Each identity does what docs/sessions.md says a person's
    history is -- the home page, its assets with the page as Referer, then waiting out `fresh_for`
    -- and then reads records by random id (no walk to detect), each with the previous page as its
    Referer and the record's uncached assets loaded, `pace_s` apart on average, as irregular as a
    person's (a fifth of it fixed, the rest exponential: no `regular_timing`). A challenge is
    solved with the native solver; a throttle or block rests the identity for `rest_s`. With
    `rotate_after` N, an identity is dropped after N records or at its first refusal, and a new one
    (a fresh cookie jar, history shown again) starts on the same address."""
    return asyncio.run(_mimic_fleet(base, until, worker, workers, Path(library), count, max_bits, pace_s, rest_s,
                                    rotate_after, seed))


async def _mimic_fleet(base: str, until: float, worker: int, workers: int, library: Path, count: int,
                       max_bits: int, pace_s: float, rest_s: float, rotate_after: int,
                       seed: int) -> ScraperResult:
    from curl_cffi.requests import AsyncSession

    from .solver import NativeSolver

    solver = NativeSolver(library)
    solver_rate = 3e6  # hashes/s, as the PoW fleet assumes
    one_core = asyncio.Semaphore(1)
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    rng = random.Random(seed * 1000 + worker)
    result = ScraperResult("mimic-fleet", "", workers=workers)
    started = time.time()
    result.halfway = (started + until) / 2
    taken: set[int] = set()

    def next_id() -> int:
        while True:
            user_id = rng.randrange(50_001, USER_COUNT + 1)
            if user_id not in taken:
                taken.add(user_id)
                return user_id

    async def address_loop(address: str) -> None:
        while time.time() < until:
            await identity(address)

    async def identity(address: str) -> None:
        cache: set[str] = set()
        async with AsyncSession(impersonate=SCRAPER_BUILD, interface=address, verify=False, timeout=30,
                                proxies={}) as session:

            async def get(method: str, url: str, **kwargs: Any) -> tuple[Outcome, str]:
                try:
                    r = await session.request(method, base + url, **kwargs)  # type: ignore[arg-type]
                except Exception:
                    return Outcome.ERROR, ""
                return classify(r.status_code, r.headers, r.text), r.text

            async def assets(page: str, url: str) -> None:
                for asset in page_assets(page):
                    if asset not in cache:
                        cache.add(asset)
                        await get("GET", asset, headers={"Referer": base + url, "Sec-Fetch-Site": "same-origin",
                                                         "Sec-Fetch-Mode": "no-cors"})

            async def page(url: str, referer: str | None, shape: str) -> Outcome:
                headers = {"Referer": base + referer, "Sec-Fetch-Site": "same-origin"} if referer else {}
                outcome, text = await get("GET", url, headers=headers)
                solves = 0
                while outcome is Outcome.CHALLENGE and solves < 2 and time.time() < until:
                    form = result.challenge_form(text, max_bits)
                    if form is None:
                        break
                    async with one_core:  # one solve at a time: a process hashes on one core
                        if time.time() + (1 << form.bits) / solver_rate > until:
                            break  # it would still be hashing when the run ends: keep the run bounded
                        nonce, hashes, cpu = await asyncio.to_thread(solver.solve, form.seed, form.bits)
                    solves += 1
                    result.paid(hashes, cpu, form.bits)
                    outcome, text = await get("POST", form.action, data=form.fields(nonce, "js/workers8", 50),
                                              headers={"Referer": base + url, "Origin": base,
                                                       "Sec-Fetch-Site": "same-origin"})
                    if outcome is not Outcome.CHALLENGE:
                        result.solved += 1
                if outcome is Outcome.CHALLENGE and solves:
                    result.challenges -= 1  # still challenged after solving: counted as the refusal
                if shape:
                    result.tally(outcome, shape)
                if outcome in (Outcome.OK, Outcome.RECORD):
                    await assets(text, url)
                return outcome

            # A person's arrival: the home page and its assets, a look around, then past `fresh_for`.
            await page("/", None, "")
            await asyncio.sleep(rng.uniform(2.0, 4.0))
            previous = f"/products/{rng.randrange(1, PRODUCT_COUNT + 1)}"
            await page(previous, "/", "")
            await asyncio.sleep(rng.uniform(8.0, 10.0))
            k = got = 0
            while time.time() < until and not (rotate_after and got >= rotate_after):
                shape = UNNAMED_RECORD_SHAPES[k % len(UNNAMED_RECORD_SHAPES)]
                k += 1
                url = record_path(next_id(), shape)
                outcome = await page(url, previous, shape)
                if outcome in (Outcome.OK, Outcome.RECORD):
                    previous = url
                    got += outcome is Outcome.RECORD
                elif outcome is not Outcome.OTHER:
                    if rotate_after:
                        return  # refused: a new identity on this address instead of waiting
                    await asyncio.sleep(min(rest_s, max(0.0, until - time.time())))
                    continue
                await asyncio.sleep(pace_s * (0.2 + rng.expovariate(1.25)))

    addresses = rotating_addresses(count, 120)[worker::workers]
    await asyncio.gather(*(address_loop(a) for a in addresses))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result.process_cpu_s = (usage.ru_utime - usage0.ru_utime) + (usage.ru_stime - usage0.ru_stime)
    result.wall_s = time.time() - started
    return result

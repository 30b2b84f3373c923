"""Harvest evaluation: real scrapers against a real `scrapeshield run` with policies/default.yaml.

Every scenario gets its OWN demo origin and its OWN fresh shield process, so one scraper's bans,
throttles and (stack-keyed) harvest score never help or hurt another. Scenarios:

    a  httpx, one IP (127.0.0.1), sequential, as fast as it can       /user/1..N
    b  httpx, one IP (127.0.0.3), 1 request/s (real clock)             /user/1..N_slow
    c  httpx, one client stack rotating over 200 addresses in 200 different /24s (127.{10+i}.0.2)
    d  curl_cffi impersonating Chrome (its own navigation headers + Referer), one IP (127.0.0.4)
    e  `scrapy runspider tests/harvest/user_spider.py`, default settings, bindaddress 127.0.0.5
    browser  headless Chromium, a person-like session: home, products, profiles, with assets,
             pauses of 1-4 s (must never be blocked, at most one challenge)

A "record" is an HTTP 200 without a `Shield-Action` header whose body is the origin's profile
(`class="profile"`); every scraper asks for all N ids, whatever it is answered (it never gives
up), and we report how many records it got, the index (1-based, in request order) of the first
refused request and that refusal's action, and the origin's own `records_served` as a
cross-check.

    .venv/bin/python bench/harvest_eval.py --records 1000 --browser-pages 15 --format table
    .venv/bin/python bench/harvest_eval.py --only a,c --records 200 --format json

Importable: `run_scenario(name, ...)`, `run_all(...)`, `HarvestResult`.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for _p in (str(REPO / "tests"), str(REPO / "addons")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import httpx

from harness import PYTHON, OriginProcess, ShieldProcess, origin_stats, subprocess_env

DEFAULT_POLICY = REPO / "policies" / "default.yaml"
SPIDER = REPO / "tests" / "harvest" / "user_spider.py"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
PROFILE_MARK = 'class="profile"'
SCRAPERS = ("a", "b", "c", "d", "e")
ALL = (*SCRAPERS, "browser")
DESCRIPTIONS = {
    "a": "httpx, 1 IP, sequential, max speed",
    "b": "httpx, 1 IP, paced",
    "c": "httpx, 200 IPs in 200 /24s, 1 stack",
    "d": "curl_cffi chrome, 1 IP",
    "e": "scrapy defaults, 1 IP",
    "browser": "headless Chromium, person-like",
}


@dataclass
class HarvestResult:
    scenario: str
    description: str
    requested: int = 0                 # requests for records made (scrapers) / pages visited (browser)
    records: int = 0                   # profile pages obtained (200, no Shield-Action, profile body)
    origin_records: int = 0            # the origin's records_served (cross-check)
    first_refusal: int | None = None   # 1-based index of the first refused request
    first_action: str | None = None    # its Shield-Action (throttle/challenge/block) or "drop"/"error"
    last_record_at: int | None = None  # index of the last request that still got a record
    actions: dict[str, int] = field(default_factory=dict)  # refusals by action
    challenges: int = 0                # responses with Shield-Action: challenge (browser: all responses)
    blocks: int = 0                    # block + ban answers seen
    wall_s: float = 0.0
    notes: str = ""

    def refused(self, index: int, action: str) -> None:
        self.actions[action] = self.actions.get(action, 0) + 1
        if action == "challenge":
            self.challenges += 1
        if action == "block":
            self.blocks += 1
        if self.first_refusal is None:
            self.first_refusal, self.first_action = index, action

    def got(self, index: int) -> None:
        self.records += 1
        self.last_record_at = index


def classify(status: int | None, headers: Any, body: str | bytes | None) -> str:
    """'record', a Shield-Action value, 'drop' (no answer), or 'other' (e.g. an origin 404)."""
    if status is None:
        return "drop"
    action = headers.get("shield-action") if headers is not None else None
    if action:
        return str(action)
    if status == 200 and body is not None:
        text = body if isinstance(body, str) else body.decode("utf-8", "replace")
        if PROFILE_MARK in text:
            return "record"
    return "other"


def _tally(result: HarvestResult, index: int, kind: str) -> None:
    if kind == "record":
        result.got(index)
    elif kind != "other":
        result.refused(index, kind)


# --- processes ----------------------------------------------------------------------------------

@contextlib.contextmanager
def shielded_origin(workdir: Path, *, tls: bool = False, policy: Path = DEFAULT_POLICY,
                    save_flows: bool = False) -> Iterator[tuple[str, OriginProcess, ShieldProcess]]:
    """A fresh demo origin and a fresh `scrapeshield run` in front of it; yields (base_url, origin, shield)."""
    workdir.mkdir(parents=True, exist_ok=True)
    with OriginProcess(workdir=workdir / "origin") as origin:
        shield = ShieldProcess(origin.url, policy, workdir=workdir / "shield",
                               decision_log=workdir / "decisions.jsonl",
                               save=(workdir / "flows.mitm") if save_flows else None,
                               extra_args=["--confdir", str(workdir / "confdir")])
        with shield:
            yield (shield.https_url if tls else shield.proxy_url), origin, shield


# --- scrapers -----------------------------------------------------------------------------------

def _httpx_walk(base: str, n: int, result: HarvestResult, client_for: Callable[[int], httpx.Client],
                interval: float = 0.0) -> None:
    start = time.monotonic()
    for i in range(1, n + 1):
        if interval:
            delay = start + (i - 1) * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        client = client_for(i)
        try:
            r = client.get(f"{base}/user/{i}")
            kind = classify(r.status_code, r.headers, r.text)
        except httpx.HTTPError:
            kind = "drop"
        result.requested = i
        _tally(result, i, kind)


def scrape_httpx_one_ip(base: str, n: int, result: HarvestResult, ip: str, interval: float = 0.0) -> None:
    transport = httpx.HTTPTransport(local_address=ip, verify=False)
    with httpx.Client(transport=transport, trust_env=False, timeout=10.0) as client:
        _httpx_walk(base, n, result, lambda i: client, interval)


def rotating_addresses(count: int = 200) -> list[str]:
    """`count` loopback addresses, each in its own /24: 127.10.0.2, 127.11.0.2, ... (wrapping into 127.x.y.2)."""
    out = []
    for i in range(count):
        second, third = 10 + i % 240, i // 240
        out.append(f"127.{second}.{third}.2")
    return out


def scrape_httpx_rotating(base: str, n: int, result: HarvestResult, addresses: list[str]) -> None:
    clients = [httpx.Client(transport=httpx.HTTPTransport(local_address=ip, verify=False), trust_env=False,
                            timeout=10.0) for ip in addresses]
    try:
        _httpx_walk(base, n, result, lambda i: clients[(i - 1) % len(clients)])
    finally:
        for c in clients:
            c.close()


def scrape_curl_cffi(base: str, n: int, result: HarvestResult, ip: str) -> None:
    from curl_cffi import requests as curl_requests

    # impersonate="chrome": Chrome's handshake and its default navigation header set (Accept,
    # Accept-Language, sec-ch-ua*, sec-fetch-*, Upgrade-Insecure-Requests, UA) in Chrome's order.
    # We add what a browser clicking through would send: a Referer, and the cookies it was given.
    with curl_requests.Session(impersonate="chrome", verify=False, timeout=10, interface=ip,
                               proxies={}) as session:
        referer = f"{base}/"
        for i in range(1, n + 1):
            url = f"{base}/user/{i}"
            try:
                r = session.get(url, headers={"Referer": referer})
                kind = classify(r.status_code, r.headers, r.text)
            except Exception:
                kind = "drop"
            result.requested = i
            _tally(result, i, kind)
            referer = url


def scrape_scrapy(base: str, n: int, result: HarvestResult, ip: str, workdir: Path) -> None:
    out = workdir / "scrapy_items.jsonl"
    log = workdir / "scrapy.log"
    argv = [PYTHON, "-m", "scrapy.cmdline", "runspider", str(SPIDER), "-a", f"base={base}", "-a", f"count={n}",
            "-a", f"bind={ip}", "-s", f"CLOSESPIDER_PAGECOUNT={n}", "-s", "LOG_LEVEL=INFO",
            "-s", f"LOG_FILE={log}", "-O", f"{out}:jsonlines"]
    env = subprocess_env({"SCRAPY_SETTINGS_MODULE": ""})
    env.pop("SCRAPY_SETTINGS_MODULE", None)
    subprocess.run(argv, cwd=workdir, env=env, check=True, timeout=max(120, n), stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    items = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    # Scrapy is concurrent (16 requests in flight): the order is the order responses arrived.
    for index, item in enumerate(items, 1):
        result.requested = index
        _tally(result, index, item["kind"])
    result.notes = f"{len(items)} responses (16 concurrent; order = arrival)"


# --- the person -----------------------------------------------------------------------------

def person_plan(pages: int, rng: random.Random) -> list[str]:
    """A browsing path: home, product pages (next/previous), a seller's profile, a community profile, home."""
    plan = ["/"]
    product_id = rng.randint(1, 20)
    while len(plan) < pages:
        r = rng.random()
        if r < 0.45:
            plan.append(f"/products/{product_id}")
            product_id = max(1, product_id + rng.choice((1, 1, 2, -1)))
        elif r < 0.75:
            plan.append(f"/user/{rng.randint(1, 5) if rng.random() < 0.5 else rng.randint(1, 5000)}")
        elif r < 0.85:
            plan.append("/")
        else:
            plan.append(f"/products/{rng.randint(1, 200)}")
    return plan[:pages]


def browse_like_a_person(base: str, pages: int, result: HarvestResult, *, pause: tuple[float, float] = (1.0, 4.0),
                         seed: int = 7, tls: bool = False, user_agent: str | None = None) -> None:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    rng = random.Random(seed)
    plan = person_plan(pages, rng)
    seen: list[dict[str, Any]] = []
    failed: list[str] = []

    def on_response(response: Any) -> None:
        action = response.headers.get("shield-action")
        seen.append({"url": response.url, "status": response.status, "action": action})
        if action:
            result.refused(len(seen), action)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context_args: dict[str, Any] = {"ignore_https_errors": tls}
            if user_agent:
                context_args["user_agent"] = user_agent
            ctx = browser.new_context(**context_args)
            page = ctx.new_page()
            page.on("response", on_response)
            ok_pages = 0
            for i, path in enumerate(plan, 1):
                result.requested = i
                try:
                    page.goto(base + path, wait_until="load", timeout=30_000)
                    # A challenge page solves itself and navigates on; wait for the real page.
                    page.wait_for_selector("footer", timeout=20_000)
                    page.wait_for_load_state("load")
                except PlaywrightError as exc:  # blocked (no footer on a block page), or a hang
                    failed.append(f"{path}: {type(exc).__name__}")
                    time.sleep(rng.uniform(*pause))
                    continue
                if page.locator(".profile").count():
                    result.records += 1
                if page.locator("header h1").count():
                    ok_pages += 1
                time.sleep(rng.uniform(*pause))
            result.notes = (f"{ok_pages}/{len(plan)} pages rendered, {len(seen)} responses "
                            f"(UA {'custom' if user_agent else 'HeadlessChrome default'})"
                            + (f"; not rendered: {', '.join(failed)}" if failed else ""))
        finally:
            browser.close()


# --- running -----------------------------------------------------------------------------------

def run_scenario(name: str, n: int, *, workdir: Path, tls: bool = False, interval_b: float = 1.0,
                 browser_pages: int = 15, browser_pause: tuple[float, float] = (1.0, 4.0),
                 browser_ua: str | None = None, policy: Path = DEFAULT_POLICY,
                 save_flows: bool = False) -> HarvestResult:
    """Run one scenario against its own fresh origin + shield and return its result."""
    desc = DESCRIPTIONS[name] + (f" ({1 / interval_b:g} req/s)" if name == "b" else "")
    result = HarvestResult(name, desc)
    wd = workdir / name
    with shielded_origin(wd, tls=tls, policy=policy, save_flows=save_flows) as (base, origin, _shield):
        t0 = time.monotonic()
        if name == "a":
            scrape_httpx_one_ip(base, n, result, "127.0.0.1")
        elif name == "b":
            scrape_httpx_one_ip(base, n, result, "127.0.0.3", interval=interval_b)
        elif name == "c":
            scrape_httpx_rotating(base, n, result, rotating_addresses(200))
        elif name == "d":
            scrape_curl_cffi(base, n, result, "127.0.0.4")
        elif name == "e":
            scrape_scrapy(base, n, result, "127.0.0.5", wd)
        elif name == "browser":
            browse_like_a_person(base, browser_pages, result, pause=browser_pause, tls=tls, user_agent=browser_ua)
        else:
            raise ValueError(f"unknown scenario {name!r}")
        result.wall_s = round(time.monotonic() - t0, 2)
        result.origin_records = int(origin_stats(origin.url)["records_served"])
    return result


def run_all(names: list[str], n: int, *, n_slow: int | None = None, workdir: Path | None = None,
            parallel: bool = False, **kwargs: Any) -> list[HarvestResult]:
    """Run scenarios (each with its own origin + shield). `parallel` runs them in threads at once."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="harvest-eval-"))
    sizes = {name: (n_slow if (name == "b" and n_slow is not None) else n) for name in names}
    if not parallel:
        return [run_scenario(name, sizes[name], workdir=workdir, **kwargs) for name in names]
    results: dict[str, HarvestResult] = {}
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            results[name] = run_scenario(name, sizes[name], workdir=workdir, **kwargs)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(name,)) for name in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [results[name] for name in names]


def misses(results: list[HarvestResult], max_records: int = 100) -> list[str]:
    """Target misses: a scraper with more than `max_records` records; a browser blocked or challenged twice."""
    out = []
    for r in results:
        if r.scenario == "browser":
            if r.blocks or r.actions.get("throttle") or r.actions.get("drop"):
                out.append(f"browser refused: {r.actions}")
            if r.challenges > 1:
                out.append(f"browser challenged {r.challenges} times")
        elif r.records > max_records:
            out.append(f"{r.scenario}: {r.records} records > {max_records}")
    return out


def table(results: list[HarvestResult]) -> str:
    head = ("scraper", "what", "asked", "records", "origin", "1st refusal", "action", "last record", "refusals",
            "wall s")
    rows = [head]
    for r in results:
        rows.append((r.scenario, r.description, str(r.requested), str(r.records), str(r.origin_records),
                     "-" if r.first_refusal is None else str(r.first_refusal), r.first_action or "-",
                     "-" if r.last_record_at is None else str(r.last_record_at),
                     ",".join(f"{k}:{v}" for k, v in sorted(r.actions.items())) or "-", f"{r.wall_s:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"{r.scenario}: {r.notes}" for r in results if r.notes]
    return "\n".join(lines + (["", *notes] if notes else []))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1000, help="ids /user/1..N each scraper asks for")
    ap.add_argument("--slow-records", type=int, default=None, help="N for scraper b (default: --records)")
    ap.add_argument("--slow-rate", type=float, default=1.0, help="requests/s of scraper b")
    ap.add_argument("--browser-pages", type=int, default=15)
    ap.add_argument("--browser-pause", default="1,4", help="MIN,MAX seconds between the person's pages")
    ap.add_argument("--browser-ua", default=None, help="User-Agent for the browser (default: Chromium's own)")
    ap.add_argument("--only", default=",".join(ALL), help=f"comma-separated scenarios of {','.join(ALL)}")
    ap.add_argument("--tls", action="store_true", help="speak TLS to the shield's listen port (self-signed)")
    ap.add_argument("--parallel", action="store_true", help="run the scenarios at once (each has its own shield)")
    ap.add_argument("--policy", default=str(DEFAULT_POLICY), help="policy file (default: policies/default.yaml)")
    ap.add_argument("--save-flows", action="store_true",
                    help="shield --save flows.mitm per scenario (for `scrapeshield replay --format json`)")
    ap.add_argument("--workdir", default=None, help="keep logs here (default: a new temp dir)")
    ap.add_argument("--format", choices=("table", "json"), default="table")
    args = ap.parse_args(argv)
    names = [s.strip() for s in args.only.split(",") if s.strip()]
    lo, hi = (float(x) for x in args.browser_pause.split(","))
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="harvest-eval-"))
    results = run_all(names, args.records, n_slow=args.slow_records, workdir=workdir, parallel=args.parallel,
                      tls=args.tls, interval_b=1.0 / args.slow_rate, browser_pages=args.browser_pages,
                      browser_pause=(lo, hi), browser_ua=args.browser_ua,
                      save_flows=args.save_flows, policy=Path(args.policy))
    found = misses(results)
    if args.format == "json":
        print(json.dumps({"results": [asdict(r) for r in results], "misses": found, "workdir": str(workdir)},
                         indent=2))
    else:
        print(table(results))
        print(f"\nlogs: {workdir}")
        print("target misses: " + ("; ".join(found) if found else "none"))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Engine micro-benchmark: decisions/s and per-decision latency, with no proxy in the way.

    .venv/bin/python bench/bench_engine.py                 # default.yaml + generated 500-rule policy
    .venv/bin/python bench/bench_engine.py --decisions 200000 --repeat 5
    .venv/bin/python bench/bench_engine.py --dump-policy /tmp/p500.yaml   # write the generated policy and exit

What it measures (all in ONE process, ONE run, so ratios between lines are meaningful):

  build      RequestFacts(...) from plain strings (what replay does), per request
  flow       scrapeshield.mitm.flowfacts.facts_from_flow(HTTPFlow) (what the proxy does), per request
  decide     `await Engine.decide_in(DecisionContext(facts))` on fresh facts (header map not yet
             cached), the engine built as ShieldRuntime builds it (MemoryStore, sessions and
             clearance from a ChallengeGate), FakeClock advanced by --tick seconds before every decision
  build+decide   both, per request
  runtime    `await ShieldRuntime.decide(facts)` = engine + Prometheus counters/histogram + decision
             log (to /dev/null): the per-request core cost inside `scrapeshield run`

Throughput is timed over a whole pass with no per-call timer (in stretches of CHUNK decisions,
whose facts are built just before, untimed); latency percentiles come from a separate pass timing
every call with perf_counter_ns (the timer itself adds ~0.1 us). Each figure is the median over
--repeat passes, after one warm-up pass that also fills the store with the 1,000 clients' buckets.
The GC stays on, as in production.

Traffic: 1,000 client IPs (950 IPv4 over 320 /24s, 50 IPv6), browser-like header lists
(Chrome/Firefox/Safari, 12-15 headers incl. sec-ch-ua / sec-fetch-* / cookies) plus ~6% tool
clients (curl, python-requests, Scrapy) with 3-5 headers, and a path mix of products, listing
pages with queries, search, static assets, records (/user/*, /api/users/*), robots.txt.
Clients behave like their kind about the shield's session cookie (SessionJar): browsers, Scrapy
and python-requests with a Session send back the cookie the last response set; curl and
requests without a Session never do. A browser's first request is a page (the home page, or a
page from a search result with that Referer), later ones carry this site's Referer 70% of the
time. The decision mix is reported by client kind.
Seeded: the same requests every run.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# --src DIR (before the other imports): measure another checkout's package, e.g. `git archive HEAD`.
_SRC = next((sys.argv[i + 1] for i, a in enumerate(sys.argv[:-1]) if a == "--src"), str(REPO / "addons"))
sys.path.insert(0, _SRC)
# The default policy of the measured tree (--src a checkout: its own default, which its package compiles).
DEFAULT_POLICY = next((p for p in (Path(_SRC).parent / "policies" / "default.yaml",) if p.is_file()),
                      REPO / "policies" / "default.yaml")

from scrapeshield.clock import FakeClock
from scrapeshield.context import DecisionContext
from scrapeshield.engine import Engine
from scrapeshield.facts import RequestFacts
from scrapeshield.policy.compiler import compile_file
from scrapeshield.store.memory import MemoryStore

try:  # what ShieldRuntime passes to its Engine (absent in older checkouts, see --src)
    from scrapeshield.fingerprint.policy import fingerprint_signals

    SIGNAL_SOURCES: tuple = (fingerprint_signals,)
except ImportError:  # pragma: no cover
    SIGNAL_SOURCES = ()


def default_variants(tmp: str) -> list[tuple[str, str]]:
    """policies/default.yaml as it is; then a copy where no limit and no score threshold can be
    reached (every request takes the whole allow path: all rules, buckets, fingerprints,
    detectors and score updates, and nothing is refused), and copies of that with its newer parts
    taken away, so the cost of each shows. The last copy is the rules-only policy (the four rules
    the engine target was first set for)."""
    import copy

    import yaml

    from bench_proxy import absolute_paths, raise_limits, raise_thresholds

    src = DEFAULT_POLICY
    text = absolute_paths(src, src.read_text())  # the copies live elsewhere: goodbots dir made absolute
    text, _ = raise_thresholds(text)
    text, _ = raise_limits(text)
    base = yaml.safe_load(text)

    def unchanged(d: dict) -> None:
        pass

    def no_detectors(d: dict) -> None:
        d.pop("detectors", None)

    def no_scores(d: dict) -> None:
        no_detectors(d)
        d.pop("scores", None)

    def no_sessions(d: dict) -> None:
        no_scores(d)
        d.pop("session", None)

    def rules_only(d: dict) -> None:
        no_sessions(d)
        d.pop("goodbots", None)
        d.pop("challenge", None)
        if isinstance(d.get("keys"), dict):
            d["keys"].pop("stack", None)
        d["rules"] = [r for r in d.get("rules", []) if "good_bot" not in str(r.get("match", ""))]

    out = [("policies/default.yaml", str(src))]
    for i, (label, change) in enumerate((("default, nothing can trip", unchanged),
                                         ("  - detectors", no_detectors),
                                         ("  - detectors, scores", no_scores),
                                         ("  - ..., sessions", no_sessions),
                                         ("  - ..., good bots: rules only", rules_only))):
        d = copy.deepcopy(base)
        change(d)
        if i and d == base:
            continue  # the default has no such part (any more)
        path = os.path.join(tmp, f"default-variant{i}.yaml")
        Path(path).write_text(yaml.safe_dump(d, sort_keys=False))
        out.append((label, path))
    return out


# --------------------------------------------------------------------------------------------
# Traffic
# --------------------------------------------------------------------------------------------

CHROME_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/126.0.0.0 Safari/537.36")
FIREFOX_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0"
SAFARI_UA = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
             "Version/17.5 Safari/605.1.15")
HTML_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


def browser_headers(rng: random.Random, host: str, kind: str, asset: bool, referer: str,
                    cookie: str) -> tuple[tuple[str, str], ...]:
    """`cookie`: the site's own cookies this client keeps (the shield's session is added per request)."""
    lang = rng.choice(["en-US,en;q=0.9", "de-DE,de;q=0.9,en;q=0.8", "fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7"])
    if kind == "chrome":
        h = [
            ("Host", host), ("Connection", "keep-alive"),
            ("sec-ch-ua", '"Not/A)Brand";v="8", "Chromium";v="126", "Google Chrome";v="126"'),
            ("sec-ch-ua-mobile", "?0"), ("sec-ch-ua-platform", '"Windows"'),
            ("Upgrade-Insecure-Requests", "1"), ("User-Agent", CHROME_UA),
            ("Accept", "*/*" if asset else HTML_ACCEPT),
            ("Sec-Fetch-Site", "same-origin" if referer else "none"),
            ("Sec-Fetch-Mode", "no-cors" if asset else "navigate"),
            ("Sec-Fetch-Dest", "script" if asset else "document"),
            ("Accept-Encoding", "gzip, deflate, br, zstd"), ("Accept-Language", lang), ("Cookie", cookie),
        ]
    elif kind == "firefox":
        h = [
            ("Host", host), ("User-Agent", FIREFOX_UA), ("Accept", "*/*" if asset else HTML_ACCEPT),
            ("Accept-Language", lang), ("Accept-Encoding", "gzip, deflate, br, zstd"),
            ("Connection", "keep-alive"), ("Cookie", cookie), ("Upgrade-Insecure-Requests", "1"),
            ("Sec-Fetch-Dest", "script" if asset else "document"),
            ("Sec-Fetch-Mode", "no-cors" if asset else "navigate"),
            ("Sec-Fetch-Site", "same-origin" if referer else "none"), ("Priority", "u=0, i"),
        ]
    else:  # safari
        h = [
            ("Host", host), ("Accept", "*/*" if asset else HTML_ACCEPT),
            ("Sec-Fetch-Site", "same-origin" if referer else "none"), ("Cookie", cookie),
            ("Sec-Fetch-Dest", "script" if asset else "document"), ("Accept-Language", lang),
            ("Sec-Fetch-Mode", "no-cors" if asset else "navigate"), ("User-Agent", SAFARI_UA),
            ("Accept-Encoding", "gzip, deflate, br"), ("Connection", "keep-alive"), ("Priority", "u=0, i"),
        ]
    if referer:
        h.insert(len(h) - 2, ("Referer", referer))
    return tuple(h)


TOOLS = ("curl", "requests", "scrapy")


def tool_headers(kind: str, host: str) -> tuple[tuple[str, str], ...]:
    if kind == "curl":
        return (("Host", host), ("User-Agent", "curl/8.8.0"), ("Accept", "*/*"))
    if kind == "requests":
        return (("Host", host), ("User-Agent", "python-requests/2.32.3"), ("Accept-Encoding", "gzip, deflate"),
                ("Accept", "*/*"), ("Connection", "keep-alive"))
    return (("Host", host), ("Accept", HTML_ACCEPT), ("Accept-Language", "en"),
            ("User-Agent", "Scrapy/2.11.2 (+https://scrapy.org)"), ("Accept-Encoding", "gzip, deflate"))


PATHS = [  # (weight, generator)
    (30, lambda r: (f"/products/{r.randrange(1, 50000)}", "")),
    (10, lambda r: ("/", "")),
    (8, lambda r: (f"/category/{r.choice(['shoes', 'books', 'garden', 'toys', 'audio'])}", f"page={r.randrange(1, 40)}&sort=price")),
    (6, lambda r: ("/search", f"q={r.choice(['red+shoes', 'laptop', 'kettle', 'usb-c+cable'])}&page={r.randrange(1, 5)}")),
    (16, lambda r: (r.choice(["/static/app.js", "/static/app.css", "/static/logo.png", "/static/vendor.js",
                              f"/img/p/{r.randrange(1, 50000)}.webp"]), "")),
    (10, lambda r: (f"/user/{r.choice(['alice', 'bob', 'carol', 'dave'])}{r.randrange(1, 20000)}", "")),
    (8, lambda r: (f"/api/users/{r.randrange(1, 20000)}", "")),
    (3, lambda r: ("/cart", "")),
    (2, lambda r: ("/login", "")),
    (2, lambda r: ("/robots.txt", "")),
    (1, lambda r: ("/favicon.ico", "")),
    (2, lambda r: (f"/api/products/{r.randrange(1, 50000)}/reviews", f"page={r.randrange(1, 10)}")),
    (2, lambda r: ("/sitemap.xml", "")),
]


NOT_LANDING = ("/cart", "/login", "/robots.txt", "/favicon.ico", "/sitemap.xml")


def client_ips(rng: random.Random, n: int = 1000) -> list[str]:
    nets = [f"{rng.randrange(1, 223)}.{rng.randrange(256)}.{rng.randrange(256)}" for _ in range(320)]
    ips = {f"{rng.choice(nets)}.{rng.randrange(1, 255)}" for _ in range(n * 2)}
    v4 = sorted(ips)[: n - n // 20]
    v6 = [f"2001:db8:{rng.randrange(0x10000):x}:{rng.randrange(0x10000):x}::{rng.randrange(1, 0x10000):x}"
          for _ in range(n // 20)]
    out = v4 + v6
    rng.shuffle(out)
    return out


BROWSERS = ("chrome", "firefox", "safari")
# Who keeps the cookies a response sets: every browser; Scrapy (its cookie middleware is on by
# default) and python-requests used through a `Session`; not curl, nor requests without a Session.
KEEPS_COOKIES = frozenset({*BROWSERS, "scrapy", "requests-session"})


class Traffic:
    """A seeded, endless stream of request specs: (ip, method, path, query, headers).

    Each client address keeps one identity for the run, like a real person: a browser (its site
    cookies stable) or a tool. The shield's own session cookie is not in the spec's headers: a
    `SessionJar` adds it when it builds the request, as the client's cookie jar would."""

    def __init__(self, seed: int = 1, unique_ua: bool = False) -> None:
        self.unique_ua = unique_ua  # every request a never-seen User-Agent (defeats per-UA memos)
        self.rng = random.Random(seed)
        self.ips = client_ips(self.rng)
        self.identity: dict[str, str] = {}
        self.site_cookie: dict[str, str] = {}
        for ip in self.ips:
            roll = self.rng.random()
            if roll < 0.06:
                tool = self.rng.choice(TOOLS)
                if tool == "requests" and self.rng.random() < 0.5:
                    tool = "requests-session"
                self.identity[ip] = tool
            else:
                self.identity[ip] = "chrome" if roll < 0.7 else ("firefox" if roll < 0.88 else "safari")
            self.site_cookie[ip] = (f"session={self.rng.getrandbits(64):016x}; "
                                    f"_ga=GA1.2.{self.rng.getrandbits(30)}.{self.rng.getrandbits(30)}; theme=dark")
        self.weights = [w for w, _ in PATHS]
        self.gens = [g for _, g in PATHS]
        self.host = "shop.example.com"
        self.visited: set[str] = set()  # browsers that have loaded a first page

    def kind(self, ip: str) -> str:
        """browser or the tool's name: what the decision mix is reported by."""
        kind = self.identity[ip]
        return "browser" if kind in BROWSERS else kind

    def specs(self, n: int) -> list[tuple]:
        r = self.rng
        out = []
        for gen in r.choices(self.gens, self.weights, k=n):
            ip = r.choice(self.ips)
            path, query = gen(r)
            kind = self.identity[ip]
            if kind not in BROWSERS:
                headers = tool_headers(kind.partition("-")[0], self.host)
            else:
                if ip not in self.visited:
                    # A person's first request is a page: the home page, typed or bookmarked, or any
                    # page (a product, a profile) from a search result; never an asset of a page it
                    # has not loaded, never with a Referer of this site.
                    self.visited.add(ip)
                    if r.random() < 0.6 or path.startswith(("/static/", "/img/")) or path in NOT_LANDING:
                        path, query, referer = "/", "", ""
                    else:
                        referer = "https://www.google.com/"
                else:
                    referer = f"https://{self.host}/" if r.random() < 0.7 else ""
                asset = path.startswith(("/static/", "/img/"))
                headers = browser_headers(r, self.host, kind, asset, referer, self.site_cookie[ip])
            if self.unique_ua:
                tag = f" r/{r.getrandbits(48):x}"
                headers = tuple((k, v + tag if k == "User-Agent" else v) for k, v in headers)
            method = "POST" if path == "/login" and r.random() < 0.5 else "GET"
            out.append((ip, method, path, query, headers))
        return out


def build_facts(spec: tuple, ts: float = 0.0) -> RequestFacts:
    ip, method, path, query, headers = spec
    return RequestFacts(peer_ip=ip, client_ip=ip, method=method, scheme="https", host="shop.example.com",
                        path=path, query=query, headers=headers, http_version="HTTP/1.1", alpn="http/1.1",
                        connection_id="c", timestamp=ts)


class SessionJar:
    """The shield's session cookie as each client keeps it: a client that keeps cookies sends back
    the last one a response set (`took`); the others never send one.

    Facts are built before a timed pass; a client whose cookie changes during the pass is marked
    `changed`, and its later requests in that pass are rebuilt with the new cookie (rare once every
    client has been seen: a session's cookie is set when minted and once more when it first comes
    back). So every request carries exactly the cookie its client would send at that moment."""

    def __init__(self, traffic: Traffic, keys, cookie_name: str, encode=None) -> None:  # type: ignore[no-untyped-def]
        self.traffic, self.keys, self.cookie_name = traffic, keys, cookie_name
        # The cookie's value as the response carries it: the session stage's encoder where it has
        # one (what ShieldRuntime's Set-Cookie uses), else the cookie's own encode.
        self.encode = encode if encode is not None else (lambda cookie: cookie.encode(keys))
        self.values: dict[str, str] = {}
        self.changed: set[str] = set()
        self.set_cookies = 0  # Set-Cookie headers the clients were given

    def facts(self, spec: tuple) -> RequestFacts:
        value = self.values.get(spec[0])
        if value is None:
            return build_facts(spec)
        ip, method, path, query, headers = spec
        ours = f"{self.cookie_name}={value}"
        if any(k == "Cookie" for k, _ in headers):
            headers = tuple((k, f"{v}; {ours}" if k == "Cookie" else v) for k, v in headers)
        else:
            headers = (*headers, ("Cookie", ours))
        return build_facts((ip, method, path, query, headers))

    def pass_facts(self, specs: list[tuple]) -> list[RequestFacts]:
        self.changed.clear()
        return [self.facts(s) for s in specs]

    def took(self, ip: str, ctx: DecisionContext) -> None:
        """The response to `ctx`'s request reached the client (with its Set-Cookie, if any)."""
        session = ctx.session
        if session is None or session.set_cookie is None:
            return
        self.set_cookies += 1
        if self.traffic.identity[ip] in KEEPS_COOKIES:
            self.values[ip] = self.encode(session.set_cookie)
            self.changed.add(ip)


# --------------------------------------------------------------------------------------------
# The generated 500-rule policy
# --------------------------------------------------------------------------------------------

def generate_policy(n_rules: int = 500, seed: int = 7) -> str:
    """A large, realistic-looking policy. Almost no direct rule matches ordinary traffic, so a
    typical request is tested against all `n_rules` rules (the worst case for a linear pass);
    limit rules are scoped to path families, so a request feeds ~4-8 buckets, not hundreds."""
    r = random.Random(seed)
    lines = [
        "version: 1",
        "name: generated-500",
        "default_action: allow",
        "ip_prefix: {ipv4: 24, ipv6: 64}",
        "keys:",
        "  subnet: [prefix]",
        "  ua: [header:user-agent]",
        "  ip_ua: [ip, header:user-agent]",
        "ip_lists:",
    ]
    # Three named lists of 500 CIDRs each in 10.0.0.0/8 and 100.64.0.0/10 (never a client here).
    for li in range(3):
        lines.append(f"  list{li}:")
        for _ in range(500):
            lines.append(f"    - 10.{r.randrange(256)}.{r.randrange(256)}.0/{r.choice([24, 28, 30])}")
        lines.append(f"    - 100.{64 + li}.0.0/16")
    lines.append("rules:")
    lines += [
        "  - name: always-allow",
        "    match: {path: [/robots.txt, /favicon.ico, /.well-known/*]}",
        "    action: allow",
    ]
    families = ["/products/*", "/category/*", "/search", "/static/*", "/img/*", "/user/*", "/api/users/*",
                "/api/products/*", "/cart", "/login", "/"]
    kinds = (["glob"] * 26 + ["regex"] * 16 + ["header"] * 14 + ["ua"] * 8 + ["cidr"] * 10 + ["limit"] * 16
             + ["combo"] * 6 + ["log"] * 1 + ["query"] * 3)
    n_limit = 0
    for i in range(n_rules - 1):
        kind = r.choice(kinds)
        name = f"r{i:03d}-{kind}"
        act = r.choice(["block", "challenge", "block", "throttle", "drop"])
        if kind == "glob":
            globs = ", ".join(r.choice([f"/wp-admin{i}/*", f"/.env{i}", f"/admin{i}/*", f"/backup{i}/*.zip",
                                        f"/old-shop{i}/*", f"/*.php{i}", f"/cgi-bin{i}/*"]) for _ in range(r.randrange(1, 5)))
            lines += [f"  - name: {name}", f"    match: {{path: [{globs}]}}", f"    action: {act}"]
        elif kind == "regex":
            lines += [f"  - name: {name}",
                      f"    match: {{path_regex: '^/(export|dump|feed){i}/[a-z0-9_-]+\\.(csv|json|xml)$'}}",
                      f"    action: {act}"]
        elif kind == "header":
            hdr = r.choice([f"x-scanner-{i}: true", f"x-debug-{i}: true",
                            f"accept: '^application/x-harvest-{i}'", f"x-forwarded-host: 'evil{i}\\.'"])
            extra = r.choice(["", ", method: [POST, PUT]", ", path: [/api/*]"])
            lines += [f"  - name: {name}", f"    match: {{header: {{{hdr}}}{extra}}}", f"    action: {act}"]
        elif kind == "ua":
            lines += [f"  - name: {name}",
                      f"    match: {{user_agent: '(?i)(badbot{i}|harvester{i}|grabber-{i}/)'}}",
                      f"    action: {act}"]
        elif kind == "cidr":
            if r.random() < 0.5:
                cidrs = ", ".join(f"172.{16 + r.randrange(16)}.{r.randrange(256)}.0/24" for _ in range(r.randrange(5, 30)))
                cidrs += f", 2001:db8:ffff:{i:x}::/64"
            else:
                cidrs = f"'@list{r.randrange(3)}'"
            lines += [f"  - name: {name}", f"    match: {{client_ip: [{cidrs}]}}", f"    action: {act}"]
        elif kind == "limit":
            n_limit += 1
            fam = r.choice(families)
            key = r.choice(["ip", "subnet", "ua", "ip_ua", "ip+header:accept-language", "prefix"])
            # Generous: these must count, not refuse (a refusal ends the pass early, which flatters).
            rate = r.choice(["200/s burst 400", "50000/h", "100/s burst 200", "20000/10m"])
            limits = f'["{rate}"]' if r.random() < 0.6 else f'["{rate}", "500000/d"]'
            match = f"{{path: ['{fam}']}}" if r.random() < 0.8 else f"{{path: ['{fam}'], method: [GET, HEAD]}}"
            lines += [f"  - name: {name}", f"    match: {match}", f"    key: {key}", f"    limits: {limits}",
                      f"    exceed: {r.choice(['throttle', 'delay', 'challenge'])}"]
            if r.random() < 0.3:
                lines.append("    ban: 10m")
        elif kind == "combo":
            lines += [f"  - name: {name}", "    match:", "      any:",
                      f"        - {{path: [/private{i}/*]}}",
                      "        - {all: [{method: [DELETE]}, {not: {header: {authorization: true}}}]}",
                      f"        - {{header: {{x-bot-{i}: true}}, client_ip: ['198.51.{i % 256}.0/24']}}",
                      f"    action: {act}"]
        elif kind == "log":
            lines += [f"  - name: {name}", f"    match: {{path: [/internal{i}/*]}}", "    action: log"]
        else:  # query
            lines += [f"  - name: {name}", f"    match: {{path: [/search], query: {{q{i}: true}}}}", f"    action: {act}"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------
# Every pass decides a list of prebuilt facts as a client would send them (see SessionJar) through
# `decide_in(DecisionContext)`: Engine.decide_in, or ShieldRuntime.decide_in for the runtime figure.

# Facts are built CHUNK at a time, outside the timed stretches: about what a busy proxy holds in
# flight. A whole pass built ahead (20,000 RequestFacts alive at once) is garbage the collector
# must walk that no proxy ever holds: it survived into the oldest generation and so triggered full
# collections of its own (CPython 3.12 starts one when survivors grow the oldest generation by a
# quarter), ~2 more per three passes, each walking every tracked object of the engine.
CHUNK = 256


async def _decide_pass(decide_in, clock: FakeClock, specs: list[tuple],  # type: ignore[no-untyped-def]
                       jar: SessionJar, tick: float) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) deciding every spec, facts built beforehand
    (CHUNK at a time, not timed)."""
    advance, changed, rebuild, took = clock.advance, jar.changed, jar.facts, jar.took
    wall = cpu = 0.0
    for start in range(0, len(specs), CHUNK):
        part = specs[start:start + CHUNK]
        facts = jar.pass_facts(part)
        c0, t0 = time.process_time(), time.perf_counter()
        for spec, f in zip(part, facts, strict=True):
            advance(tick)
            if changed and spec[0] in changed:  # the client got a new cookie after these facts were built
                f = rebuild(spec)
            ctx = DecisionContext(f)
            await decide_in(ctx)
            if ctx.session is not None and ctx.session.set_cookie is not None:
                took(spec[0], ctx)
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
    return wall, cpu


async def _decide_latencies(decide_in, clock: FakeClock, specs: list[tuple],  # type: ignore[no-untyped-def]
                            jar: SessionJar, tick: float) -> list[int]:
    advance, changed, rebuild, took = clock.advance, jar.changed, jar.facts, jar.took
    ns = time.perf_counter_ns
    out = []
    append = out.append
    for start in range(0, len(specs), CHUNK):
        part = specs[start:start + CHUNK]
        for spec, f in zip(part, jar.pass_facts(part), strict=True):
            advance(tick)
            if changed and spec[0] in changed:
                f = rebuild(spec)
            ctx = DecisionContext(f)
            t0 = ns()
            await decide_in(ctx)
            append(ns() - t0)
            if ctx.session is not None and ctx.session.set_cookie is not None:
                took(spec[0], ctx)
    return out


async def _build_decide_pass(decide_in, clock: FakeClock, specs: list[tuple], jar: SessionJar,  # type: ignore[no-untyped-def]
                             tick: float, mix: Counter | None = None) -> tuple[float, float]:
    """Facts built per request (as the client sends it right then); `mix` counts (client kind, outcome)."""
    advance, build, took, kind = clock.advance, jar.facts, jar.took, jar.traffic.kind
    c0, t0 = time.process_time(), time.perf_counter()
    for s in specs:
        advance(tick)
        ctx = DecisionContext(build(s))
        d = await decide_in(ctx)
        if ctx.session is not None and ctx.session.set_cookie is not None:
            took(s[0], ctx)
        if mix is not None:
            mix[kind(s[0]), d.action.value if d.rule != "default" else "allow(default)"] += 1
    return time.perf_counter() - t0, time.process_time() - c0


def _pct(sorted_ns: list[int], p: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(p * len(sorted_ns)))] / 1000.0


def _make_flows(specs: list[tuple]):  # type: ignore[no-untyped-def]
    from mitmproxy import http
    from mitmproxy.test import tflow

    flows = []
    base = tflow.tflow()
    for ip, method, path, query, headers in specs:
        f = base.copy()
        f.client_conn.peername = (ip, 50000)
        raw_path = path + ("?" + query if query else "")
        f.request = http.Request(
            "shop.example.com", 443, method.encode(), b"https", b"", raw_path.encode(), b"HTTP/1.1",
            http.Headers([(k.encode(), v.encode()) for k, v in headers]), b"", None, time.time(), None)
        flows.append(f)
    return flows


def _session_encoder(gate):  # type: ignore[no-untyped-def]
    """How the runtime encodes a session cookie for Set-Cookie (None: a checkout without an encoder)."""
    decoder = getattr(gate.sessions, "decoder", None)
    return getattr(decoder, "encode", None)


def _cookie_name(policy) -> str:  # type: ignore[no-untyped-def]
    from scrapeshield.session.cookie import COOKIE_NAME
    from scrapeshield.session.policy import SESSION

    settings = policy.section(SESSION)
    return settings.cookie_name if settings is not None else COOKIE_NAME


def build_engine(policy, traffic: Traffic, clock: FakeClock) -> tuple[Engine, SessionJar]:  # type: ignore[no-untyped-def]
    """The engine as ShieldRuntime builds it -- sessions and clearance from the challenge gate (one
    key ring) -- over a fresh memory store, and the clients' cookie jar for it."""
    from scrapeshield.challenge.keys import KeyRing
    from scrapeshield.runtime.gate import ChallengeGate

    # Newer policies carry their signal sources (the registry's); older checkouts (--src) need them passed.
    sources = () if getattr(policy, "signal_sources", ()) else SIGNAL_SOURCES
    store = MemoryStore(max_keys=policy.max_keys)
    gate = ChallengeGate(KeyRing.generate(), policy, store, clock)
    engine = Engine(policy, store, clock, signal_sources=sources, clearance=gate.cleared, sessions=gate.sessions)
    return engine, SessionJar(traffic, gate.service.keys, _cookie_name(policy), _session_encoder(gate))


def bench_policy(label: str, policy, traffic: Traffic, n: int, repeat: int, tick: float,  # type: ignore[no-untyped-def]
                 with_runtime: bool, runtime_policy_path: str | None) -> dict:
    clock = FakeClock()
    engine, jar = build_engine(policy, traffic, clock)
    decide_in = engine.decide_in
    # Warm-up: every client's session, buckets and detector state; regex caches and the interpreter.
    asyncio.run(_build_decide_pass(decide_in, clock, traffic.specs(n), jar, tick))

    thr, thr_cpu, lat_meds, lat_p99s, bd, bd_cpu = [], [], [], [], [], []
    lat_all: list[int] = []
    mix: Counter = Counter()
    for _ in range(repeat):
        specs = traffic.specs(n)
        gc.collect()
        el, cpu = asyncio.run(_decide_pass(decide_in, clock, specs, jar, tick))
        thr.append(n / el)
        thr_cpu.append(n / cpu)
        specs = traffic.specs(n)
        gc.collect()
        lat = asyncio.run(_decide_latencies(decide_in, clock, specs, jar, tick))
        lat.sort()
        lat_meds.append(_pct(lat, 0.5))
        lat_p99s.append(_pct(lat, 0.99))
        lat_all = lat
        gc.collect()
        el, cpu = asyncio.run(_build_decide_pass(decide_in, clock, traffic.specs(n), jar, tick))
        bd.append(n / el)
        bd_cpu.append(n / cpu)
    # Decision mix over one more pass (not timed), by client kind.
    asyncio.run(_build_decide_pass(decide_in, clock, traffic.specs(n), jar, tick, mix))

    res = {
        "label": label, "rules": len(policy.rules), "decide_per_s": statistics.median(thr),
        "decide_cpu_per_s": statistics.median(thr_cpu), "decide_cpu_best": max(thr_cpu),
        "decide_per_s_all": thr, "median_us": statistics.median(lat_meds), "p99_us": statistics.median(lat_p99s),
        "p90_us": _pct(lat_all, 0.90), "mean_us": 1e6 / statistics.median(thr),
        "build_decide_per_s": statistics.median(bd), "build_decide_cpu_per_s": statistics.median(bd_cpu),
        "mix": mix, "engine_errors": engine.errors,
        "tracked_keys": engine.store.tracked_keys(), "set_cookies": jar.set_cookies,
    }

    if with_runtime and runtime_policy_path:
        from scrapeshield.runtime import RuntimeConfig, ShieldRuntime

        rclock = FakeClock()
        rt = ShieldRuntime(RuntimeConfig(policy_path=runtime_policy_path, admin="", decision_log=os.devnull,
                                         reload_interval=0), clock=rclock)
        rjar = SessionJar(traffic, rt.gate.service.keys, _cookie_name(policy), _session_encoder(rt.gate))
        asyncio.run(_build_decide_pass(rt.decide_in, rclock, traffic.specs(n), rjar, tick))
        rthr, rthr_cpu = [], []
        for _ in range(repeat):
            specs = traffic.specs(n)
            gc.collect()
            el, cpu = asyncio.run(_decide_pass(rt.decide_in, rclock, specs, rjar, tick))
            rthr.append(n / el)
            rthr_cpu.append(n / cpu)
        res["runtime_per_s"] = statistics.median(rthr)
        res["runtime_cpu_per_s"] = statistics.median(rthr_cpu)
    return res


def _timed(fn) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def bench_build(traffic: Traffic, n: int, repeat: int) -> dict:
    from scrapeshield.mitm.flowfacts import facts_from_flow
    from scrapeshield.netaddr import EMPTY_CIDRS

    specs = traffic.specs(n)
    flows = _make_flows(specs)
    out: dict[str, list[tuple[float, float]]] = {"build": [], "flow": [], "hmap": []}

    def build() -> None:
        for s in specs:
            build_facts(s)

    def flow() -> None:
        for fl in flows:
            facts_from_flow(fl, EMPTY_CIDRS, None)

    for i in range(repeat + 1):  # the first round is a warm-up
        b, f = _timed(build), _timed(flow)
        facts = [build_facts(s) for s in specs]
        h = _timed(lambda facts=facts: [x.header_map for x in facts])  # lazy: only policies that read headers pay
        if i:
            out["build"].append(b)
            out["flow"].append(f)
            out["hmap"].append(h)
    res = {"avg_headers": statistics.mean(len(s[4]) for s in specs)}
    for k, v in out.items():
        res[k] = (n / statistics.median(w for w, _ in v), n / statistics.median(c for _, c in v))
    return res


HOOK_BODY = ("<!doctype html><html><head><title>p</title><link rel=stylesheet href=/static/app.css>"
             "<script src=/static/app.js></script></head><body>" + "x" * 480 + "</body></html>").encode()


def bench_hook(policy_path: str, traffic: Traffic, n: int, repeat: int, tick: float) -> tuple[float, float, dict]:
    """What the shield adds to one proxied request, without the network: ShieldAddon.requestheaders
    (facts_from_flow, ShieldRuntime.decide = engine + metrics + decision log to /dev/null, applying
    the decision) and ShieldAddon.response (the detectors' response observation) on pre-built
    HTTPFlows with a 600-byte text/html response. Returns (wall /s, cpu /s, refused decisions)."""
    from mitmproxy import http

    from scrapeshield.mitm.addon import ShieldAddon
    from scrapeshield.runtime import RuntimeConfig, ShieldRuntime

    clock = FakeClock()
    rt = ShieldRuntime(RuntimeConfig(policy_path=policy_path, admin="", decision_log=os.devnull, reload_interval=0),
                       clock=clock)
    addon = ShieldAddon(rt)
    has_response_hook = hasattr(addon, "response")

    async def run(flows, responses) -> tuple[float, float]:  # type: ignore[no-untyped-def]
        hook = addon.requestheaders
        resp_hook = addon.response if has_response_hook else None
        c0, t0 = time.process_time(), time.perf_counter()
        for fl, resp in zip(flows, responses, strict=False):
            clock.advance(tick)
            await hook(fl)
            if resp_hook is not None and fl.response is None:
                fl.response = resp
                resp_hook(fl)
        return time.perf_counter() - t0, time.process_time() - c0

    def flows_for(k: int):  # type: ignore[no-untyped-def]
        flows = _make_flows(traffic.specs(k))
        for fl in flows:
            fl.live, fl.response, fl.error = True, None, None
        responses = [http.Response.make(200, HOOK_BODY, {"content-type": "text/html"}) for _ in flows]
        return flows, responses

    asyncio.run(run(*flows_for(min(n, 20_000))))
    walls, cpus = [], []
    for _ in range(repeat):
        flows, responses = flows_for(n)
        gc.collect()
        w, c = asyncio.run(run(flows, responses))
        walls.append(n / w)
        cpus.append(n / c)
    refused = {k: v for k, v in rt.status()["counters"]["decisions"].items() if not k.endswith("/allow")}
    return statistics.median(walls), statistics.median(cpus), refused


def calibration_us() -> float:
    """Best of 5 `sum(range(1000))` in us: this machine's pure-Python speed right now (a 2020s
    desktop core with CPython 3.12 does it in ~8 us; larger = slower machine or busier neighbours)."""
    import timeit

    return min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000 * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decisions", type=int, default=20_000, help="decisions per timed pass")
    ap.add_argument("--repeat", type=int, default=11, help="timed passes; medians (and the best pass) are reported")
    ap.add_argument("--tick", type=float, default=0.005,
                    help="FakeClock seconds per decision (0.005 = 200 req/s over 1,000 clients)")
    ap.add_argument("--rules", type=int, default=500, help="size of the generated policy")
    ap.add_argument("--policy", action="append", help="extra policy files to measure")
    ap.add_argument("--no-runtime", action="store_true", help="skip the ShieldRuntime figure")
    ap.add_argument("--no-unique-ua", action="store_true", help="skip the every-UA-unique row")
    ap.add_argument("--no-hook", action="store_true", help="skip the ShieldAddon.requestheaders figure")
    ap.add_argument("--src", help="import scrapeshield from this addons/ directory instead of the repo's")
    ap.add_argument("--dump-policy", help="write the generated policy here and exit")
    args = ap.parse_args()

    gen_text = generate_policy(args.rules)
    if args.dump_policy:
        Path(args.dump_policy).write_text(gen_text)
        print(f"wrote {args.dump_policy}")
        return 0

    import scrapeshield

    load = os.getloadavg()
    print(f"# bench_engine: python {platform.python_version()} on {platform.machine()}, nproc={os.cpu_count()}, "
          f"load avg {load[0]:.1f}, {args.decisions} decisions/pass x {args.repeat} passes (medians), "
          f"tick {args.tick}s, scrapeshield from {Path(scrapeshield.__file__).parent}")
    accel = getattr(scrapeshield, "accel", None)  # older checkouts (--src) have no compiled core
    print(f"# {accel.STATUS.describe() if accel is not None else 'compiled core: none in this checkout'}"
          " (SCRAPESHIELD_ACCEL=0: the Python code)")
    print(f"# calibration: sum(range(1000)) = {calibration_us():.1f} us (best of 5; ~8 us on a current desktop core)")
    print("# wall = perf_counter over the pass; cpu = process_time (what the pass would take on an idle core)")
    traffic = Traffic(seed=1)
    b = bench_build(traffic, args.decisions, args.repeat)
    print()
    print(f"{'building RequestFacts':<44} {'per s (wall)':>12} {'us (wall)':>9} {'per s (cpu)':>12} {'us (cpu)':>9}")
    for key, label in (("build", f"RequestFacts(...), avg {b['avg_headers']:.1f} headers"),
                       ("flow", "facts_from_flow(HTTPFlow)  [proxy path]"),
                       ("hmap", "+ facts.header_map on first use")):
        w, c = b[key]
        print(f"{label:<44} {w:>12,.0f} {1e6 / w:>9.2f} {c:>12,.0f} {1e6 / c:>9.2f}")

    with tempfile.TemporaryDirectory() as tmp:
        gen_path = os.path.join(tmp, f"generated-{args.rules}.yaml")
        Path(gen_path).write_text(gen_text)
        t0 = time.perf_counter()
        gen_policy = compile_file(gen_path)
        compile_s = time.perf_counter() - t0
        def compiled(label: str, path: str):  # type: ignore[no-untyped-def]
            try:
                return compile_file(path)
            except Exception as exc:  # e.g. --src an older checkout that lacks a section the default uses
                print(f"({label}: skipped, does not compile with this package: {str(exc).splitlines()[-1][:120]})")
                return None

        targets = [(label, pol, path, traffic) for label, path in default_variants(tmp)
                   if (pol := compiled(label, path)) is not None]
        targets.append((f"generated {args.rules} rules", gen_policy, gen_path, traffic))
        if not args.no_unique_ua:
            targets.append((f"generated {args.rules}, unique UAs", gen_policy, gen_path,
                            Traffic(seed=2, unique_ua=True)))
        for extra in args.policy or []:
            targets.append((extra, compile_file(extra), extra, traffic))
        rows = []
        for label, pol, path, tr in targets:
            n = args.decisions // 4 if "unique" in label else args.decisions  # ~4x slower per decision
            rows.append(bench_policy(label, pol, tr, n, args.repeat, args.tick,
                                     not args.no_runtime and not label.startswith(("  -", "generated 500, u")), path))
    if not args.no_hook:
        with tempfile.TemporaryDirectory() as tmp:
            empty = os.path.join(tmp, "empty.yaml")
            Path(empty).write_text("version: 1\n")
            variants = dict(default_variants(tmp))
            hook_rows = [(label, bench_hook(path, traffic, args.decisions // 2, args.repeat, args.tick))
                         for label, path in (("empty policy (version: 1)", empty),
                                             ("default, nothing can trip", variants["default, nothing can trip"]))
                         if compiled(label, path) is not None]
        print()
        print(f"{'ShieldAddon requestheaders+response':<44} {'per s (wall)':>12} {'us (wall)':>9} "
              f"{'per s (cpu)':>12} {'us (cpu)':>9}  refused")
        for label, (w, c, refused) in hook_rows:
            print(f"{label:<44} {w:>12,.0f} {1e6 / w:>9.2f} {c:>12,.0f} {1e6 / c:>9.2f}  {refused or '-'}")
    print(f"\n(generated policy: {len(gen_policy.rules)} rules, "
          f"{sum(1 for r in gen_policy.rules if r.buckets)} limit rules, compiled in {compile_s * 1000:.0f} ms)")
    print()
    hdr = (f"{'engine.decide':<32} {'rules':>5} {'/s wall':>8} {'/s cpu':>8} {'us/dec cpu':>10} {'best /s':>8} "
           f"{'median us':>9} {'p90 us':>7} {'p99 us':>7} {'build+dec/s cpu':>15} {'runtime/s cpu':>13}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        rt = f"{r['runtime_cpu_per_s']:>13,.0f}" if "runtime_cpu_per_s" in r else f"{'-':>13}"
        print(f"{r['label']:<32} {r['rules']:>5} {r['decide_per_s']:>8,.0f} {r['decide_cpu_per_s']:>8,.0f} "
              f"{1e6 / r['decide_cpu_per_s']:>10.2f} {r['decide_cpu_best']:>8,.0f} {r['median_us']:>9.2f} "
              f"{r['p90_us']:>7.2f} {r['p99_us']:>7.2f} {r['build_decide_cpu_per_s']:>15,.0f} {rt}")
    print("/s wall, /s cpu, us/dec: median pass; best /s: the fastest pass (cpu), the least disturbed by neighbours")
    print()
    print("median/p90/p99: per-call perf_counter_ns (wall, so preemption on a busy machine shows in p90/p99)")
    print(f"# calibration at the end: sum(range(1000)) = {calibration_us():.1f} us, load avg {os.getloadavg()[0]:.1f}")
    for r in rows:
        passes = ", ".join(f"{x:,.0f}" for x in r["decide_per_s_all"])
        extra = f"; runtime/s wall {r['runtime_per_s']:,.0f}" if "runtime_per_s" in r else ""
        print(f"{r['label']}: decide/s wall per pass [{passes}]{extra}; engine errors {r['engine_errors']}; "
              f"tracked keys {r['tracked_keys']}")
        print(f"  decision mix of one more pass, by client kind (Set-Cookie given: {r['set_cookies']} in all passes):")
        for kind in sorted({k for k, _ in r["mix"]}):
            outcomes = {a: c for (k, a), c in sorted(r["mix"].items()) if k == kind}
            refused = sum(c for a, c in outcomes.items() if not a.startswith("allow"))
            print(f"    {kind:<17} {sum(outcomes.values()):>6} requests, {refused:>6} refused: "
                  + ", ".join(f"{a} {c}" for a, c in outcomes.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

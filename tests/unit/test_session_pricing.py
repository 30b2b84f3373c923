"""Every challenge to a session is priced at the going adaptive difficulty, in the engine.

A session with standing reads no counters on its requests (a person at home costs the store
nothing); when its own score challenges it, the engine reads the price in a small second batch,
so a fleet that fakes a person's history still pays what identities on its stack cost.
"""
from __future__ import annotations

import random
import textwrap
from pathlib import Path

from scrapeshield.challenge.keys import KeyRing
from scrapeshield.clock import FakeClock
from scrapeshield.context import DecisionContext
from scrapeshield.decision import Action
from scrapeshield.engine import Engine
from scrapeshield.facts import RequestFacts
from scrapeshield.policy.compiler import compile_bytes, compile_file
from scrapeshield.session.cookie import HISTORY, SessionCookie, net_tag, stack_tag
from scrapeshield.session.stage import SessionStage, stack_of
from scrapeshield.session.state import SessionSettings, SessionTracker
from scrapeshield.store.base import Batch
from scrapeshield.store.memory import MemoryStore

KEYS = KeyRing((b"k" * 32,))
POLICY = textwrap.dedent("""
    version: 1
    session:
      fresh_for: 10s
      difficulty: {base: 16, maximum: 28, stack_unit: 1, stack_cap: 6, net_cap: 0, repeat_bits: 2}
    rules:
      - name: everyone-on-this-page
        match: {path: [/people/*]}
        action: challenge
        difficulty: 16
""")


def _facts(cookie: str, path: str) -> RequestFacts:
    return RequestFacts(peer_ip="203.0.113.7", method="GET", host="shop.example", path=path,
                        headers=(("cookie", f"shield_session={cookie}"), ("accept", "text/html"),
                                 ("referer", "https://shop.example/")))


async def test_a_challenge_to_a_session_with_standing_costs_the_going_price() -> None:
    policy = compile_bytes(POLICY.encode(), "pricing.yaml")
    clock = FakeClock(1_800_000_000.0)
    store = MemoryStore()
    engine = Engine(policy, store, clock, sessions=SessionStage(KEYS))
    stack = stack_of(DecisionContext(_facts("x", "/")))
    cookie = SessionCookie("A" * 16, int(clock.now()) - 60, net_tag("203.0.113.0/24"), stack_tag(stack), HISTORY)
    tracker = SessionTracker(SessionSettings(half_life=600.0))
    # three solves on this stack, one of them in this very session
    store.apply_now(Batch(scores=tracker.solved_updates("198.51.100.0/24", stack)
                          + tracker.solved_updates("198.51.101.0/24", stack)
                          + tracker.solved_updates("203.0.113.0/24", stack, cookie.id)), clock.now())
    ctx = DecisionContext(_facts(cookie.encode(KEYS), "/people/5"))
    decision = await engine.decide_in(ctx)
    assert ctx.session is not None and ctx.session.standing
    assert decision.action is Action.CHALLENGE
    assert decision.difficulty == 16 + 3 + 2  # three solves on the stack, one earlier solve of this session


# -- the shipped default policy: a session's record volume past a person's ------------------------

DEFAULT = Path(__file__).resolve().parents[2] / "policies" / "default.yaml"
CHROME = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/131.0.0.0 Safari/537.36")


def _page(cookie: str, path: str, referer: str, ip: str) -> RequestFacts:
    return RequestFacts(peer_ip=ip, method="GET", host="shop.example", path=path.split("?")[0],
                        query=path.partition("?")[2],
                        headers=(("user-agent", CHROME), ("accept", "text/html,application/xhtml+xml"),
                                 ("accept-language", "en-US,en;q=0.9"), ("sec-fetch-mode", "navigate"),
                                 ("sec-fetch-dest", "document"), ("sec-fetch-site", "same-origin"),
                                 ("referer", "https://shop.example" + referer),
                                 ("cookie", f"shield_session={cookie}")))


async def _reader(gap_s: float, records: int, ip: str) -> list[tuple[int, str, str]]:
    """A session with a person's history (issued a minute ago) reading `records` records by random
    id through the shipped default policy, one every `gap_s` seconds, each named from the previous
    page. Returns (index, action, rule) of every refused record."""
    policy = compile_file(str(DEFAULT))
    clock = FakeClock(1_800_000_000.0)
    engine = Engine(policy, MemoryStore(), clock, sessions=SessionStage(KEYS))
    net = ip.rsplit(".", 1)[0] + ".0/24"
    stack = stack_of(DecisionContext(_page("x", "/", "/", ip)))
    cookie = SessionCookie("B" * 16, int(clock.now()) - 60, net_tag(net), stack_tag(stack), HISTORY).encode(KEYS)
    rng = random.Random(5)
    refused, previous = [], "/"
    for i in range(records):
        clock.advance(gap_s * (0.5 + rng.random()))
        path = rng.choice((f"/people/{rng.randrange(1, 100_000)}", f"/profile?id={rng.randrange(1, 100_000)}"))
        decision = await engine.decide_in(DecisionContext(_page(cookie, path, previous, ip)))
        if decision.action is not Action.ALLOW:
            refused.append((i, str(decision.action), decision.rule))
        previous = path
    return refused


async def test_default_policy_a_session_reading_a_record_a_second_pays_within_its_first_40() -> None:
    # a harvester that shows a person's history, then reads a record a second: 30 at once and 12 a
    # minute more (seven in its first 37 s), then challenged
    refused = await _reader(1.0, 50, "198.51.100.20")
    assert refused[0][1:] == ("challenge", "records-per-session")
    assert 34 <= refused[0][0] <= 40, refused


async def test_default_policy_a_person_reading_ten_records_a_minute_is_never_asked() -> None:
    # two hours of a record every 3-9 s: ten a minute, past any reader
    assert await _reader(6.0, 1200, "198.51.100.21") == []


# -- the shipped default policy: sessions dropped before their limit, and a network's people ------

def _arrival(ip: str) -> RequestFacts:
    """A new visitor's first page: the home page, no session cookie, from a search result."""
    return RequestFacts(peer_ip=ip, method="GET", host="shop.example", path="/",
                        headers=(("user-agent", CHROME), ("accept", "text/html,application/xhtml+xml"),
                                 ("accept-language", "en-US,en;q=0.9"), ("sec-fetch-mode", "navigate"),
                                 ("sec-fetch-dest", "document"), ("sec-fetch-site", "cross-site"),
                                 ("referer", "https://www.google.com/")))


async def _network(readers: int, records: int, gap_s: float, *, tabs: int = 0) -> tuple[list[str], Action, str]:
    """`readers` sessions with a person's history on one /24 (each a desk of its own), reading
    `records` records each, one every `gap_s` seconds (0.5-1.5x) in turn, after one of them opened
    `tabs` records at once; then a new visitor arrives on the network. Returns the refused
    records' rules and the arrival's action and rule."""
    policy = compile_file(str(DEFAULT))
    clock = FakeClock(1_800_000_000.0)
    engine = Engine(policy, MemoryStore(), clock, sessions=SessionStage(KEYS))
    stack = stack_of(DecisionContext(_arrival("192.0.2.1")))
    rng = random.Random(7)
    cookies = [SessionCookie(f"{k:016X}", int(clock.now()) - 60, net_tag("192.0.2.0/24"), stack_tag(stack),
                             HISTORY).encode(KEYS) for k in range(readers)]
    refused = []

    async def read(k: int) -> None:
        path = f"/people/{rng.randrange(1, 100_000)}"
        decision = await engine.decide_in(DecisionContext(_page(cookies[k], path, "/", f"192.0.2.{10 + k}")))
        if decision.action is not Action.ALLOW:
            refused.append(decision.rule)

    for _ in range(tabs):
        await read(0)
    for _ in range(records):
        for k in range(readers):
            clock.advance(gap_s * (0.5 + rng.random()) / readers)
            await read(k)
    clock.advance(5.0)
    arrival = await engine.decide_in(DecisionContext(_arrival("192.0.2.200")))
    return refused, arrival.action, arrival.rule


async def test_default_policy_one_session_rushing_its_free_records_prices_the_next_identity_on_its_network() -> None:
    # a fleet identity: a person's history, then 30 records a second apart (under records-per-session's
    # burst, so never challenged itself) and dropped; the next identity from its /24 solves first
    refused, action, rule = await _network(1, 30, 1.0)
    assert refused == []
    assert (action, rule) == (Action.CHALLENGE, "score:net-pressure")


async def test_default_policy_an_office_reading_at_a_persons_pace_leaves_its_arrivals_alone() -> None:
    # thirty people on one /24, each reading a record every 3-9 s for ten minutes (faster than people
    # read), one of whom opened twenty records in tabs at once (22 points of the 40)
    refused, action, rule = await _network(30, 100, 6.0, tabs=20)
    assert refused == []
    assert action is Action.ALLOW, rule

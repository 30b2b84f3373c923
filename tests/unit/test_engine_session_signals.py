"""Session counter signals (cookie_refuser, session_roaming, ...) in rule conditions: the engine reads
the session counters before matching, and only for a policy whose rules name one."""
from __future__ import annotations

import textwrap
from pathlib import Path

from scrapeshield.challenge.keys import KeyRing
from scrapeshield.clock import FakeClock
from scrapeshield.context import DecisionContext
from scrapeshield.decision import Action, Decision
from scrapeshield.engine import Engine
from scrapeshield.facts import RequestFacts
from scrapeshield.policy.compiler import compile_bytes, compile_file
from scrapeshield.policy.model import CompiledPolicy
from scrapeshield.session.cookie import COOKIE_NAME
from scrapeshield.session.policy import SESSION_COUNTERS
from scrapeshield.session.stage import SessionStage
from scrapeshield.store.base import Batch, BatchResult
from scrapeshield.store.memory import MemoryStore

KEYS = KeyRing((b"k" * 32,))
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0"
REFUSERS = """
    version: 1
    session: {refuser_at: 3}
    rules:
      - name: refusers
        match: {session_signal: [cookie_refuser]}
        action: block
"""
SCORED = """
    version: 1
    session: {refuser_at: 3}
    scores:
      - name: harvest
        key: ip
        weights: {cookie_refuser: 30, session:absent: 1}
        thresholds: [{at: 30, action: challenge}]
"""


def compile_policy(text: str) -> CompiledPolicy:
    return compile_bytes(textwrap.dedent(text).encode(), "test.yaml")


class CountingStore(MemoryStore):
    """A real MemoryStore that counts the batches it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.batches = 0

    def apply_now(self, batch: Batch, now: float) -> BatchResult:
        self.batches += 1
        return super().apply_now(batch, now)


class Client:
    """One client address and browser; keeps the session cookie it is given when `keeps_cookie`."""

    def __init__(self, engine: Engine, clock: FakeClock, ip: str = "203.0.113.7", keeps_cookie: bool = True) -> None:
        self.engine, self.clock, self.ip, self.keeps_cookie = engine, clock, ip, keeps_cookie
        self.cookie: str | None = None

    async def get(self, path: str = "/", referer: str | None = None) -> Decision:
        self.clock.advance(1.0)
        headers = [("Host", "shop.example"), ("User-Agent", UA), ("Accept", "text/html")]
        if referer is not None:
            headers.append(("Referer", "https://shop.example" + referer))
        if self.cookie is not None:
            headers.append(("Cookie", f"{COOKIE_NAME}={self.cookie}"))
        ctx = DecisionContext(RequestFacts(peer_ip=self.ip, host="shop.example", path=path, headers=tuple(headers)))
        decision = await self.engine.decide_in(ctx)
        if self.keeps_cookie and ctx.session is not None and ctx.session.set_cookie is not None:
            self.cookie = ctx.session.set_cookie.encode(KEYS)
        return decision


def make_engine(text: str, store: MemoryStore | None = None) -> tuple[Engine, FakeClock]:
    clock = FakeClock(1_800_000_000.0)
    engine = Engine(compile_policy(text), store if store is not None else MemoryStore(), clock,
                    sessions=SessionStage(KEYS))
    return engine, clock


async def test_a_rule_matches_a_cookie_refuser_from_the_request_the_counter_reaches_refuser_at() -> None:
    engine, clock = make_engine(REFUSERS)
    refuser = Client(engine, clock, keeps_cookie=False)
    actions = [(await refuser.get()).action for _ in range(4)]
    assert actions == [Action.ALLOW, Action.ALLOW, Action.BLOCK, Action.BLOCK]


async def test_a_client_that_returns_its_cookie_never_matches_the_cookie_refuser_rule() -> None:
    engine, clock = make_engine(REFUSERS)
    person = Client(engine, clock, ip="198.51.100.7")
    assert {(await person.get()).action for _ in range(10)} == {Action.ALLOW}


def test_only_rules_that_name_a_counter_signal_make_the_policy_read_counters_early() -> None:
    assert compile_policy(REFUSERS).needs == {SESSION_COUNTERS}
    assert compile_policy(SCORED).needs == frozenset()  # a weight reads the counters with the request's batch
    in_when = SCORED.replace("{at: 30, action: challenge}",
                             "{at: 30, action: challenge, when: {session_signal: [cookie_refuser]}}")
    assert compile_policy(in_when).needs == frozenset()  # thresholds are judged after the batch anyway
    event_only = REFUSERS.replace("[cookie_refuser]", "[session:absent]")
    assert compile_policy(event_only).needs == frozenset()
    default = Path(__file__).resolve().parents[2] / "policies" / "default.yaml"
    assert compile_file(str(default)).needs == frozenset()


class NetworkedStore(CountingStore):
    """The same store, answering as a networked one does (every answer may wait: no sync_apply)."""

    sync_apply = None  # type: ignore[assignment]

    async def apply(self, batch: Batch, now: float) -> BatchResult:
        return self.apply_now(batch, now)


async def test_a_policy_without_counter_conditions_asks_a_networked_store_once_per_request() -> None:
    store = NetworkedStore()
    engine, clock = make_engine(SCORED, store)
    refuser = Client(engine, clock, keeps_cookie=False)
    actions = [(await refuser.get()).action for _ in range(5)]
    assert Action.CHALLENGE in actions  # the price of its challenges read in the request's one batch
    assert store.batches == 5


async def test_in_process_a_challenge_reads_its_price_in_a_batch_of_its_own_at_the_same_difficulty() -> None:
    # In process a batch costs no round trip but every counter costs a store operation: the price
    # is read only for a challenge. Difficulties come out as a networked store's one batch has them.
    outcomes = []
    for store in (CountingStore(), NetworkedStore()):
        engine, clock = make_engine(SCORED, store)
        clients = [Client(engine, clock, keeps_cookie=False), Client(engine, clock, ip="198.51.100.9")]
        seen = []
        for i in range(12):
            d = await clients[i % 2].get("/user/1" if i % 3 else "/")
            seen.append((d.action, d.rule, d.difficulty))
        challenges = sum(action is Action.CHALLENGE for action, _, _ in seen)
        in_process = store.sync_apply is not None
        assert store.batches == 12 + (challenges if in_process else 0)
        outcomes.append(seen)
    assert outcomes[0] == outcomes[1]
    assert any(difficulty > 16 for _, _, difficulty in outcomes[0])  # adaptive: the price did count


async def test_early_counters_cost_one_batch_more_only_for_requests_that_carry_counters() -> None:
    store = CountingStore()
    engine, clock = make_engine(REFUSERS, store)
    person = Client(engine, clock)
    await person.get()  # minted: counters read early, then the request's batch (the penalty box)
    await person.get()  # first time back: a counter too
    assert store.batches == 4
    await person.get("/app.css", referer="/")  # the page's asset, then a link followed: a person's history
    await person.get("/about", referer="/")
    assert store.batches == 8
    for _ in range(3):
        clock.advance(120.0)  # past `fresh_for`: an established session with a history carries no counters
        await person.get()
    assert store.batches == 11


async def test_reading_counters_early_leaves_scores_and_decisions_as_they_were() -> None:
    # The same scored policy, once with a rule that names a counter signal (a log rule: it acts on
    # nothing), once without: the counters are read before matching in one, with the batch in the other.
    with_rule = SCORED + """
    rules:
      - name: watch-refusers
        match: {session_signal: [cookie_refuser]}
        action: log
    """
    plain_engine, plain_clock = make_engine(SCORED)
    early_engine, early_clock = make_engine(with_rule)
    assert SESSION_COUNTERS in early_engine.policy.needs
    outcomes = []
    for engine, clock in ((plain_engine, plain_clock), (early_engine, early_clock)):
        clients = [Client(engine, clock, keeps_cookie=False), Client(engine, clock, ip="198.51.100.9")]
        seen = []
        for i in range(12):
            d = await clients[i % 2].get("/user/1" if i % 3 else "/")
            seen.append((d.action, d.rule, d.key, round(d.score or 0.0, 6)))
        outcomes.append(seen)
    assert outcomes[0] == outcomes[1]
    assert any(action is Action.CHALLENGE for action, *_ in outcomes[0])  # the levels did weigh

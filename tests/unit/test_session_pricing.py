"""Every challenge to a session is priced at the going adaptive difficulty, in the engine.

A session with standing reads no counters on its requests (a person at home costs the store
nothing); when its own score challenges it, the engine reads the price in a small second batch,
so a fleet that fakes a person's history still pays what identities on its stack cost.
"""
from __future__ import annotations

import textwrap

from scrapeshield.challenge.keys import KeyRing
from scrapeshield.clock import FakeClock
from scrapeshield.context import DecisionContext
from scrapeshield.decision import Action
from scrapeshield.engine import Engine
from scrapeshield.facts import RequestFacts
from scrapeshield.policy.compiler import compile_bytes
from scrapeshield.session.cookie import HISTORY, SessionCookie, net_tag, stack_tag
from scrapeshield.session.stage import stack_of
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
    from scrapeshield.session.stage import SessionStage

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

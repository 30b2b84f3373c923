"""The decision pipeline stage by stage: match -> batch -> resolve, the context, and explain."""
from __future__ import annotations

import textwrap
from typing import Any

import pytest

from scrapeshield.clock import FakeClock
from scrapeshield.context import DecisionContext
from scrapeshield.decision import ALLOW_DEFAULT, Action
from scrapeshield.engine import Engine, RuleOutcome, stages
from scrapeshield.facts import RequestFacts
from scrapeshield.gcra import BucketState
from scrapeshield.policy.compiler import compile_bytes
from scrapeshield.policy.model import CompiledPolicy
from scrapeshield.policy.plan import RulePlan
from scrapeshield.store.base import BatchResult
from scrapeshield.store.memory import MemoryStore

CLIENT = "203.0.113.7"


def compile_policy(text: str) -> CompiledPolicy:
    return compile_bytes(textwrap.dedent(text).encode(), "test.yaml")


def context(path: str = "/", **kw: Any) -> DecisionContext:
    kw.setdefault("peer_ip", CLIENT)
    return DecisionContext(RequestFacts(path=path, **kw), now=1000.0)


POLICY = compile_policy("""
    version: 1
    rules:
      - {name: robots, match: {path: /robots.txt}, action: allow}
      - {name: watch, match: {path: /api/*}, action: log, score: {abuse: 2}}
      - {name: api, match: {path: /api/*}, limits: ["2/s burst 1"], ban: 1m}
      - {name: trial, match: {path: /api/*}, action: block, monitor: true}
      - {name: deny, match: {path: /admin/*, method: POST}, action: block}
    scores:
      - {name: abuse, thresholds: [{at: 4, action: challenge}]}
""")


def never_cleared(facts: RequestFacts, rule: str) -> bool:
    return False


# -- match ---------------------------------------------------------------------------------------

def test_match_collects_buckets_scores_and_shadow_decisions_without_deciding() -> None:
    m = stages.match(POLICY, context("/api/users"), never_cleared)
    assert [(c.key, c.limit.count) for c in m.checks] == [("ip=203.0.113.7", 2)]
    assert m.terminal is None
    assert m.rule_scores == {"abuse": 2.0}
    assert [(d.rule, d.action, d.enforced) for d in m.shadowed] == [
        ("watch", Action.LOG, False), ("trial", Action.BLOCK, False)]


def test_match_stops_at_the_first_rule_that_decides_directly() -> None:
    m = stages.match(POLICY, context("/admin/x", method="POST"), never_cleared)
    assert m.terminal is not None and m.terminal.name == "deny"
    assert m.refused_outright


def test_a_solved_challenge_rule_does_not_decide() -> None:
    policy = compile_policy("""
        version: 1
        rules: [{name: gate, match: {path: /x}, action: challenge}]
    """)
    m = stages.match(policy, context("/x"), lambda facts, rule: rule == "gate")
    assert (m.terminal, m.cleared) == (None, True)


# -- batch ---------------------------------------------------------------------------------------

def test_a_request_refused_outright_asks_the_store_only_about_the_penalty_box() -> None:
    ctx = context("/admin/x", method="POST")
    m = stages.match(POLICY, ctx, never_cleared)
    batch = stages.build_batch(POLICY, ctx, m)
    # the address and network are always asked about: an operator may have banned them by hand
    assert (batch.ban_keys[:2], batch.buckets, batch.scores) == (("ip=203.0.113.7", "prefix=203.0.113.0/24"), (), ())


def test_even_a_policy_without_limits_asks_the_penalty_box_and_allow_list() -> None:
    policy = compile_policy("version: 1\nrules: [{name: ok, action: allow}]\n")
    ctx = context()
    batch = stages.build_batch(policy, ctx, stages.match(policy, ctx, None))
    assert (batch.ban_keys, batch.buckets, batch.scores) == (("ip=203.0.113.7", "prefix=203.0.113.0/24"), (), ())


def test_score_updates_weigh_signals_and_add_rule_deltas() -> None:
    policy = compile_policy("""
        version: 1
        scores: [{name: abuse, weights: {ua_tls_mismatch: 3}, thresholds: [{at: 9, action: block}]}]
    """)
    ups = stages.score_updates(policy, context(), {"abuse": 1.0}, {"ua_tls_mismatch": 0.5}, None)
    assert [(u.key, u.delta) for u in ups] == [("ip=203.0.113.7", 2.5)]


# -- resolve -------------------------------------------------------------------------------------

def _result(refused: int = -1, banned: str | None = None, scores: tuple[float, ...] = ()) -> BatchResult:
    states = (BucketState(refused != 0, 0, 1.0, 0.5 if refused == 0 else 0.0),)
    return BatchResult(banned, 2000.0 if banned else 0.0, refused, states, scores)


def test_resolve_puts_the_penalty_box_first() -> None:
    ctx = context("/api/x")
    m = stages.match(POLICY, ctx, never_cleared)
    batch = stages.build_batch(POLICY, ctx, m)
    outcome = stages.resolve(POLICY, ctx, m, batch, _result(refused=0, banned="ip=203.0.113.7"), never_cleared)
    assert (outcome.decision.rule, outcome.decision.action, outcome.ban) == ("ban", Action.BLOCK, None)


def test_resolve_lets_a_refusing_bucket_win_and_asks_for_its_ban() -> None:
    ctx = context("/api/x")
    m = stages.match(POLICY, ctx, never_cleared)
    batch = stages.build_batch(POLICY, ctx, m)
    outcome = stages.resolve(POLICY, ctx, m, batch, _result(refused=0), never_cleared)
    assert (outcome.decision.rule, outcome.decision.action) == ("api", Action.THROTTLE)
    assert outcome.ban == ("ip=203.0.113.7", 60.0)


def test_resolve_takes_the_highest_threshold_a_score_reached() -> None:
    ctx = context("/api/x")
    m = stages.match(POLICY, ctx, never_cleared)
    ups = stages.score_updates(POLICY, ctx, m.rule_scores, None, None)
    batch = stages.build_batch(POLICY, ctx, m, ups)
    outcome = stages.resolve(POLICY, ctx, m, batch, _result(scores=(4.0,)), never_cleared)
    assert (outcome.decision.rule, outcome.decision.action, outcome.decision.score) == (
        "score:abuse", Action.CHALLENGE, 4.0)


def test_resolve_falls_back_to_the_default_action() -> None:
    ctx = context("/other")
    m = stages.match(POLICY, ctx, never_cleared)
    outcome = stages.resolve(POLICY, ctx, m, stages.NO_BATCH, None, never_cleared)
    assert outcome.decision is ALLOW_DEFAULT


def test_the_fail_decision_follows_the_fail_mode() -> None:
    closed = compile_policy("version: 1\nfail: closed\nmonitor: true\n")
    assert (stages.fail_decision(closed, "x").action, stages.fail_decision(closed, "x").enforced) == (
        Action.BLOCK, False)
    assert stages.fail_decision(POLICY, "x").action is Action.ALLOW


# -- the rule plan is part of the compiled policy ---------------------------------------------------

def test_the_compiled_policy_carries_its_rule_plan() -> None:
    assert isinstance(POLICY.plan, RulePlan)
    names = [r.name for r in POLICY.plan.candidates(context("/robots.txt"))]
    assert "deny" not in names and "robots" in names  # /admin/* cannot match /robots.txt


def test_a_policy_changes_only_through_swap() -> None:
    engine = Engine(POLICY, MemoryStore(), FakeClock())
    with pytest.raises(AttributeError):
        engine.policy = compile_policy("version: 1\n")  # type: ignore[misc]
    other = compile_policy("version: 1\ndefault_action: block\n")
    engine.swap(other)
    assert engine.policy is other


# -- the context ---------------------------------------------------------------------------------

async def test_the_facts_stay_as_the_client_sent_them_and_the_context_gets_the_derived_values() -> None:
    policy = compile_policy("version: 1\ndetectors: {key: ip}\n")
    engine = Engine(policy, MemoryStore(), FakeClock())
    facts = RequestFacts(peer_ip=CLIENT, path="/style.css")
    ctx = DecisionContext(facts)
    await engine.decide_in(ctx)
    assert (ctx.detector_key, ctx.is_asset) == ("ip=203.0.113.7", True)
    assert not hasattr(facts, "detector_key")


async def test_a_forked_context_shares_the_fingerprint_but_not_what_the_stages_found() -> None:
    ctx = context("/", headers=[("User-Agent", "curl/8.0")])
    ctx.detector_key = "ip=x"
    fp = ctx.fingerprint
    other = ctx.fork()
    assert other.fingerprint is fp and other.detector_key is None and other.facts is ctx.facts


# -- explain -------------------------------------------------------------------------------------

async def test_explain_accounts_for_every_rule_in_order() -> None:
    engine = Engine(POLICY, MemoryStore(), FakeClock(1000.0))
    trace = await engine.explain(RequestFacts(peer_ip=CLIENT, path="/admin/x", method="GET"))
    assert [(r.rule, r.outcome, r.failed) for r in trace.rules] == [
        ("robots", RuleOutcome.CANNOT_MATCH, ""),
        ("watch", RuleOutcome.CANNOT_MATCH, ""),
        ("api", RuleOutcome.CANNOT_MATCH, ""),
        ("trial", RuleOutcome.CANNOT_MATCH, ""),
        ("deny", RuleOutcome.NO_MATCH, "method"),
    ]
    assert trace.decision is ALLOW_DEFAULT


async def test_explain_shows_buckets_scores_and_the_deciding_rule() -> None:
    engine = Engine(POLICY, MemoryStore(), FakeClock(1000.0))
    trace = await engine.explain(RequestFacts(peer_ip=CLIENT, path="/api/users"))
    outcomes = {r.rule: (r.outcome, r.note) for r in trace.rules}
    assert outcomes["api"] == (RuleOutcome.MATCHED, "limit")
    assert outcomes["trial"] == (RuleOutcome.MATCHED, "monitored: would block")
    assert [(b.bucket, b.allowed, b.remaining) for b in trace.buckets] == [("api/0", True, 1)]  # burst 1
    assert [(s.score, s.delta, s.value) for s in trace.scores] == [("abuse", 2.0, 2.0)]
    await engine.explain(RequestFacts(peer_ip=CLIENT, path="/api/users"))
    third = await engine.explain(RequestFacts(peer_ip=CLIENT, path="/api/users"))
    assert third.decision.rule == "api" and not third.buckets[0].allowed


async def test_explain_marks_the_rules_after_the_deciding_one_as_not_reached() -> None:
    policy = compile_policy("""
        version: 1
        rules:
          - {name: first, action: drop}
          - {name: second, action: block}
    """)
    trace = await Engine(policy, MemoryStore(), FakeClock()).explain(RequestFacts(peer_ip=CLIENT))
    assert [(r.rule, r.outcome, r.note) for r in trace.rules] == [
        ("first", RuleOutcome.MATCHED, "decided"), ("second", RuleOutcome.NOT_REACHED, "")]


async def test_explain_shows_what_the_detectors_measure_for_the_identity() -> None:
    policy = compile_policy("version: 1\ndetectors: {key: ip}\n")
    engine = Engine(policy, MemoryStore(), FakeClock(1000.0))
    for i in range(3):
        await engine.decide(RequestFacts(peer_ip=CLIENT, path=f"/user/{i}"))
    trace = await engine.explain(RequestFacts(peer_ip=CLIENT, path="/user/3"))
    assert trace.detector_key == "ip=203.0.113.7"
    assert trace.detector_state is not None and trace.detector_state["distinct_resources"] == 4.0

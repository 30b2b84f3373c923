"""The decision engine: RequestFacts + CompiledPolicy + Store + FakeClock -> Decision."""
from __future__ import annotations

import textwrap
from typing import Any

import pytest

from scrapeshield.clock import FakeClock
from scrapeshield.context import DecisionContext
from scrapeshield.decision import Action, Decision
from scrapeshield.engine import Engine
from scrapeshield.facts import RequestFacts
from scrapeshield.metrics import ShieldMetrics
from scrapeshield.netaddr import (
    MAX_FORWARDED_BYTES,
    MAX_FORWARDED_HOPS,
    CidrSet,
    ip_prefix,
    resolve_client_ip,
)
from scrapeshield.policy.compiler import compile_bytes
from scrapeshield.policy.model import CompiledPolicy
from scrapeshield.store.base import Batch, BatchResult, StoreError
from scrapeshield.store.memory import MemoryStore

CLIENT = "203.0.113.7"


def compile_policy(text: str) -> CompiledPolicy:
    return compile_bytes(textwrap.dedent(text).encode(), "test.yaml")


def request(path: str = "/", **kw: Any) -> RequestFacts:
    kw.setdefault("peer_ip", CLIENT)
    query = ""
    if "?" in path:
        path, _, query = path.partition("?")
    return RequestFacts(path=path, query=kw.pop("query", query), **kw)


def make_engine(text: str, store: Any = None) -> tuple[Engine, FakeClock]:
    clock = FakeClock()
    return Engine(compile_policy(text), store if store is not None else MemoryStore(), clock), clock


async def decide_n(engine: Engine, n: int, facts: RequestFacts | None = None) -> list[Decision]:
    return [await engine.decide(facts or request()) for _ in range(n)]


# -- match conditions -----------------------------------------------------------------------------

CONDITION_CASES = [
    # (match YAML, facts that match, facts that do not)
    ("{method: [POST, put]}", {"method": "PUT"}, {"method": "GET"}),
    ("{host: '*.shop.example'}", {"host": "WWW.shop.example:8443"}, {"host": "shop.example"}),
    ("{host: ['shop.example']}", {"host": "shop.example:80"}, {"host": "evil.example"}),
    ("{host: '2001:db8::1'}", {"host": "[2001:db8::1]:443"}, {"host": "[2001:db8::2]:443"}),
    ("{path: /api/*}", {"path": "/api/v1/users"}, {"path": "/apiary"}),
    ("{path: [/robots.txt, /.well-known/*]}", {"path": "/.well-known/security.txt"}, {"path": "/robots.txt.bak"}),
    ("{path_regex: '^/user/\\d+$'}", {"path": "/user/42"}, {"path": "/user/42/edit"}),
    ("{query: {page: '^\\d{3,}$'}}", {"path": "/list?page=100&x=1"}, {"path": "/list?page=99"}),
    ("{query: {q: true}}", {"path": "/search?q="}, {"path": "/search?p=1"}),
    ("{query_regex: 'sort=price'}", {"path": "/list?a=1&sort=price"}, {"path": "/list?sort=name"}),
    ("{header: {x-api-key: true}}", {"headers": [("X-Api-Key", "k")]}, {"headers": []}),
    ("{header: {accept-language: false}}", {"headers": [("Accept", "*/*")]},
     {"headers": [("Accept-Language", "en")]}),
    ("{header: {accept: 'text/html'}}", {"headers": [("Accept", "text/html,*/*")]},
     {"headers": [("Accept", "application/json")]}),
    ("{user_agent: '(?i)python-requests'}", {"headers": [("User-Agent", "Python-Requests/2.31")]},
     {"headers": [("User-Agent", "Mozilla/5.0")]}),
    ("{client_ip: [203.0.113.0/24]}", {"peer_ip": "203.0.113.200"}, {"peer_ip": "198.51.100.1"}),
    ("{client_ip: ['2001:db8::/32', 192.0.2.1]}", {"peer_ip": "2001:db8:5::1"}, {"peer_ip": "192.0.2.2"}),
    ("{client_ip: '@partners'}", {"peer_ip": "198.51.100.9"}, {"peer_ip": "198.51.101.9"}),
    ("{client_ip: 10.0.0.0/8}", {"peer_ip": "::ffff:10.1.2.3"}, {"peer_ip": "not-an-ip"}),
    ("{scheme: https}", {"scheme": "https"}, {"scheme": "http"}),
    ("{http_version: HTTP/2.0}", {"http_version": "HTTP/2.0"}, {"http_version": "HTTP/1.1"}),
    ("{path: /a/*, method: GET}", {"path": "/a/1", "method": "GET"}, {"path": "/a/1", "method": "POST"}),
    ("{all: [{path: /a/*}, {header: {x-k: true}}]}", {"path": "/a/1", "headers": [("x-k", "1")]}, {"path": "/a/1"}),
    ("{any: [{path: /a}, {path: /b}]}", {"path": "/b"}, {"path": "/c"}),
    ("{not: {method: GET}}", {"method": "DELETE"}, {"method": "GET"}),
]


@pytest.mark.parametrize(("match", "hit", "miss"), CONDITION_CASES, ids=[c[0] for c in CONDITION_CASES])
async def test_a_match_condition_selects_exactly_the_requests_it_describes(
    match: str, hit: dict[str, Any], miss: dict[str, Any]
) -> None:
    # given a policy whose only rule blocks what the condition matches
    engine, _ = make_engine(f"""
        version: 1
        ip_lists: {{partners: [198.51.100.0/24]}}
        rules:
          - {{name: hit, match: {match}, action: block}}
    """)
    # when a matching and a non-matching request arrive
    yes, no = await engine.decide(request(**hit)), await engine.decide(request(**miss))
    # then only the first is blocked
    assert (yes.action, yes.rule) == (Action.BLOCK, "hit")
    assert (no.action, no.rule) == (Action.ALLOW, "default")


async def test_rules_are_evaluated_in_order_and_the_first_terminal_rule_decides() -> None:
    engine, _ = make_engine("""
        version: 1
        rules:
          - {name: first, match: {path: /x}, action: drop}
          - {name: second, match: {path: /x}, action: block}
    """)
    decision = await engine.decide(request("/x"))
    assert (decision.action, decision.rule) == (Action.DROP, "first")


async def test_an_allow_rule_short_circuits_the_rules_after_it() -> None:
    # given an allow rule before a tight limit
    engine, _ = make_engine("""
        version: 1
        rules:
          - {name: robots, match: {path: /robots.txt}, action: allow}
          - {name: tight, limits: "1/s burst 0"}
    """)
    # when robots.txt is fetched many times at once
    decisions = await decide_n(engine, 5, request("/robots.txt"))
    # then every fetch is allowed by the allow rule and the limit is never spent
    assert {(d.action, d.rule) for d in decisions} == {(Action.ALLOW, "robots")}
    assert engine.store.tracked_keys() == 0


async def test_a_limit_before_an_allow_rule_still_applies() -> None:
    engine, _ = make_engine("""
        version: 1
        rules:
          - {name: tight, limits: "1/s burst 0"}
          - {name: robots, match: {path: /robots.txt}, action: allow}
    """)
    first, second = await decide_n(engine, 2, request("/robots.txt"))
    assert first.rule == "robots"
    assert (second.action, second.rule) == (Action.THROTTLE, "tight")


async def test_a_log_rule_is_recorded_as_shadowed_and_evaluation_continues() -> None:
    engine, _ = make_engine("""
        version: 1
        rules:
          - {name: audit, match: {path: /admin/*}, action: log}
          - {name: deny, match: {path: /admin/secret}, action: block}
    """)
    decision = await engine.decide(request("/admin/secret"))
    assert (decision.action, decision.rule) == (Action.BLOCK, "deny")
    (shadow,) = decision.shadowed
    assert (shadow.action, shadow.rule, shadow.enforced) == (Action.LOG, "audit", False)


async def test_a_cleared_client_passes_a_challenge_rule() -> None:
    policy = compile_policy("""
        version: 1
        rules:
          - {name: gate, match: {path: /shop/*}, action: challenge}
    """)
    cleared = Engine(policy, MemoryStore(), FakeClock(), clearance=lambda facts, rule: rule == "gate")
    uncleared = Engine(policy, MemoryStore(), FakeClock(), clearance=lambda facts, rule: False)
    assert (await cleared.decide(request("/shop/1"))).action is Action.ALLOW
    challenged = await uncleared.decide(request("/shop/1"))
    assert (challenged.action, challenged.difficulty) == (Action.CHALLENGE, 16)


async def test_a_cleared_limit_challenge_is_passed_over_and_the_other_limits_still_count() -> None:
    """A client that solved a limit rule's `exceed: challenge` passes that limit; every other
    limit rule keeps counting its requests (the cleared limit's refusal used to spend none)."""
    policy = compile_policy("""
        version: 1
        rules:
          - {name: volume, match: {path: /records/*}, limits: "2/m burst 2", exceed: challenge}
          - {name: ceiling, limits: "10/m burst 9", exceed: throttle}
    """)
    uncleared = Engine(policy, MemoryStore(), FakeClock(), clearance=lambda facts, rule: False)
    actions = [(await uncleared.decide(request(f"/records/{i}"))).action for i in range(4)]
    assert actions == [Action.ALLOW] * 3 + [Action.CHALLENGE]
    cleared = Engine(policy, MemoryStore(), FakeClock(), clearance=lambda facts, rule: rule == "volume")
    decisions = [await cleared.decide(request(f"/records/{i}")) for i in range(12)]
    assert [d.action for d in decisions] == [Action.ALLOW] * 10 + [Action.THROTTLE] * 2
    assert decisions[-1].rule == "ceiling"
    trace = await cleared.explain(request("/records/99"))
    notes = {r.rule: r.note for r in trace.rules}
    assert notes == {"volume": "limit passed over: its challenge already solved (clearance)", "ceiling": "limit"}
    assert [b.rule for b in trace.buckets] == ["ceiling"]


# -- limits ---------------------------------------------------------------------------------------

async def test_a_limit_rule_allows_the_burst_and_then_exceeds() -> None:
    engine, _ = make_engine("""
        version: 1
        rules:
          - {name: per-ip, limits: "10/s burst 20"}
    """)
    decisions = await decide_n(engine, 25)
    assert [d.action for d in decisions].count(Action.ALLOW) == 21
    assert decisions[21].action is Action.THROTTLE


async def test_two_buckets_on_one_key_both_apply() -> None:
    # given 10/s burst 20 AND 1000/h on one key
    engine, clock = make_engine("""
        version: 1
        rules:
          - {name: both, limits: ["10/s burst 20", "1000/h"]}
    """)
    # when a client stays under 10/s (5/s) until it is refused
    accepted, decision = 0, None
    for _ in range(2000):
        decision = await engine.decide(request())
        if decision.action is not Action.ALLOW:
            break
        accepted += 1
        clock.advance(0.2)
    # then it is the hourly bucket that refuses, after its 1000 plus what refilled meanwhile
    assert decision is not None and decision.rate is not None
    assert (decision.rate.policy_name, decision.rate.quota, decision.rate.window) == ("both/1", 1000, 3600.0)
    assert accepted == 1058  # n*3.6 - n*0.2 <= 999*3.6  =>  n <= 1057.8, plus the first


async def test_the_short_bucket_refuses_a_burst_before_the_long_one() -> None:
    engine, _ = make_engine("""
        version: 1
        rules:
          - {name: both, limits: ["10/s burst 20", "1000/h"]}
    """)
    decisions = await decide_n(engine, 22)
    assert decisions[-1].rate is not None and decisions[-1].rate.policy_name == "both/0"


@pytest.mark.parametrize(
    ("exceed", "action"),
    [("throttle", Action.THROTTLE), ("delay", Action.DELAY), ("block", Action.BLOCK), ("drop", Action.DROP),
     ("challenge", Action.CHALLENGE)],
)
async def test_an_exceeded_limit_takes_the_rules_exceed_action_with_rate_info(exceed: str, action: Action) -> None:
    engine, _ = make_engine(f"""
        version: 1
        rules:
          - {{name: r, limits: "2/s burst 1", exceed: {exceed}}}
    """)
    *_, over = await decide_n(engine, 3)
    assert (over.action, over.rule, over.key, over.enforced) == (action, "r", f"ip={CLIENT}", True)
    assert over.reason == "over 2/s burst 1"
    rate = over.rate
    assert rate is not None
    assert (rate.policy_name, rate.quota, rate.window, rate.burst, rate.remaining) == ("r/0", 2, 1.0, 1, 0)
    assert rate.retry_after == pytest.approx(0.5)
    assert rate.reset == pytest.approx(1.0)


async def test_a_delay_is_the_wait_until_the_request_would_conform() -> None:
    engine, _ = make_engine("""
        version: 1
        rules:
          - {name: r, limits: "1/s burst 0", exceed: delay, delay_max: 5s}
    """)
    _, over = await decide_n(engine, 2)
    assert (over.action, over.delay) == (Action.DELAY, pytest.approx(1.0))


async def test_a_delay_is_capped_by_delay_max() -> None:
    engine, _ = make_engine("""
        version: 1
        rules:
          - {name: r, limits: "1/m burst 0", exceed: delay, delay_max: 2s}
    """)
    _, over = await decide_n(engine, 2)
    assert over.rate is not None and over.rate.retry_after == pytest.approx(60.0)
    assert over.delay == 2.0


async def test_a_rule_status_overrides_the_default_status() -> None:
    engine, _ = make_engine("""
        version: 1
        rules:
          - {name: r, limits: "1/s burst 0", status: 503}
    """)
    _, over = await decide_n(engine, 2)
    assert over.status == 503


# -- penalty box ----------------------------------------------------------------------------------

BAN_POLICY = """
    version: 1
    penalty_box: {action: %s}
    rules:
      - {name: daily, limits: "5/d burst 4"}
      - {name: records, match: {path: /user/*}, limits: "1/s burst 0", ban: 10m}
"""


async def test_a_rule_with_ban_puts_the_key_in_the_penalty_box_when_it_trips() -> None:
    # given a records limit with a 10 minute ban
    engine, _ = make_engine(BAN_POLICY % "block")
    # when a client trips it
    first, tripped = await decide_n(engine, 2, request("/user/1"))
    # then the tripping request gets the exceed action and the next one, anywhere, is banned
    assert first.action is Action.ALLOW
    assert (tripped.action, tripped.rule) == (Action.THROTTLE, "records")
    banned = await engine.decide(request("/about"))
    assert (banned.action, banned.rule, banned.key) == (Action.BLOCK, "ban", f"ip={CLIENT}")


async def test_a_banned_key_is_refused_without_spending_any_bucket() -> None:
    # given a banned client that had spent 1 of its 5 daily requests
    engine, clock = make_engine(BAN_POLICY % "block")
    await decide_n(engine, 2, request("/user/1"))
    # when it keeps knocking during the ban
    knocks = await decide_n(engine, 20, request("/about"))
    assert {d.rule for d in knocks} == {"ban"}
    # then, once the ban is over, its daily budget is untouched: 4 more requests pass
    clock.advance(601)
    after = await decide_n(engine, 5, request("/about"))
    assert [d.action for d in after] == [Action.ALLOW] * 4 + [Action.THROTTLE]
    assert after[-1].rule == "daily"


async def test_a_ban_expires_with_the_clock() -> None:
    engine, clock = make_engine(BAN_POLICY % "block")
    await decide_n(engine, 2, request("/user/1"))
    clock.advance(599)
    assert (await engine.decide(request("/about"))).rule == "ban"
    clock.advance(2)
    assert (await engine.decide(request("/user/2"))).action is Action.ALLOW


async def test_a_ban_only_holds_the_key_that_tripped() -> None:
    engine, _ = make_engine(BAN_POLICY % "block")
    await decide_n(engine, 2, request("/user/1"))
    other = await engine.decide(request("/user/1", peer_ip="198.51.100.1"))
    assert other.action is Action.ALLOW


async def test_the_penalty_box_action_can_be_drop() -> None:
    engine, _ = make_engine(BAN_POLICY % "drop")
    await decide_n(engine, 2, request("/user/1"))
    assert (await engine.decide(request("/"))).action is Action.DROP


async def test_a_direct_rule_with_ban_bans_on_its_first_match() -> None:
    engine, _ = make_engine("""
        version: 1
        rules:
          - {name: probe, match: {path: /wp-login.php}, action: block, ban: 1h}
    """)
    assert (await engine.decide(request("/wp-login.php"))).rule == "probe"
    assert (await engine.decide(request("/"))).rule == "ban"


# -- monitor --------------------------------------------------------------------------------------

async def test_global_monitor_decides_but_enforces_nothing() -> None:
    # given a policy in monitor mode
    engine, _ = make_engine("""
        version: 1
        monitor: true
        rules:
          - {name: deny, match: {path: /admin}, action: block}
    """)
    # when a request matches a block rule
    decision = await engine.decide(request("/admin"))
    # then the decision says block, but is not enforced: the shield lets it through
    assert (decision.action, decision.enforced, decision.effective) == (Action.BLOCK, False, Action.ALLOW)


async def test_global_monitor_decisions_are_counted_as_not_enforced() -> None:
    engine, _ = make_engine("""
        version: 1
        monitor: true
        rules:
          - {name: per-ip, limits: "1/s burst 0"}
    """)
    metrics = ShieldMetrics()
    for d in await decide_n(engine, 3):
        metrics.decided(d, 0.0)
    value = metrics.registry.get_sample_value(
        "scrapeshield_decisions_total", {"rule": "per-ip", "action": "throttle", "enforced": "false"})
    assert value == 2


async def test_global_monitor_bans_nobody() -> None:
    engine, _ = make_engine("""
        version: 1
        monitor: true
        rules:
          - {name: probe, match: {path: /wp-login.php}, action: block, ban: 1h}
    """)
    await engine.decide(request("/wp-login.php"))
    assert (await engine.decide(request("/"))).rule == "default"


async def test_a_monitored_rule_is_shadowed_and_evaluation_continues_to_enforced_rules() -> None:
    # given a monitored block rule followed by an enforced one
    engine, _ = make_engine("""
        version: 1
        rules:
          - {name: try-deny, match: {path: /admin/*}, action: block, monitor: true}
          - {name: deny, match: {path: /admin/secret}, action: drop}
    """)
    # when a request matches both
    decision = await engine.decide(request("/admin/secret"))
    # then the enforced rule decides and the monitored one is recorded beside it
    assert (decision.action, decision.rule, decision.enforced) == (Action.DROP, "deny", True)
    assert [(s.action, s.rule, s.enforced) for s in decision.shadowed] == [(Action.BLOCK, "try-deny", False)]
    # and a request only the monitored rule matches is allowed
    passed = await engine.decide(request("/admin/other"))
    assert (passed.effective, passed.rule) == (Action.ALLOW, "default")
    assert [s.rule for s in passed.shadowed] == ["try-deny"]


async def test_monitored_buckets_are_counted_locally_and_never_spend_enforced_buckets() -> None:
    # given a tight monitored limit and a looser enforced one
    engine, _ = make_engine("""
        version: 1
        rules:
          - {name: candidate, limits: "1/s burst 0", monitor: true}
          - {name: live, limits: "1/s burst 4"}
    """)
    # when five requests arrive at once
    decisions = await decide_n(engine, 6)
    # then the enforced limit alone decides, and the monitored one shadows from the second request on
    assert [d.action for d in decisions] == [Action.ALLOW] * 5 + [Action.THROTTLE]
    assert [len(d.shadowed) for d in decisions] == [0, 1, 1, 1, 1, 1]
    assert decisions[1].shadowed[0].action is Action.THROTTLE and not decisions[1].shadowed[0].enforced
    # and the monitored bucket lives in the local monitor store, not the shared one
    assert engine.store.tracked_keys() == 1
    assert engine.monitor_store.tracked_keys() == 1


# -- default action and fail modes ----------------------------------------------------------------

@pytest.mark.parametrize("action", [Action.BLOCK, Action.LOG, Action.CHALLENGE])
async def test_the_default_action_applies_when_no_rule_decides(action: Action) -> None:
    engine, _ = make_engine(f"""
        version: 1
        default_action: {action.value}
        rules:
          - {{name: ok, match: {{path: /public/*}}, action: allow}}
    """)
    decision = await engine.decide(request("/private"))
    assert (decision.action, decision.rule, decision.reason) == (action, "default", "no rule matched")
    assert (await engine.decide(request("/public/x"))).action is Action.ALLOW


class BrokenStore(MemoryStore):
    """A store whose backend is gone (fault injection)."""

    def __init__(self, exc: Exception) -> None:
        super().__init__()
        self.exc = exc

    async def apply(self, batch: Batch, now: float) -> BatchResult:
        raise self.exc

    @property
    def sync_apply(self) -> None:  # every answer goes through the failing `apply`
        return None


LIMITED = """
    version: 1
    fail: %s
    rules:
      - {name: per-ip, limits: "10/s"}
"""


async def test_fail_open_allows_when_the_store_is_unavailable() -> None:
    engine, _ = make_engine(LIMITED % "open", BrokenStore(StoreError("connection refused")))
    decision = await engine.decide(request())
    assert (decision.action, decision.rule) == (Action.ALLOW, "error")
    assert decision.reason == "store unavailable: connection refused"
    assert engine.errors == 1


async def test_fail_closed_blocks_when_the_store_is_unavailable() -> None:
    engine, _ = make_engine(LIMITED % "closed", BrokenStore(StoreError("timeout")))
    decision = await engine.decide(request())
    assert (decision.action, decision.rule, decision.enforced) == (Action.BLOCK, "error", True)


async def test_fail_closed_in_monitor_mode_is_not_enforced() -> None:
    engine, _ = make_engine(textwrap.dedent(LIMITED % "closed") + "monitor: true\n", BrokenStore(StoreError("timeout")))
    decision = await engine.decide(request())
    assert (decision.action, decision.effective) == (Action.BLOCK, Action.ALLOW)


async def test_an_internal_error_gets_the_fail_action_too() -> None:
    engine, _ = make_engine(LIMITED % "closed", BrokenStore(RuntimeError("bug")))
    decision = await engine.decide(request())
    assert (decision.action, decision.reason) == (Action.BLOCK, "internal error: RuntimeError")


# -- scores ---------------------------------------------------------------------------------------

SCORED = """
    version: 1
    rules:
      - {name: no-accept, match: {header: {accept: false}}, action: log, score: {abuse: 4}}
    scores:
      - name: abuse
        half_life: 10m
        thresholds:
          - {at: 10, action: challenge}
          - {at: 20, action: block, ban: 1h}
"""


async def test_a_score_adds_up_and_its_highest_reached_threshold_acts() -> None:
    engine, _ = make_engine(SCORED)
    decisions = await decide_n(engine, 5)
    assert [d.action for d in decisions] == [Action.ALLOW, Action.ALLOW, Action.CHALLENGE, Action.CHALLENGE,
                                             Action.BLOCK]
    assert (decisions[-1].rule, decisions[-1].score) == ("score:abuse", 20.0)
    assert (await engine.decide(request(headers=[("Accept", "*/*")]))).rule == "ban"


async def test_a_score_halves_every_half_life() -> None:
    engine, clock = make_engine(SCORED)
    await decide_n(engine, 2)  # 8
    clock.advance(600)  # 4
    decision = await engine.decide(request())  # 4 + 4 = 8: under the first threshold
    assert decision.action is Action.ALLOW


async def test_signal_sources_feed_score_weights() -> None:
    policy = compile_policy("""
        version: 1
        scores:
          - {name: abuse, weights: {sequential_ids: 2.5}, thresholds: [{at: 5, action: throttle}]}
    """)
    engine = Engine(policy, MemoryStore(), FakeClock(), signal_sources=(lambda f, p: {"sequential_ids": 1.0},))
    decisions = await decide_n(engine, 2)
    assert [d.action for d in decisions] == [Action.ALLOW, Action.THROTTLE]


# -- client keys ----------------------------------------------------------------------------------

KEY_CASES = [
    ("ip", {"peer_ip": "203.0.113.7"}, "ip=203.0.113.7"),
    ("ip", {"peer_ip": "2001:db8::7"}, "ip=2001:db8::7"),
    ("prefix", {"peer_ip": "203.0.113.7"}, "prefix=203.0.113.0/24"),
    ("prefix", {"peer_ip": "2001:db8:1:2:3:4:5:6"}, "prefix=2001:db8:1:2::/64"),
    ("header:x-api-key", {"headers": [("X-API-Key", "k-123")]}, "header:x-api-key=k-123"),
    ("header:x-api-key", {"headers": []}, "header:x-api-key=-"),
    ("cookie:sid", {"headers": [("Cookie", "a=1; sid=s-9")]}, "cookie:sid=s-9"),
    ("cookie:sid", {"headers": [("Cookie", "garbage\x00;;")]}, "cookie:sid=-"),
    ("host", {"host": "Shop.Example"}, "host=shop.example"),
    ("prefix+header:x-api-key", {"peer_ip": "198.51.100.20", "headers": [("x-api-key", "k1")]},
     "prefix=198.51.100.0/24|header:x-api-key=k1"),
    ("[ip, 'cookie:sid']", {"headers": [("Cookie", "sid=z")]}, "ip=203.0.113.7|cookie:sid=z"),
    ("subnet", {"peer_ip": "192.0.2.77"}, "prefix=192.0.2.0/24"),
]


@pytest.mark.parametrize(("key", "facts", "expected"), KEY_CASES, ids=[f"{c[0]}->{c[2]}" for c in KEY_CASES])
def test_a_key_names_what_a_bucket_counts_by(key: str, facts: dict[str, Any], expected: str) -> None:
    policy = compile_policy(f"""
        version: 1
        keys: {{subnet: [prefix]}}
        rules:
          - {{name: r, key: {key}, limits: 1/s}}
    """)
    spec = policy.rules[0].key
    assert spec is not None
    assert spec.func(DecisionContext(request(**facts))) == expected


def test_a_key_value_from_a_header_is_truncated() -> None:
    policy = compile_policy("version: 1\nrules:\n  - {name: r, key: 'header:x-k', limits: 1/s}\n")
    spec = policy.rules[0].key
    assert spec is not None
    assert spec.func(DecisionContext(request(headers=[("x-k", "a" * 10_000)]))) == "header:x-k=" + "a" * 256


def test_ip_prefix_sets_what_the_prefix_part_groups_by() -> None:
    policy = compile_policy("""
        version: 1
        ip_prefix: {ipv4: 16, ipv6: 48}
        rules:
          - {name: r, key: prefix, limits: 1/s}
    """)
    spec = policy.rules[0].key
    assert spec is not None
    assert spec.func(DecisionContext(request(peer_ip="203.0.113.7"))) == "prefix=203.0.0.0/16"
    assert spec.func(DecisionContext(request(peer_ip="2001:db8:1:2::1"))) == "prefix=2001:db8:1::/48"


async def test_addresses_in_one_prefix_share_one_budget() -> None:
    engine, _ = make_engine("""
        version: 1
        rules:
          - {name: subnet, key: prefix, limits: "1/s burst 1"}
    """)
    a = await engine.decide(request(peer_ip="203.0.113.1"))
    b = await engine.decide(request(peer_ip="203.0.113.2"))
    c = await engine.decide(request(peer_ip="203.0.113.3"))
    d = await engine.decide(request(peer_ip="203.0.114.1"))
    assert [x.action for x in (a, b, c, d)] == [Action.ALLOW, Action.ALLOW, Action.THROTTLE, Action.ALLOW]


async def test_a_composed_key_separates_api_keys_within_a_prefix() -> None:
    engine, _ = make_engine("""
        version: 1
        rules:
          - {name: api, key: prefix+header:x-api-key, limits: "1/s burst 0"}
    """)
    k1 = request(peer_ip="203.0.113.1", headers=[("x-api-key", "one")])
    k2 = request(peer_ip="203.0.113.2", headers=[("x-api-key", "two")])
    k1_again = request(peer_ip="203.0.113.3", headers=[("x-api-key", "one")])
    assert [(await engine.decide(f)).action for f in (k1, k2, k1_again)] == [Action.ALLOW, Action.ALLOW,
                                                                             Action.THROTTLE]


# -- trusted proxies ------------------------------------------------------------------------------

TRUSTED = CidrSet.of(["10.0.0.0/8", "2001:db8:ffff::/48"])


def test_an_untrusted_peer_is_the_client_whatever_its_headers_say() -> None:
    assert resolve_client_ip("198.51.100.7", ["1.2.3.4"], ["for=5.6.7.8"], TRUSTED) == "198.51.100.7"


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert resolve_client_ip("10.0.0.1", ["1.2.3.4"], [], CidrSet.of([])) == "10.0.0.1"


def test_a_trusted_peer_with_no_forwarding_header_is_the_client() -> None:
    assert resolve_client_ip("10.0.0.1", [], [], TRUSTED) == "10.0.0.1"


@pytest.mark.parametrize(
    ("xff", "client"),
    [
        (["192.0.2.60"], "192.0.2.60"),
        (["192.0.2.60, 10.0.0.2"], "192.0.2.60"),  # past a trusted hop
        (["6.6.6.6, 192.0.2.60, 10.0.0.2"], "192.0.2.60"),  # the spoofed left part is ignored
        (["6.6.6.6", "192.0.2.60, 10.0.0.3"], "192.0.2.60"),  # several header lines are one chain
        (["10.0.0.9, 10.0.0.2"], "10.0.0.9"),  # all trusted: the leftmost
        (["garbage, 192.0.2.60"], "192.0.2.60"),
        (["192.0.2.60, garbage, 10.0.0.2"], "10.0.0.2"),  # nothing left of garbage is believed
        (["  192.0.2.60 ,, "], "192.0.2.60"),
        (["::ffff:192.0.2.60"], "192.0.2.60"),
        (["2001:db8::1, 2001:db8:ffff::2"], "2001:db8::1"),
    ],
)
def test_x_forwarded_for_is_walked_from_the_right_past_trusted_hops(xff: list[str], client: str) -> None:
    assert resolve_client_ip("10.0.0.1", xff, [], TRUSTED) == client


@pytest.mark.parametrize(
    ("forwarded", "client"),
    [
        (["for=192.0.2.60;proto=http;by=203.0.113.43"], "192.0.2.60"),
        (['for="[2001:db8:cafe::17]:4711"'], "2001:db8:cafe::17"),
        (['For="192.0.2.43:47011"'], "192.0.2.43"),
        (["for=192.0.2.43, for=198.51.100.17"], "198.51.100.17"),
        (["for=198.51.100.17, for=10.0.0.5"], "198.51.100.17"),
        (["for=192.0.2.43", "for=10.0.0.5;proto=https"], "192.0.2.43"),
        (["for=_hidden, for=10.0.0.5"], "10.0.0.5"),
        (["proto=https"], "10.0.0.1"),
    ],
)
def test_forwarded_rfc7239_is_used_when_there_is_no_x_forwarded_for(forwarded: list[str], client: str) -> None:
    assert resolve_client_ip("10.0.0.1", [], forwarded, TRUSTED) == client


def test_x_forwarded_for_wins_over_forwarded() -> None:
    assert resolve_client_ip("10.0.0.1", ["192.0.2.1"], ["for=192.0.2.2"], TRUSTED) == "192.0.2.1"


@pytest.mark.parametrize(
    ("xff", "forwarded"),
    [
        ([", ".join(["6.6.6.6"] * 70) + ", 192.0.2.60"], []),
        (["6.6.6.6"] * 70 + ["192.0.2.60"], []),
        (["1" * 9000 + ", 192.0.2.60"], []),
        (["x" * 9000, "192.0.2.60"], []),
        (["\x00garbage;;;,,," * 600 + ", 192.0.2.60, 10.0.0.7"], []),
        ([], [", ".join(["for=6.6.6.6"] * 70) + ", for=192.0.2.60"]),
        ([], ["for=" + "1" * MAX_FORWARDED_BYTES + ", for=192.0.2.60"]),
    ],
    ids=["xff-hops", "xff-lines", "xff-bytes", "xff-bytes-lines", "xff-garbage", "forwarded-hops", "forwarded-bytes"],
)
def test_a_stuffed_forwarding_chain_resolves_to_the_address_our_proxy_appended(xff: list[str],
                                                                              forwarded: list[str]) -> None:
    # whatever a client writes left of it, the hop our trusted proxy appended is the client
    assert resolve_client_ip("10.0.0.1", xff, forwarded, TRUSTED) == "192.0.2.60"


def test_a_chain_of_trusted_hops_longer_than_the_limit_stops_at_the_last_hop_read() -> None:
    chain = ", ".join(f"10.0.0.{i}" for i in range(MAX_FORWARDED_HOPS + 10))
    assert resolve_client_ip("10.0.0.1", [chain], [], TRUSTED) == "10.0.0.10"


def test_a_chain_longer_than_the_byte_limit_is_read_from_its_right_end_only() -> None:
    chain = "192.0.2.1, " + "10.0.0.2, " * (MAX_FORWARDED_BYTES // 10 + 5) + "10.0.0.3"
    assert resolve_client_ip("10.0.0.1", [chain], [], TRUSTED).startswith("10.0.0.")


@pytest.mark.parametrize(("entry", "client"), [("192.0.2.60:4711", "192.0.2.60"),
                                                ("[2001:db8::7]:4711", "2001:db8::7")])
def test_a_hop_with_a_port_is_its_address(entry: str, client: str) -> None:
    assert resolve_client_ip("10.0.0.1", [entry], [], TRUSTED) == client


@pytest.mark.parametrize(("hop", "address", "client"), [
    ("::0%=", "::0%=", "::"), ("[fe80::1%eth0]:4711", "fe80::1%eth0", "fe80::1"),
    ("2001:db8::7%25", "2001:db8::7%25", "2001:db8::7"), ("::ffff:192.0.2.9%x", "::ffff:192.0.2.9%x", "192.0.2.9")])
def test_a_zone_index_is_not_part_of_the_client(hop: str, address: str, client: str) -> None:
    """One address is one client, whatever interface name follows it (found by fuzzing: `::0%=`
    resolved to `::%=`, and its /64 to `::%=/64`, keys of their own)."""
    assert resolve_client_ip("10.0.0.1", [hop], [], TRUSTED) == client  # a hop of the chain
    assert resolve_client_ip(address, [], [], TRUSTED) == client  # the socket's peer
    assert ip_prefix(address) == ip_prefix(client)


def test_a_chain_of_exactly_the_limit_is_accepted() -> None:
    chain = ", ".join(["192.0.2.1"] * MAX_FORWARDED_HOPS)
    assert resolve_client_ip("10.0.0.1", [chain], [], TRUSTED) == "192.0.2.1"


def test_an_absurd_chain_from_an_untrusted_peer_is_simply_ignored() -> None:
    chain = ", ".join(["192.0.2.1"] * 1000)
    assert resolve_client_ip("198.51.100.7", [chain], [], TRUSTED) == "198.51.100.7"


# -- reloading ------------------------------------------------------------------------------------

SWAP = """
    version: 1
    rules:
      - {name: per-ip, limits: "%s"}
"""


async def test_swap_keeps_the_state_of_unchanged_buckets() -> None:
    # given a client that used up its burst
    engine, _ = make_engine(SWAP % "1/m burst 1")
    assert [d.action for d in await decide_n(engine, 3)][-1] is Action.THROTTLE
    # when a policy with the same rule, plus another one, is swapped in
    grown = textwrap.dedent(SWAP % "1/m burst 1") + "  - {name: new, match: {path: /x}, action: block}\n"
    engine.swap(compile_policy(grown))
    # then the client is still over its limit
    assert (await engine.decide(request())).action is Action.THROTTLE


async def test_swap_drops_the_state_of_changed_buckets() -> None:
    engine, _ = make_engine(SWAP % "1/m burst 1")
    await decide_n(engine, 3)
    engine.swap(compile_policy(SWAP % "2/m burst 1"))
    assert (await engine.decide(request())).action is Action.ALLOW
    assert engine.store.tracked_keys() == 1


async def test_swap_drops_monitored_bucket_state_of_changed_rules() -> None:
    engine, _ = make_engine("version: 1\nrules:\n  - {name: m, limits: '1/m', monitor: true}\n")
    await engine.decide(request())
    assert engine.monitor_store.tracked_keys() == 1
    engine.swap(compile_policy("version: 1\nrules:\n  - {name: m, limits: '2/m', monitor: true}\n"))
    assert engine.monitor_store.tracked_keys() == 0

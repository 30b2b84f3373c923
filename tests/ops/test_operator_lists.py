"""The engine honours what operators put in the store by hand: a ban on any key the policy knows,
and an allow-list entry that outranks every rule, ban and limit."""
from __future__ import annotations

from scrapeshield.clock import FakeClock
from scrapeshield.decision import Action
from scrapeshield.engine import Engine
from scrapeshield.facts import RequestFacts
from scrapeshield.policy.compiler import compile_bytes
from scrapeshield.store.memory import MemoryStore

NOW = 1_800_000_000.0
POLICY = b"""\
version: 1
rules:
  - name: deny-admin
    match: {path: ["/admin/*"]}
    action: block
  - name: records
    match: {path: ["/api/*"]}
    limits: ["2/m burst 1"]
"""


def engine() -> tuple[Engine, MemoryStore]:
    store = MemoryStore()
    return Engine(compile_bytes(POLICY, "p.yaml"), store, FakeClock(NOW)), store


def request(path: str = "/", ip: str = "203.0.113.7") -> RequestFacts:
    return RequestFacts(peer_ip=ip, path=path, headers=(("User-Agent", "test"),))


async def test_a_manual_ban_on_an_address_refuses_it_even_where_no_rule_bans() -> None:
    e, store = engine()
    await store.ban("ip=203.0.113.7", NOW + 60, NOW, "scraper")
    decision = await e.decide(request())
    assert (decision.action, decision.rule, decision.key) == (Action.BLOCK, "ban", "ip=203.0.113.7")
    assert (await e.decide(request(ip="203.0.113.8"))).action is Action.ALLOW


async def test_a_manual_ban_on_a_network_holds_every_address_in_it() -> None:
    e, store = engine()
    await store.ban("prefix=203.0.113.0/24", NOW + 60, NOW, "hosting range")
    assert (await e.decide(request(ip="203.0.113.99"))).rule == "ban"


async def test_an_unban_serves_the_key_again() -> None:
    e, store = engine()
    await store.ban("ip=203.0.113.7", NOW + 60, NOW)
    assert await store.unban("ip=203.0.113.7")
    assert (await e.decide(request())).action is Action.ALLOW


async def test_an_allow_list_entry_outranks_block_rules_limits_and_bans() -> None:
    e, store = engine()
    await store.allow("ip=203.0.113.7", NOW + 60, NOW, "partner crawler")
    await store.ban("prefix=203.0.113.0/24", NOW + 60, NOW)
    assert (await e.decide(request("/admin/x"))).rule == "allow-list"
    decisions = [await e.decide(request(f"/api/{i}")) for i in range(5)]
    assert {(d.action, d.rule) for d in decisions} == {(Action.ALLOW, "allow-list")}
    assert (await e.decide(request("/admin/x", ip="203.0.113.8"))).rule == "ban"  # its neighbour is not allowed

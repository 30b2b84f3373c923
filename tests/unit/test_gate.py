"""The runtime's clearance check (the engine's ClearanceCheck): what it verifies and counts."""
from __future__ import annotations

from pathlib import Path

from scrapeshield.challenge.keys import KeyRing
from scrapeshield.clock import FakeClock
from scrapeshield.facts import RequestFacts
from scrapeshield.policy.compiler import compile_file
from scrapeshield.runtime.gate import ChallengeGate
from scrapeshield.store.memory import MemoryStore

DEFAULT = str(Path(__file__).resolve().parents[2] / "policies" / "default.yaml")


def _gate() -> ChallengeGate:
    return ChallengeGate(KeyRing((b"k" * 32,)), compile_file(DEFAULT), MemoryStore(), FakeClock(1_800_000_000.0))


def _facts(cookie: str) -> RequestFacts:
    return RequestFacts(peer_ip="198.51.100.7", path="/people/5", headers=(("cookie", cookie),))


def test_a_request_without_a_clearance_cookie_is_not_cleared_and_counts_nothing() -> None:
    # the engine asks for every record a `records-per-session` limit matches, cleared or not
    gate = _gate()
    assert not gate.cleared(_facts("shield_session=abc; theme=dark"), "records-per-session")
    assert sum(gate.service.counters.values()) == 0


def test_a_clearance_cookie_that_does_not_verify_is_refused_and_counted() -> None:
    gate = _gate()
    assert not gate.cleared(_facts("shield_session=abc; shield_clearance=c.x.y.z"), "records-per-session")
    assert sum(n for k, n in gate.service.counters.items() if k.startswith("cookie.")) == 1

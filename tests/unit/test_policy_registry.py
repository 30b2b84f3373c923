"""The policy language's extension points: one registry object handed to the compiler."""
from __future__ import annotations

import textwrap
from collections.abc import Mapping

import pytest
from yaml.nodes import Node

from scrapeshield.clock import FakeClock
from scrapeshield.context import DecisionContext
from scrapeshield.decision import Action
from scrapeshield.engine import Engine
from scrapeshield.extensions import new_standard_registry, standard_registry
from scrapeshield.facts import RequestFacts
from scrapeshield.policy.compiler import compile_bytes
from scrapeshield.policy.errors import PolicyInvalid
from scrapeshield.policy.model import CompiledPolicy, KeyFunc, Predicate
from scrapeshield.policy.nodes import Reader
from scrapeshield.policy.registry import CompileEnv, KeyContext, Registry, Section, SectionContext
from scrapeshield.store.memory import MemoryStore


def _compile(text: str, registry: Registry | None = None) -> CompiledPolicy:
    return compile_bytes(textwrap.dedent(text).encode(), "test.yaml", registry)


def _odd_path(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    want = r.boolean(node, "odd_path")
    return lambda c: (len(c.facts.path) % 2 == 1) is want


def _path_length(arg: str, kctx: KeyContext) -> KeyFunc:
    return lambda c: str(len(c.facts.path))


def _compile_greeting(sc: SectionContext, node: Node) -> str | None:
    return sc.reader.string(node, "greeting")


GREETING: Section[str] = Section("greeting", _compile_greeting)


def _curl_signal(c: DecisionContext, policy: CompiledPolicy) -> Mapping[str, float]:
    return {"curl": 1.0} if c.facts.user_agent.startswith("curl/") else {}


def extended() -> Registry:
    registry = new_standard_registry()
    registry.add_condition("odd_path", _odd_path)
    registry.add_key_part("path_length", _path_length)
    registry.add_section(GREETING)
    registry.add_signal_source(_curl_signal)
    registry.add_signals(["curl"])
    return registry


def test_a_package_adds_a_condition_key_part_section_and_signal_in_one_place() -> None:
    policy = _compile("""
        version: 1
        greeting: hello
        rules:
          - {name: odd, match: {odd_path: true}, key: path_length, limits: 1/m burst 0}
        scores:
          - {name: tools, weights: {curl: 5}, thresholds: [{at: 5, action: block}]}
    """, extended())
    assert policy.section(GREETING) == "hello"
    assert policy.rules[0].key is not None and policy.rules[0].key.parts == ("path_length",)


async def test_the_extensions_take_part_in_decisions() -> None:
    policy = _compile("""
        version: 1
        scores: [{name: tools, weights: {curl: 5}, thresholds: [{at: 5, action: block}]}]
        rules: [{name: odd, match: {odd_path: true}, action: drop}]
    """, extended())
    engine = Engine(policy, MemoryStore(), FakeClock())
    odd = await engine.decide(RequestFacts(peer_ip="192.0.2.1", path="/ab"))
    curl = await engine.decide(RequestFacts(peer_ip="192.0.2.2", path="/a", headers=[("User-Agent", "curl/8")]))
    assert (odd.rule, odd.action) == ("odd", Action.DROP)
    assert (curl.rule, curl.action) == ("score:tools", Action.BLOCK)


def test_the_standard_language_does_not_know_another_package_s_extensions() -> None:
    with pytest.raises(PolicyInvalid) as exc:
        _compile("version: 1\ngreeting: hello\n")
    assert "unknown field 'greeting'" in str(exc.value)


def test_a_name_is_registered_once() -> None:
    registry = new_standard_registry()
    with pytest.raises(ValueError, match="condition 'path' is registered twice"):
        registry.add_condition("path", _odd_path)
    with pytest.raises(ValueError, match="key part 'ip' is registered twice"):
        registry.add_key_part("ip", _path_length)
    with pytest.raises(ValueError, match="section 'goodbots' is registered twice"):
        registry.add_section(Section("goodbots", _compile_greeting))


def test_good_bots_and_detectors_are_sections_like_any_other() -> None:
    assert {"goodbots", "detectors"} <= set(standard_registry().sections)
    bare = standard_registry().without_sections(["goodbots"])
    with pytest.raises(PolicyInvalid) as exc:
        _compile("version: 1\ngoodbots: goodbots\n", bare)
    assert "unknown field 'goodbots'" in str(exc.value)

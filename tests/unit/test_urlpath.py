"""The canonical path rules match: one spelling for every way upstreams route to the same handler."""
from __future__ import annotations

import textwrap

import pytest

from scrapeshield.engine import Engine
from scrapeshield.facts import RequestFacts
from scrapeshield.policy.compiler import compile_bytes
from scrapeshield.store.memory import MemoryStore
from scrapeshield.urlpath import canonical_path


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("/user/7", "/user/7"),
        ("/%75ser/7", "/user/7"),
        ("/%75%73%65%72/%37", "/user/7"),
        ("/static/../user/7", "/user/7"),
        ("/static/%2e%2e/user/7", "/user/7"),
        ("/static/%2E%2E%2Fuser/7", "/user/7"),
        ("//user//7", "/user/7"),
        ("/./user/./7", "/user/7"),
        ("/user%2F7", "/user/7"),
        ("/../../user/7", "/user/7"),
        ("/user/7/", "/user/7/"),
        ("/user/7/.", "/user/7/"),
        ("/user/7/..", "/user/"),
        ("/", "/"),
        ("", "/"),
        ("user/7", "/user/7"),
        ("*", "*"),
        ("/User/7", "/User/7"),
        ("/a%3ab", "/a%3Ab"),
        ("/a%25b", "/a%25b"),
        ("/a%2575ser", "/a%2575ser"),
        ("/100%", "/100%25"),
        ("/%2%46", "/%252F"),
        ("/a%zz", "/a%25zz"),
        ("/caf\xe9", "/caf\xe9"),
    ],
)
def test_every_spelling_has_one_canonical_form(raw: str, canonical: str) -> None:
    assert canonical_path(raw) == canonical


@pytest.mark.parametrize("raw", ["/%2%46", "/%%7575", "/a/%2e%2e%2f%2e%2e/b", "/%252e%252e/x", "//%2F/./.."])
def test_the_canonical_form_is_a_fixed_point(raw: str) -> None:
    once = canonical_path(raw)
    assert canonical_path(once) == once


def test_facts_keep_the_raw_path_and_match_on_the_canonical_one() -> None:
    facts = RequestFacts(peer_ip="192.0.2.1", path="/static/../%75ser//7")
    assert (facts.path, facts.raw_path) == ("/user/7", "/static/../%75ser//7")


def _policy(rules: str):  # type: ignore[no-untyped-def]
    return compile_bytes(("version: 1\nrules:\n" + textwrap.dedent(rules)).encode(), "t.yaml")


@pytest.mark.parametrize("spelling", ["/user/{n}", "/%75ser/{n}", "/static/../user/{n}", "//user//{n}",
                                      "/user%2F{n}", "/./user/{n}"])
async def test_a_limit_on_a_path_holds_for_every_spelling(spelling: str) -> None:
    # given a rule on /user/* with a burst of 3
    engine = Engine(_policy("""
        - {name: records, match: {path: /user/*}, limits: "1/m burst 2", exceed: block}
    """), MemoryStore())
    # when one client asks for 10 records in this spelling
    decisions = [await engine.decide(RequestFacts(peer_ip="192.0.2.9", path=spelling.format(n=n)))
                 for n in range(10)]
    # then it gets the same 3 as with the plain spelling
    assert sum(d.effective.value == "allow" for d in decisions) == 3


async def test_raw_path_conditions_see_the_path_as_sent() -> None:
    engine = Engine(_policy("""
        - {name: odd-spelling, match: {raw_path_regex: '%[0-9a-fA-F]{2}|//|/\\.'}, action: block}
        - {name: raw-glob, match: {raw_path: /exact/*}, action: block}
    """), MemoryStore())
    assert (await engine.decide(RequestFacts(peer_ip="192.0.2.9", path="/%75ser/1"))).rule == "odd-spelling"
    assert (await engine.decide(RequestFacts(peer_ip="192.0.2.9", path="/user/1"))).rule == "default"
    assert (await engine.decide(RequestFacts(peer_ip="192.0.2.9", path="/exact/1"))).rule == "raw-glob"
    assert (await engine.decide(RequestFacts(peer_ip="192.0.2.9", path="/x/../exact/1"))).rule == "odd-spelling"

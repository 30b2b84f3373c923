"""Fingerprints in policies: match conditions, key parts, the `goodbots` section, score signals.

Importing this module registers everything with the policy compiler's registries.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from yaml.nodes import Node, ScalarNode

from ..facts import RequestFacts
from ..policy.keys import KeyContext, key_part
from ..policy.matchers import CompileEnv, condition
from ..policy.model import KeyFunc, Predicate
from ..policy.nodes import Reader
from . import FIELDS, SIGNALS, TLS_FAMILIES, UA_KINDS, ClientFingerprint, GoodBotRegistry, fingerprint_request

_REGISTRIES: dict[tuple[str, float], GoodBotRegistry] = {}


def fingerprint_of(f: RequestFacts) -> ClientFingerprint:
    """The request's fingerprint, computed once per request and kept on the facts.

    Good-bot verification depends on the policy's registry, so it is not part of this cached
    value: see `good_bot_of`.
    """
    fp = f._fingerprint
    if fp is None:
        fp = fingerprint_request(
            [name for name, _ in f.headers], f.header_map, http_version=f.http_version, alpn=f.alpn,
            is_tls=f.is_tls, tls=f.tls,
        )
        f._fingerprint = fp
    return fp  # type: ignore[no-any-return]


def good_bot_of(f: RequestFacts, goodbots: GoodBotRegistry | None) -> str | None:
    """The verified good bot: the UA claims it AND the client IP is in its published ranges."""
    if goodbots is None:
        return None
    return goodbots.verify(f.header_map.get("user-agent"), f.client_ip)


def compile_goodbots(r: Reader, node: Node, policy_dir: str) -> GoodBotRegistry | None:
    """`goodbots: goodbots` -- a directory (relative to the policy) holding bots.yaml and ranges files."""
    rel = r.string(node, "goodbots")
    if rel is None:
        return None
    path = os.path.join(policy_dir, rel)
    try:
        mtime = os.stat(os.path.join(path, "bots.yaml")).st_mtime
        key = (os.path.realpath(path), mtime)
        registry = _REGISTRIES.get(key)
        if registry is None:
            registry = GoodBotRegistry.load(path)
            _REGISTRIES.clear()
            _REGISTRIES[key] = registry
        return registry
    except (OSError, ValueError) as exc:
        r.error(node, f"goodbots: cannot load {rel!r}: {exc}")
        return None


# -- match conditions -----------------------------------------------------------------------
def _choices(r: Reader, node: Node, what: str, allowed: frozenset[str] | None) -> frozenset[str]:
    values: list[str] = []
    for item in r.sequence(node, what):
        value = r.string(item, what)
        if value is None:
            continue
        if allowed is not None and value not in allowed:
            r.error(item, f"{what}: unknown value {value!r} (expected one of: {', '.join(sorted(allowed))})")
        values.append(value)
    return frozenset(values)


def _field_condition(name: str, field: str, allowed: frozenset[str] | None = None) -> None:
    @condition(name)
    def compile_(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
        wanted = _choices(r, node, name, allowed)
        if not wanted:
            return None
        return lambda f: fingerprint_of(f).field(field) in wanted


_field_condition("ua_class", "ua_class", frozenset(UA_KINDS))
_field_condition("ua_family", "ua_family")
_field_condition("tls_family", "tls_family", frozenset(TLS_FAMILIES) | {"-"})
_field_condition("ja3", "ja3")
_field_condition("ja4", "ja4")
_field_condition("httpsig", "httpsig")
_field_condition("crawler", "crawler")


@condition("signal")
def _c_signal(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    """Any of the named consistency signals fired."""
    wanted = _choices(r, node, "signal", frozenset(SIGNALS))
    if not wanted:
        return None
    return lambda f: not wanted.isdisjoint(fingerprint_of(f).signals)


@condition("good_bot")
def _c_good_bot(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    """`good_bot: true` (any verified bot), `false`, or a list of bot names. Needs `goodbots:`."""
    if env.goodbots is None:
        r.error(node, "good_bot needs a `goodbots:` directory in the policy (the published crawler IP ranges)")
        return None
    goodbots = env.goodbots
    if isinstance(node, ScalarNode) and node.value in ("true", "false", "True", "False"):
        want = node.value.lower() == "true"
        return lambda f: (good_bot_of(f, goodbots) is not None) is want
    names = _choices(r, node, "good_bot", frozenset(b.name for b in goodbots.bots))
    return lambda f: good_bot_of(f, goodbots) in names


# -- key parts ------------------------------------------------------------------------------------
def _field_part(field: str) -> None:
    @key_part(field)
    def make(arg: str, ctx: KeyContext) -> KeyFunc:
        return lambda f: fingerprint_of(f).field(field)


for _field in sorted(FIELDS - {"good_bot"}):
    _field_part(_field)


# -- score signals ----------------------------------------------------------------------------------
def fingerprint_signals(f: RequestFacts, policy: Any) -> Mapping[str, float]:
    """Signals a score can weigh: each consistency signal by name, `ua_class:<kind>`,
    `tls_family:<family>`, `good_bot` (verified) and `unverified_crawler` (claims a crawler the
    registry cannot vouch for -- a UA alone never earns trust)."""
    fp = fingerprint_of(f)
    out = dict.fromkeys(fp.signals, 1.0)
    out["ua_class:" + fp.ua.kind] = 1.0
    if fp.tls is not None:
        out["tls_family:" + fp.tls.tls_family] = 1.0
    if good_bot_of(f, policy.goodbots):
        out["good_bot"] = 1.0
    elif fp.ua.kind == "crawler":
        out["unverified_crawler"] = 1.0
    return out

"""Fingerprints in policies: match conditions, key parts, the `goodbots` section, score signals.

`register(registry)` adds them all to the policy language (see `policy/registry.py`).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from yaml.nodes import Node, ScalarNode

from .. import builtin
from ..context import DecisionContext
from ..memo import remember
from ..policy.model import CompiledPolicy, KeyFunc, Predicate
from ..policy.nodes import Reader
from ..policy.registry import CompileEnv, ConditionCompiler, KeyContext, Registry, Section, SectionContext
from . import FIELDS, SIGNALS, TLS_FAMILIES, UA_KINDS, ClientFingerprint, GoodBotRegistry, field_getter

_REGISTRIES: dict[tuple[str, float], GoodBotRegistry] = {}


def good_bot_of(c: DecisionContext, goodbots: GoodBotRegistry | None) -> str | None:
    """The verified good bot: the UA claims it AND the client IP is in its published ranges.
    Asked by the `good_bot` condition and the `good_bot` signal alike: answered once per decision."""
    if goodbots is None:
        return None
    known = c.good_bot
    if known is not None and known[0] is goodbots:
        return known[1]
    f = c.facts
    bot = goodbots.verify_agent(f.header_map.get("user-agent"), f.client_ip)
    c.good_bot = (goodbots, bot)
    return bot


def _compile_goodbots(sc: SectionContext, node: Node) -> GoodBotRegistry | None:
    """`goodbots: builtin` (the ranges shipped in the package), or a directory relative to the
    policy holding bots.yaml and ranges files."""
    r = sc.reader
    rel = r.string(node, "goodbots")
    if rel is None:
        return None
    path = str(builtin.goodbots_dir()) if rel == builtin.GOODBOTS else os.path.join(sc.policy_dir, rel)
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


GOODBOTS: Section[GoodBotRegistry] = Section("goodbots", _compile_goodbots)


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


def _field_condition(name: str, field: str, allowed: frozenset[str] | None = None) -> ConditionCompiler:
    def compile_(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
        wanted = _choices(r, node, name, allowed)
        if not wanted:
            return None
        return lambda c: c.fingerprint.field(field) in wanted
    return compile_


def _c_signal(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    """Any of the named consistency signals fired."""
    wanted = _choices(r, node, "signal", frozenset(SIGNALS))
    if not wanted:
        return None
    return lambda c: not wanted.isdisjoint(c.fingerprint.signals)


def _c_good_bot(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    """`good_bot: true` (any verified bot), `false`, or a list of bot names. Needs `goodbots:`."""
    goodbots = env.section(GOODBOTS)
    if goodbots is None:
        r.error(node, "good_bot needs a `goodbots:` directory in the policy (the published crawler IP ranges)")
        return None
    if isinstance(node, ScalarNode) and node.value in ("true", "false", "True", "False"):
        want = node.value.lower() == "true"
        return lambda c: (good_bot_of(c, goodbots) is not None) is want
    names = _choices(r, node, "good_bot", frozenset(b.name for b in goodbots.bots))
    return lambda c: good_bot_of(c, goodbots) in names


# -- key parts ------------------------------------------------------------------------------------
def _field_part(field: str) -> KeyFunc:
    get = field_getter(field)  # e.g. the `stack` key's ja4 and ua_class: no lookup per request
    return lambda c: get(c.fingerprint)


# -- score signals ----------------------------------------------------------------------------------
def fingerprint_signals(c: DecisionContext, policy: CompiledPolicy) -> Mapping[str, float]:
    """Signals a score can weigh: each consistency signal by name, `ua_class:<kind>`,
    `tls_family:<family>`, `good_bot` (verified) and `unverified_crawler` (claims a crawler the
    registry cannot vouch for -- a UA alone never earns trust). Read-only: may be shared."""
    fp = c.fingerprint
    known = _PARTS.get(id(fp))
    if known is None or known[0] is not fp:
        known = _fingerprint_part(fp)
    base = known[1]
    if good_bot_of(c, policy.section(GOODBOTS)):
        out = dict(base)
        out["good_bot"] = 1.0
        return out
    if known[2]:
        out = dict(base)
        out["unverified_crawler"] = 1.0
        return out
    return base


# The part of `fingerprint_signals` that is the fingerprint's alone, and whether its UA claims a
# crawler, per fingerprint object (the fingerprint memo hands one client the same object request
# after request). Keyed by identity, the object held in the entry so its id cannot be reused while
# remembered; bounded, emptied when full.
_PARTS: dict[int, tuple[ClientFingerprint, dict[str, float], bool]] = {}
_PARTS_MAX = 8192


def _fingerprint_part(fp: ClientFingerprint) -> tuple[ClientFingerprint, dict[str, float], bool]:
    out = dict.fromkeys(fp.signals, 1.0)
    out["ua_class:" + fp.ua.kind] = 1.0
    if fp.tls is not None:
        out["tls_family:" + fp.tls.tls_family] = 1.0
    return remember(_PARTS, id(fp), (fp, out, fp.ua.kind == "crawler"), _PARTS_MAX)


def register(registry: Registry) -> None:
    """Fingerprint conditions, key parts, the `goodbots` section and the fingerprint signals."""
    registry.add_section(GOODBOTS)
    for name, allowed in (("ua_class", frozenset(UA_KINDS)), ("ua_family", None),
                          ("tls_family", frozenset(TLS_FAMILIES) | {"-"}), ("ja3", None), ("ja4", None),
                          ("httpsig", None), ("crawler", None)):
        registry.add_condition(name, _field_condition(name, name, allowed))
    registry.add_condition("signal", _c_signal)
    registry.add_condition("good_bot", _c_good_bot)
    for field in sorted(FIELDS - {"good_bot"}):
        registry.add_key_part(field, _part_factory(field), per_fingerprint=True)
    registry.add_signal_source(fingerprint_signals)
    registry.add_signals([*sorted(SIGNALS), *(f"ua_class:{k}" for k in sorted(UA_KINDS)),
                          *(f"tls_family:{f}" for f in sorted(TLS_FAMILIES)), "unverified_crawler"])
    registry.add_signals(["good_bot"], needs_section=GOODBOTS.name)


def _part_factory(field: str) -> Callable[[str, KeyContext], KeyFunc]:
    return lambda arg, ctx: _field_part(field)

"""Sessions in policies: the `session:` section, the `session` / `session_or:PART` key parts,
the `session`, `session_signal`, `document` and `record` match conditions and the session signals.

`register(registry)` adds them all to the policy language (see `policy/registry.py`).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from yaml.nodes import Node

from ..context import DecisionContext
from ..policy.model import KeyFunc, Predicate
from ..policy.nodes import Reader
from ..policy.registry import CompileEnv, KeyContext, KeyPart, Registry, Section, SectionContext
from .difficulty import DifficultyCurve
from .state import COUNTER_SIGNALS, SIGNALS, SessionContext, SessionSettings

SECTION_FIELDS = ("cookie_name", "ttl", "fresh_for", "half_life", "refuser_at", "roaming_at", "burst_net_at",
                  "burst_stack_at", "record_budget", "fresh_record_budget", "history_assets", "difficulty")
DIFFICULTY_FIELDS = ("base", "maximum", "stack_unit", "stack_cap", "cold_stack_cap", "net_unit", "net_cap",
                     "repeat_bits")
STATES = ("absent", "fresh", "established")
COUNTER = frozenset(COUNTER_SIGNALS)
# CompiledPolicy.needs: the rules name a counter signal, so the engine reads the session counters
# before matching (one more store batch for the requests that carry counters; none otherwise).
SESSION_COUNTERS = "session_counters"


def session_of(c: DecisionContext) -> SessionContext | None:
    return c.session


# -- key parts ------------------------------------------------------------------------------------
def _session(arg: str, kctx: KeyContext) -> KeyFunc:
    """The id of the valid session cookie the request presents; `-` without one."""
    def key(c: DecisionContext) -> str:
        s = c.session
        sid = s.id if s is not None else None
        return sid if sid is not None else "-"
    return key


def _session_or(parts: Mapping[str, KeyPart]) -> Any:
    def factory(arg: str, kctx: KeyContext) -> KeyFunc:
        """`session_or:ip`: the session id, or (marked `~`) the named part's value without a session."""
        kind, _, inner = arg.partition(":")
        fallback = parts[kind].factory(inner, kctx)

        def key(c: DecisionContext) -> str:
            s = c.session
            sid = s.id if s is not None else None
            return sid if sid is not None else "~" + fallback(c)
        return key
    return factory


def _fallback_check(parts: Mapping[str, KeyPart]) -> Any:
    def check(arg: str) -> str | None:
        """Why `session_or:<arg>` is not a valid key part, or None."""
        kind, _, inner = arg.partition(":")
        if kind not in parts or kind.startswith("session"):
            return f"session_or: unknown fallback part {arg!r} (e.g. ip, prefix, header:NAME)"
        if parts[kind].needs_argument != bool(inner):
            return f"session_or: fallback part {arg!r} {'needs a name' if not inner else 'takes no argument'}"
        return None
    return check


# -- conditions ---------------------------------------------------------------------------------------
def _choices(r: Reader, node: Node, what: str, allowed: tuple[str, ...]) -> frozenset[str]:
    out: set[str] = set()
    for item in r.strings(node, what):
        if item not in allowed:
            r.error(node, f"{what}: unknown value {item!r} (expected one of: {', '.join(allowed)})")
        out.add(item)
    return frozenset(out)


def _c_session(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    """`session: [absent, fresh]` -- the request's session state. Without a `session:` section
    every request is `absent`."""
    wanted = _choices(r, node, "session", STATES)
    if not wanted:
        return None

    def pred(c: DecisionContext) -> bool:
        ctx = c.session
        return (ctx.state if ctx is not None else "absent") in wanted
    return pred


def _c_session_signal(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    """Any of the named session signals. Event signals come from the request and its cookie;
    counter signals (levels) from the session counters, which a policy whose rules name one reads
    in a store batch of their own before the rules are matched (docs/sessions.md)."""
    wanted = _choices(r, node, "session_signal", SIGNALS)
    if not wanted:
        return None
    events, levels = wanted - COUNTER, wanted & COUNTER
    if not levels:
        def pred(c: DecisionContext) -> bool:
            ctx = c.session
            return ctx is not None and not events.isdisjoint(ctx.signals)
        return pred
    env.needs.add(SESSION_COUNTERS)

    def pred_levels(c: DecisionContext) -> bool:
        ctx = c.session
        return ctx is not None and (not events.isdisjoint(ctx.signals) or not levels.isdisjoint(c.level_signals))
    return pred_levels


def _c_document(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    """`document: true` -- a page navigation (not an asset, not an API call); needs `session:`."""
    want = r.boolean(node, "document")
    if want is None:
        return None

    def pred(c: DecisionContext) -> bool:
        ctx = c.session
        return (ctx is not None and ctx.is_document) is want
    return pred


def _c_record(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    """`record: true` -- a page navigation to a URL with a numeric id in its path or query
    (`/people/42`, `/profile?id=42`): what harvesters come for, whatever the site calls it."""
    want = r.boolean(node, "record")
    if want is None:
        return None

    def pred(c: DecisionContext) -> bool:
        ctx = c.session
        return (ctx is not None and ctx.is_record) is want
    return pred


def _c_history(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    """`history: true` -- a session with standing: past `fresh_for`, with a person's history (it
    followed a same-site link from a page it fetched, whose assets it loaded); needs `session:`.
    Known after the store is asked: the request that shows the history counts."""
    want = r.boolean(node, "history")
    if want is None:
        return None

    def pred(c: DecisionContext) -> bool:
        ctx = c.session
        return (ctx is not None and ctx.standing) is want
    return pred


# -- the section ---------------------------------------------------------------------------------------
def compile_session(sc: SectionContext, node: Node) -> SessionSettings | None:
    """`session: {ttl: 7d, fresh_for: 1m, ...}` (docs/policy.md); present = sessions on."""
    r = sc.reader
    f = r.mapping(node, "session", SECTION_FIELDS)
    if f is None:
        return None
    kw: dict[str, Any] = {}
    if "cookie_name" in f:
        name = r.string(f["cookie_name"][1], "session.cookie_name")
        if name is not None and not name.replace("_", "").replace("-", "").isalnum():
            r.error(f["cookie_name"][1], "session.cookie_name: letters, digits, '_' or '-' only")
        elif name:
            kw["cookie_name"] = name
    for dur in ("ttl", "fresh_for", "half_life"):
        if dur in f:
            value = r.duration(f[dur][1], f"session.{dur}")
            if value is not None and value <= 0:
                r.error(f[dur][1], f"session.{dur} must be positive")
            elif value is not None:
                kw[dur] = value
    for num in ("refuser_at", "roaming_at", "burst_net_at", "burst_stack_at"):
        if num in f:
            value = r.number(f[num][1], f"session.{num}")
            if value is not None and value <= 0:
                r.error(f[num][1], f"session.{num} must be positive")
            elif value is not None:
                kw[num] = value
    for name in ("record_budget", "fresh_record_budget", "history_assets"):
        if name in f:
            budget = r.integer(f[name][1], f"session.{name}", 0, 1_000_000)
            if budget is not None:
                kw[name] = budget
    if "difficulty" in f:
        dnode = f["difficulty"][1]
        df = r.mapping(dnode, "session.difficulty", DIFFICULTY_FIELDS)
        if df is not None:
            dkw: dict[str, Any] = {}
            for name in ("base", "maximum"):
                if name in df:
                    dkw[name] = r.integer(df[name][1], f"session.difficulty.{name}", 1, 32)
            for name in ("stack_unit", "stack_cap", "cold_stack_cap", "net_unit", "net_cap", "repeat_bits"):
                if name in df:
                    dkw[name] = r.number(df[name][1], f"session.difficulty.{name}")
            if None not in dkw.values():
                try:
                    kw["difficulty"] = DifficultyCurve(**dkw)
                except ValueError as exc:
                    r.error(dnode, f"session.{exc}")
    return SessionSettings(**kw)


SESSION: Section[SessionSettings] = Section("session", compile_session)


def register(registry: Registry) -> None:
    """The `session` section, key parts, conditions and signals."""
    registry.add_section(SESSION)
    registry.add_key_part("session", _session)
    parts = registry.key_parts  # the registry's own table: parts registered later count too
    registry.add_key_part("session_or", _session_or(parts), needs_argument=True, check=_fallback_check(parts))
    registry.add_condition("session", _c_session)
    registry.add_condition("session_signal", _c_session_signal)
    registry.add_condition("document", _c_document)
    registry.add_condition("record", _c_record)
    registry.add_condition("history", _c_history)
    # The signals known before the store is asked (`ctx.session.signals`) are read by the engine's
    # signal stage like the detectors', without a source call; the counter signals come as levels.
    registry.add_signals(SIGNALS, needs_section=SESSION.name)


__all__ = ["SESSION", "SESSION_COUNTERS", "SIGNALS", "compile_session", "register", "session_of"]

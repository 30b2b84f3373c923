"""Match conditions: YAML node -> predicate over a DecisionContext, compiled once.

Each condition is a function registered under its YAML field name (see `register` at the end
and `policy/registry.py`); adding a condition is adding one function and one line in `register`.
A `match:` mapping with several fields means all of them. Predicates read a `DecisionContext`.

Guards: a predicate may carry a `guard` attribute, a frozenset of atoms of which at least one
holds whenever the predicate is true (a necessary condition, never a sufficient one). The engine
uses guards to skip, per request, rules that cannot match; see `guard_of` and the end of this file.
A predicate without a guard is always evaluated.
"""
from __future__ import annotations

import fnmatch
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..netaddr import CidrSet
from ..regexlit import anchored_first_segments
from .model import Predicate
from .nodes import Reader
from .registry import CompileEnv

if TYPE_CHECKING:
    from ..context import DecisionContext
    from .registry import Registry

__all__ = ["CompileEnv", "always", "compile_conditions", "compile_match", "first_segment", "guard_of",
           "is_ua_only", "register"]


def always(c: DecisionContext) -> bool:
    """The predicate of a rule without `match:`."""
    return True


def compile_conditions(r: Reader, node: Node, env: CompileEnv) -> tuple[tuple[str, Predicate], ...] | None:
    """A `match:` mapping as (condition name, predicate) pairs, in the order written."""
    conditions = env.registry.conditions
    fields = r.mapping(node, "match", conditions)
    if fields is None:
        return None
    out = []
    for name, (_, vnode) in fields.items():
        if _is_empty_collection(vnode) and name != "any":  # `any: []` says so itself
            # Dropped silently, `path: []` would leave a condition that holds for every request.
            effect = "no request" if name == "not" else "every request"
            r.error(vnode, f"match: {name}: an empty {_collection_word(vnode)} would match {effect}; "
                           "give at least one value or remove the condition")
            continue
        pred = conditions[name](r, vnode, env)
        if pred is not None:
            out.append((name, pred))
    return tuple(out)


def _is_empty_collection(node: Node) -> bool:
    return isinstance(node, (SequenceNode, MappingNode)) and not node.value


def _collection_word(node: Node) -> str:
    return "list" if isinstance(node, SequenceNode) else "mapping"


def compile_match(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    """A mapping of conditions, all of which must hold."""
    conditions = compile_conditions(r, node, env)
    return None if conditions is None else all_of([p for _, p in conditions])


def all_of(preds: list[Predicate]) -> Predicate:
    if not preds:
        return always
    if len(preds) == 1:
        return preds[0]
    guard = _best_guard([guard_of(p) for p in preds])
    # Unrolled for the common small cases: same order and short-circuit as all(), no generator.
    if len(preds) == 2:
        p0, p1 = preds
        return _guarded(lambda c: bool(p0(c) and p1(c)), guard)
    if len(preds) == 3:
        p0, p1, p2 = preds
        return _guarded(lambda c: bool(p0(c) and p1(c) and p2(c)), guard)
    ps = tuple(preds)
    return _guarded(lambda c: all(p(c) for p in ps), guard)


def _c_all(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    preds = [p for n in r.sequence(node, "all", scalar_ok=False) if (p := compile_match(r, n, env))]
    return all_of(preds)



def _c_any(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    ps = tuple(p for n in r.sequence(node, "any", scalar_ok=False) if (p := compile_match(r, n, env)))
    if not ps:
        r.error(node, "any needs at least one condition")
        return None
    guards = [guard_of(p) for p in ps]
    guard: Guard | None = None
    if all(g is not None for g in guards):
        guard = frozenset(a for g in guards if g is not None for a in g)
    return _guarded(lambda c: any(p(c) for p in ps), guard)


def _c_not(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    p = compile_match(r, node, env)
    if p is None:
        return None
    return lambda c: not p(c)


def _c_method(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    methods = frozenset(m.upper() for m in r.strings(node, "method"))
    return _guarded(lambda c: c.facts.method in methods, frozenset(("method", m) for m in methods))


def _globs(r: Reader, node: Node, what: str, flags: int = 0) -> re.Pattern[str] | None:
    globs = r.strings(node, what)
    if not globs:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs), flags)


def _c_host(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    rx = _globs(r, node, "host", re.IGNORECASE)
    if rx is None:
        return None
    m = rx.match
    return lambda c: m(_hostname(c.facts.host)) is not None


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _c_path(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    """Shell-style globs over the path (no query); `*` also crosses `/`."""
    globs = r.strings(node, "path")
    if not globs:
        return None
    m = re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs)).match  # as _globs() does
    return _guarded(lambda c: m(c.facts.path) is not None, _glob_segments(globs))


def _c_path_regex(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    rx = r.regex(node, "path_regex")
    if rx is None:
        return None
    s = rx.search
    return _guarded(lambda c: s(c.facts.path) is not None, _regex_segments(rx))


def _c_raw_path(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    """Globs over the path exactly as the client sent it (`path` sees the canonical form)."""
    rx = _globs(r, node, "raw_path")
    if rx is None:
        return None
    m = rx.match
    return lambda c: m(c.facts.raw_path) is not None


def _c_raw_path_regex(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    rx = r.regex(node, "raw_path_regex")
    if rx is None:
        return None
    s = rx.search
    return lambda c: s(c.facts.raw_path) is not None


def _c_query(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    """`query: {page: '^\\d+$'}` -- each parameter present and matching; `true` means present."""
    fields = r.mapping(node, "query")
    if not fields:
        return None
    checks: list[tuple[str, re.Pattern[str] | None]] = []
    for name, (_, vnode) in fields.items():
        if isinstance(vnode, ScalarNode) and vnode.value in ("true", "True"):
            checks.append((name, None))
        elif (rx := r.regex(vnode, f"query.{name}")) is not None:
            checks.append((name, rx))

    def pred(c: DecisionContext) -> bool:
        query = c.facts.query
        if not query:
            return False
        params = dict(parse_qsl(query, keep_blank_values=True))
        for name, rx in checks:
            value = params.get(name)
            if value is None or (rx is not None and rx.search(value) is None):
                return False
        return True
    return pred


def _c_query_regex(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    rx = r.regex(node, "query_regex")
    if rx is None:
        return None
    s = rx.search
    return lambda c: s(c.facts.query) is not None


def _c_header(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    """`header: {x-api-key: true, accept-language: false, accept: 'text/html'}`."""
    fields = r.mapping(node, "header")
    if not fields:
        return None
    checks: list[tuple[str, bool | re.Pattern[str]]] = []
    for name, (_, vnode) in fields.items():
        if isinstance(vnode, ScalarNode) and vnode.value in ("true", "false", "True", "False"):
            checks.append((name.lower(), vnode.value.lower() == "true"))
        elif (rx := r.regex(vnode, f"header.{name}")) is not None:
            checks.append((name.lower(), rx))

    def pred(c: DecisionContext) -> bool:
        hmap = c.facts.header_map
        for name, want in checks:
            value = hmap.get(name)
            if want is True or want is False:
                if (value is not None) is not want:
                    return False
            elif value is None or want.search(value) is None:
                return False
        return True
    # Every check other than `false` needs its header present: any one of them is a guard.
    return _guarded(pred, _best_guard([frozenset({("hdr", name)}) for name, want in checks if want is not False]))


def _c_user_agent(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    rx = r.regex(node, "user_agent")
    if rx is None:
        return None
    s = rx.search

    def pred(c: DecisionContext) -> bool:
        return s(c.facts.user_agent) is not None
    # Depends on the user agent alone: the rule plan remembers, per UA, which such rules match.
    setattr(pred, _UA_ONLY, True)
    return pred


def _c_client_ip(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    """CIDRs or addresses, and `@name` for a named list from `ip_lists`."""
    cidrs: list[tuple[Node, str, str]] = []
    sets: list[CidrSet] = []
    for item in r.sequence(node, "client_ip"):
        text = r.string(item, "client_ip")
        if text is None:
            continue
        if text.startswith("@"):
            named = env.ip_lists.get(text[1:])
            if named is None:
                r.error(item, f"client_ip: no ip_lists entry named {text[1:]!r}")
            else:
                sets.append(named)
            continue
        cidrs.append((item, text, "client_ip"))
    if cidrs and (inline := r.cidrs(cidrs)):
        sets.append(inline)
    if not sets:
        return None
    guard = frozenset(("ip", s) for s in sets)
    if len(sets) == 1:
        only = sets[0].contains
        return _guarded(lambda c: only(c.facts.ip), guard)
    all_sets = tuple(sets)
    return _guarded(lambda c: any(s.contains(c.facts.ip) for s in all_sets), guard)


def _c_scheme(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    schemes = frozenset(s.lower() for s in r.strings(node, "scheme"))
    return lambda c: c.facts.scheme in schemes


def _c_http_version(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    versions = frozenset(v.upper() for v in r.strings(node, "http_version"))
    return lambda c: c.facts.http_version.upper() in versions


def register(registry: Registry) -> None:
    """The built-in match conditions."""
    for name, compile_fn in (
        ("all", _c_all), ("any", _c_any), ("not", _c_not), ("method", _c_method), ("host", _c_host),
        ("path", _c_path), ("path_regex", _c_path_regex), ("raw_path", _c_raw_path),
        ("raw_path_regex", _c_raw_path_regex), ("query", _c_query), ("query_regex", _c_query_regex),
        ("header", _c_header), ("user_agent", _c_user_agent), ("client_ip", _c_client_ip),
        ("scheme", _c_scheme), ("http_version", _c_http_version),
    ):
        registry.add_condition(name, compile_fn)


# -- guards -------------------------------------------------------------------------------------
# Atoms (a guard holds when at least one of its atoms holds for the request):
#   ("seg", "api")      the path starts with "/api/" or is "/api" (`first_segment(path) == "api"`)
#   ("method", "POST")  facts.method == "POST"
#   ("hdr", "x-api-key")  the (lower-case) header is present in facts.header_map
#   ("ip", CidrSet)     facts.ip is in the set
Atom = tuple[str, Any]
Guard = frozenset[Atom]  # None (no attribute) = no known necessary condition
_GUARD = "guard"  # the attribute a guarded predicate carries
_UA_ONLY = "ua_only"  # set on a predicate that depends on the User-Agent alone

# Headers nearly every browser request carries: a guard on them skips almost nothing.
_COMMON_HEADERS = frozenset((
    "host", "user-agent", "accept", "accept-language", "accept-encoding", "connection", "cookie", "referer",
    "upgrade-insecure-requests", "cache-control", "pragma", "priority", "dnt", "te", "origin", "content-type",
    "content-length", "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest", "sec-fetch-user", "sec-ch-ua",
    "sec-ch-ua-mobile", "sec-ch-ua-platform",
))
_GLOB_META = frozenset("*?[")


def guard_of(pred: Predicate) -> Guard | None:
    guard: Guard | None = getattr(pred, _GUARD, None)
    return guard


def is_ua_only(pred: Predicate) -> bool:
    return getattr(pred, _UA_ONLY, False) is True


def _guarded(pred: Predicate, guard: Guard | None) -> Predicate:
    if guard:
        setattr(pred, _GUARD, guard)
    return pred


def first_segment(path: str) -> str | None:
    """`/api/users/7` -> `api`, `/robots.txt` -> `robots.txt`, `/` -> ``; None unless it starts with `/`."""
    if path[:1] != "/":
        return None
    end = path.find("/", 1)
    return path[1:] if end < 0 else path[1:end]


def _atom_rank(atom: tuple[str, Any]) -> int:
    kind = atom[0]
    if kind == "seg":
        return 0
    if kind == "ip":
        return 1
    if kind == "hdr":
        return 4 if atom[1] in _COMMON_HEADERS else 2
    return 3  # method


def _best_guard(guards: list[Guard | None]) -> Guard | None:
    """For a conjunction: any conjunct's guard is valid; take the one expected to skip the most."""
    best, best_rank = None, 99
    for g in guards:
        if not g:
            continue
        rank = max(_atom_rank(a) for a in g)
        if rank < best_rank:
            best, best_rank = g, rank
    return best


def _glob_segments(globs: list[str]) -> Guard | None:
    """The first path segments these globs can match, if every glob fixes it literally."""
    segs = set()
    for g in globs:
        if not g.startswith("/"):
            return None
        seg = g[1:].partition("/")[0]
        if _GLOB_META & set(seg):
            return None  # a wildcard in the first segment: it could be anything
        # "/seg/<anything>" needs the path to start with "/seg/"; a glob "/seg" with no "/" after
        # it has no wildcard at all (checked above), so it matches the path "/seg" only.
        segs.add(seg)
    return frozenset(("seg", s) for s in segs) if segs else None


def _regex_segments(rx: re.Pattern[str]) -> Guard | None:
    """The first path segments a `path_regex` can match, for the common shape `^/lit(a|b)/...`
    (see `regexlit.anchored_first_segments`). Flags that change `^` or literals give no guard."""
    if rx.flags & (re.IGNORECASE | re.MULTILINE):
        return None
    segments = anchored_first_segments(rx.pattern)
    return frozenset(("seg", s) for s in segments) if segments else None

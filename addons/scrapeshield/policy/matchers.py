"""Match conditions: YAML node -> predicate over RequestFacts, compiled once.

Each condition is a function registered in CONDITIONS under its YAML field name; adding a
condition is adding one function. A `match:` mapping with several fields means all of them.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import parse_qsl

from yaml.nodes import MappingNode, Node, ScalarNode

from ..facts import RequestFacts
from ..netaddr import CidrSet
from .model import Predicate
from .nodes import Reader


@dataclass(frozen=True, slots=True)
class CompileEnv:
    ip_lists: Mapping[str, CidrSet]
    goodbots: Any = None  # fingerprint.GoodBotRegistry from the policy's `goodbots:` section


Compiler = Callable[[Reader, Node, CompileEnv], Predicate | None]
CONDITIONS: dict[str, Compiler] = {}


def condition(name: str) -> Callable[[Compiler], Compiler]:
    def register(fn: Compiler) -> Compiler:
        CONDITIONS[name] = fn
        return fn
    return register


def compile_match(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    """A mapping of conditions, all of which must hold."""
    fields = r.mapping(node, "match", CONDITIONS)
    if fields is None:
        return None
    preds = []
    for name, (_, vnode) in fields.items():
        pred = CONDITIONS[name](r, vnode, env)
        if pred is not None:
            preds.append(pred)
    return _all(preds)


def _all(preds: list[Predicate]) -> Predicate:
    if not preds:
        return lambda f: True
    if len(preds) == 1:
        return preds[0]
    ps = tuple(preds)
    return lambda f: all(p(f) for p in ps)


@condition("all")
def _c_all(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    preds = [p for n in r.sequence(node, "all", scalar_ok=False) if (p := compile_match(r, n, env))]
    return _all(preds)


@condition("any")
def _c_any(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    ps = tuple(p for n in r.sequence(node, "any", scalar_ok=False) if (p := compile_match(r, n, env)))
    if not ps:
        r.error(node, "any needs at least one condition")
        return None
    return lambda f: any(p(f) for p in ps)


@condition("not")
def _c_not(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    p = compile_match(r, node, env)
    return (lambda f: not p(f)) if p else None


@condition("method")
def _c_method(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    methods = frozenset(m.upper() for m in r.strings(node, "method"))
    return lambda f: f.method in methods


def _globs(r: Reader, node: Node, what: str, flags: int = 0) -> re.Pattern[str] | None:
    globs = r.strings(node, what)
    if not globs:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs), flags)


@condition("host")
def _c_host(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    rx = _globs(r, node, "host", re.IGNORECASE)
    if rx is None:
        return None
    m = rx.match
    return lambda f: m(_hostname(f.host)) is not None


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


@condition("path")
def _c_path(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    """Shell-style globs over the path (no query); `*` also crosses `/`."""
    rx = _globs(r, node, "path")
    if rx is None:
        return None
    m = rx.match
    return lambda f: m(f.path) is not None


@condition("path_regex")
def _c_path_regex(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    rx = r.regex(node, "path_regex")
    if rx is None:
        return None
    s = rx.search
    return lambda f: s(f.path) is not None


@condition("query")
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

    def pred(f: RequestFacts) -> bool:
        if not f.query:
            return False
        params = dict(parse_qsl(f.query, keep_blank_values=True))
        for name, rx in checks:
            value = params.get(name)
            if value is None or (rx is not None and rx.search(value) is None):
                return False
        return True
    return pred


@condition("query_regex")
def _c_query_regex(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    rx = r.regex(node, "query_regex")
    if rx is None:
        return None
    s = rx.search
    return lambda f: s(f.query) is not None


@condition("header")
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

    def pred(f: RequestFacts) -> bool:
        hmap = f.header_map
        for name, want in checks:
            value = hmap.get(name)
            if want is True or want is False:
                if (value is not None) is not want:
                    return False
            elif value is None or want.search(value) is None:
                return False
        return True
    return pred


@condition("user_agent")
def _c_user_agent(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    rx = r.regex(node, "user_agent")
    if rx is None:
        return None
    s = rx.search
    return lambda f: s(f.user_agent) is not None


@condition("client_ip")
def _c_client_ip(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    """CIDRs or addresses, and `@name` for a named list from `ip_lists`."""
    cidrs: list[str] = []
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
        try:
            CidrSet.of([text])
        except ValueError as exc:
            r.error(item, f"client_ip: {exc}")
            continue
        cidrs.append(text)
    if cidrs:
        sets.append(CidrSet.of(cidrs))
    if not sets:
        return None
    all_sets = tuple(sets)
    return lambda f: any(s.contains(f.ip) for s in all_sets)


@condition("scheme")
def _c_scheme(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    schemes = frozenset(s.lower() for s in r.strings(node, "scheme"))
    return lambda f: f.scheme in schemes


@condition("http_version")
def _c_http_version(r: Reader, node: Node, env: CompileEnv) -> Predicate | None:
    versions = frozenset(v.upper() for v in r.strings(node, "http_version"))
    return lambda f: f.http_version.upper() in versions


def is_condition_mapping(node: Node) -> bool:
    return isinstance(node, MappingNode)

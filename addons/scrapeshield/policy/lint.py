"""Warnings about a policy that compiles but probably does not say what its author meant.

Errors stop a policy from loading; these do not, because each can be intended (a rule kept
below an allow-all while testing, a WebDAV method). `scrapeshield check` prints them and
`check --strict` fails on them, so CI can hold a policy to "no warnings".

Runs on the composed YAML nodes of a policy that has already compiled, for positions.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .registry import Registry
from .signals import known_signals

Warn = Callable[[Node, str], None]

# RFC 9110 and the registered extensions one meets in front of web apps (WebDAV, PATCH, QUERY).
HTTP_METHODS = frozenset((
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY",
    "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT", "SEARCH", "MKCALENDAR",
))
# A rule that decides every request it sees, so nothing below it runs. `challenge` is not one:
# a client holding a clearance passes on to the next rule. `log` and monitored rules never stop.
_TERMINAL_ACTIONS = frozenset(("allow", "block", "drop", "throttle"))
_MATCH_ALL_PATHS = frozenset(("*", "/*", "**", "/**"))
# Detector signal -> the detectors field that switches its detector off.
_DETECTOR_SWITCH = {
    "many_distinct_resources": "distinct_enabled", "sequential_ids": "sequence_enabled",
    "probe_rate": "probe_enabled", "no_assets": "assets_enabled", "regular_timing": "timing_enabled",
}


@dataclass(frozen=True, slots=True)
class PolicyWarning:
    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: warning: {self.message}"


def lint_file(path: str, registry: Registry | None = None) -> list[PolicyWarning]:
    with open(path, "rb") as fh:
        return lint_bytes(fh.read(), path, registry)


def lint_bytes(data: bytes, filename: str = "<policy>", registry: Registry | None = None) -> list[PolicyWarning]:
    root = yaml.compose(data.decode("utf-8"), Loader=yaml.SafeLoader)
    found: list[PolicyWarning] = []
    if not isinstance(root, MappingNode):
        return found

    def warn(node: Node, message: str) -> None:
        found.append(PolicyWarning(filename, node.start_mark.line + 1, node.start_mark.column + 1, message))

    top = _fields(root)
    rules = top.get("rules")
    if isinstance(rules, SequenceNode):
        _lint_rules(rules, warn)
    scores = top.get("scores")
    if isinstance(scores, SequenceNode):
        _lint_weights(scores, top, known_signals(registry), warn)
    return sorted(found, key=lambda w: (w.line, w.col))


def _fields(node: Node) -> dict[str, Node]:
    if not isinstance(node, MappingNode):
        return {}
    return {k.value: v for k, v in node.value if isinstance(k, ScalarNode)}


def _scalar(node: Node | None) -> str | None:
    return node.value if isinstance(node, ScalarNode) else None


def _lint_rules(rules: SequenceNode, warn: Warn) -> None:
    decider: tuple[str, int] | None = None  # (name, line) of the first rule that decides everything
    for item in rules.value:
        f = _fields(item)
        name = _scalar(f.get("name")) or "?"
        if decider is not None:
            warn(item, f"rule {name!r} is unreachable: rule {decider[0]!r} (line {decider[1]}) "
                       "decides every request before it")
            continue
        if (match := f.get("match")) is not None:
            _lint_methods(match, warn)
        if _decides_everything(f):
            decider = (name, item.start_mark.line + 1)


def _decides_everything(rule: dict[str, Node]) -> bool:
    if "limits" in rule or _scalar(rule.get("action")) not in _TERMINAL_ACTIONS:
        return False
    if _scalar(rule.get("monitor")) in ("true", "True"):
        return False
    match = rule.get("match")
    if match is None:
        return True
    conditions = _fields(match)
    if not isinstance(match, MappingNode) or set(conditions) - {"path"}:
        return not conditions and isinstance(match, MappingNode)
    path = conditions.get("path")
    globs = [path] if isinstance(path, ScalarNode) else path.value if isinstance(path, SequenceNode) else []
    return any(_scalar(g) in _MATCH_ALL_PATHS for g in globs)


def _lint_methods(match: Node, warn: Warn) -> None:
    for name, value in _fields(match).items():
        if name == "method":
            items = value.value if isinstance(value, SequenceNode) else [value]
            for item in items:
                method = (_scalar(item) or "").upper()
                if method and method not in HTTP_METHODS:
                    hint = difflib.get_close_matches(method, sorted(HTTP_METHODS), n=1)
                    more = f" (did you mean {hint[0]!r}?)" if hint else ""
                    warn(item, f"match: method {method!r} is not an HTTP method clients send{more}")
        elif name in ("all", "any") and isinstance(value, SequenceNode):
            for sub in value.value:
                _lint_methods(sub, warn)
        elif name == "not":
            _lint_methods(value, warn)


def _lint_weights(scores: SequenceNode, top: dict[str, Node], known: Mapping[str, str | None], warn: Warn) -> None:
    detectors = _fields(top["detectors"]) if "detectors" in top else None
    detectors_on = detectors is not None and _scalar(detectors.get("enabled")) not in ("false", "False")
    for item in scores.value:
        f = _fields(item)
        sname = _scalar(f.get("name")) or "?"
        weights = f.get("weights")
        if not isinstance(weights, MappingNode):
            continue
        for knode, _ in weights.value:
            signal = _scalar(knode)
            needs = known.get(signal or "")
            if needs is None:
                continue
            if needs == "detectors":
                if not detectors_on:
                    why = ("the detectors are disabled" if detectors is not None
                           else "the policy has no `detectors:` section")
                    warn(knode, f"score {sname!r}: weight on {signal!r} never adds anything: {why}")
                elif detectors is not None and _scalar(detectors.get(_DETECTOR_SWITCH.get(signal or "", ""))) \
                        in ("false", "False"):
                    warn(knode, f"score {sname!r}: weight on {signal!r} never adds anything: "
                                f"detectors.{_DETECTOR_SWITCH[signal or '']} is false")
            elif needs not in top:
                warn(knode, f"score {sname!r}: weight on {signal!r} never adds anything: "
                            f"the policy has no `{needs}:` section")

"""Reading YAML node trees with their positions, collecting every error instead of stopping.

Validation works on `yaml.compose()` nodes, not on loaded Python values, because only nodes
know their line and column.
"""
from __future__ import annotations

import difflib
import re
import time
from collections.abc import Iterable

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..netaddr import CidrSet
from .errors import PolicyError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class Reader:
    def __init__(self, filename: str, deadline: float | None = None) -> None:
        self.filename = filename
        self.errors: list[PolicyError] = []
        self.deadline = deadline  # time.monotonic() by which compiling must be done (loader.LoadLimits)

    def check_budget(self, node: Node) -> None:
        """Raise CompileBudgetExceeded once past the deadline. Called for every mapping and list
        read, so no policy shape compiles for long without passing here."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            from .loader import CompileBudgetExceeded

            raise CompileBudgetExceeded(node)

    def error(self, node: Node | None, message: str) -> None:
        if node is None:
            self.errors.append(PolicyError(self.filename, 1, 1, message))
        else:
            mark = node.start_mark
            self.errors.append(PolicyError(self.filename, mark.line + 1, mark.column + 1, message))

    # -- shapes ----------------------------------------------------------------------------
    def mapping(self, node: Node, what: str,
                allowed: Iterable[str] | None = None) -> dict[str, tuple[Node, Node]] | None:
        self.check_budget(node)
        if not isinstance(node, MappingNode):
            self.error(node, f"{what} must be a mapping")
            return None
        out: dict[str, tuple[Node, Node]] = {}
        allowed_set = set(allowed) if allowed is not None else None
        for knode, vnode in node.value:
            if not isinstance(knode, ScalarNode):
                self.error(knode, f"{what}: keys must be plain names")
                continue
            key = knode.value
            if key in out:
                self.error(knode, f"{what}: duplicate key {key!r}")
                continue
            if allowed_set is not None and key not in allowed_set:
                hint = difflib.get_close_matches(key, sorted(allowed_set), n=1)
                more = (f" (did you mean {hint[0]!r}?)" if hint
                        else f" (expected one of: {', '.join(sorted(allowed_set))})")
                self.error(knode, f"{what}: unknown field {key!r}{more}")
                continue
            out[key] = (knode, vnode)
        return out

    def sequence(self, node: Node, what: str, scalar_ok: bool = True) -> list[Node]:
        """A list; a single scalar stands for a list of one when scalar_ok."""
        self.check_budget(node)
        if isinstance(node, SequenceNode):
            return list(node.value)
        if scalar_ok and isinstance(node, ScalarNode) and node.tag != "tag:yaml.org,2002:null":
            return [node]
        self.error(node, f"{what} must be a list")
        return []

    def string(self, node: Node, what: str) -> str | None:
        if not isinstance(node, ScalarNode) or node.tag == "tag:yaml.org,2002:null":
            self.error(node, f"{what} must be a string")
            return None
        return str(node.value)

    def strings(self, node: Node, what: str) -> list[str]:
        return [s for n in self.sequence(node, what) if (s := self.string(n, what)) is not None]

    def integer(self, node: Node, what: str, low: int | None = None, high: int | None = None) -> int | None:
        value = self._scalar(node)
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(node, f"{what} must be an integer")
            return None
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f">= {low}"
            self.error(node, f"{what} must be {bounds}, not {value}")
            return None
        return value

    def number(self, node: Node, what: str) -> float | None:
        value = self._scalar(node)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.error(node, f"{what} must be a number")
            return None
        return float(value)

    def boolean(self, node: Node, what: str) -> bool | None:
        value = self._scalar(node)
        if not isinstance(value, bool):
            self.error(node, f"{what} must be true or false")
            return None
        return value

    def choice(self, node: Node, what: str, options: Iterable[str]) -> str | None:
        value = self.string(node, what)
        opts = list(options)
        if value is not None and value not in opts:
            self.error(node, f"{what} must be one of {', '.join(opts)}, not {value!r}")
            return None
        return value

    def duration(self, node: Node, what: str) -> float | None:
        """`30s`, `10m`, `1h`, `2d`, `250ms`, or a number of seconds."""
        raw = node.value if isinstance(node, ScalarNode) else None
        m = _DURATION.match(str(raw)) if raw is not None else None
        if m is None:
            self.error(node, f"{what} must be a duration like 30s, 10m, 1h")
            return None
        return float(m.group(1)) * _UNITS[m.group(2)]

    def regex(self, node: Node, what: str, flags: int = 0) -> re.Pattern[str] | None:
        text = self.string(node, what)
        if text is None:
            return None
        try:
            return re.compile(text, flags)
        except re.error as exc:
            self.error(node, f"{what}: invalid regular expression: {exc}")
            return None

    def cidrs(self, items: Iterable[tuple[Node, str, str]]) -> CidrSet:
        """Addresses and CIDRs, given as (node, text, what), as one set. An invalid one is left out
        and reported at its node as `what: problem`: the one place CIDR text is validated."""
        good = []
        for node, text, what in items:
            try:
                CidrSet.of([text])
            except ValueError as exc:
                self.error(node, f"{what}: {exc}")
                continue
            good.append(text)
        return CidrSet.of(good)

    def cidr_list(self, node: Node, what: str) -> CidrSet:
        """A list (or one) of addresses and CIDRs."""
        return self.cidrs((item, text, what) for item in self.sequence(node, what)
                          if (text := self.string(item, what)) is not None)

    @staticmethod
    def _scalar(node: Node) -> object:
        if not isinstance(node, ScalarNode):
            return None
        return _CONSTRUCTOR.construct_object(node)  # resolve the tag exactly as YAML would

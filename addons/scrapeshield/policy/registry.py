"""The policy language's extension points, in one typed object handed to the compiler.

A package adds to the language by registering, in a `register(registry)` function of its own:

- a match condition: `registry.add_condition("ua_class", compile_fn)` -- YAML node -> Predicate;
- a key part: `registry.add_key_part("ja4", factory)` -- what buckets, bans and scores count by;
- a signal source: `registry.add_signal_source(fn)` -- named strengths a score's `weights` weigh,
  whose names it declares with `registry.add_signals(names, needs_section=...)`;
- a policy section: `registry.add_section(Section("goodbots", compile_fn))` -- a top-level field
  compiled by the package; its value is read back with `policy.section(GOODBOTS)`.

`scrapeshield.extensions.standard_registry()` composes the built-in packages; nothing registers
by being imported. Registration happens once, before the first compile; a compiled policy keeps
what it needs (predicates, key functions, section values, signal sources), so a registry is never
consulted on the hot path.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

from yaml.nodes import Node

from ..netaddr import CidrSet
from .model import KeyFunc, KeySpec, Predicate
from .nodes import Reader

if TYPE_CHECKING:
    from ..context import DecisionContext
    from .model import CompiledPolicy

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class KeyContext:
    """Policy-wide settings a key part may depend on."""

    ipv4_prefix: int
    ipv6_prefix: int


PartFactory = Callable[[str, KeyContext], KeyFunc]  # (argument after ':', settings) -> key function


@dataclass(frozen=True, slots=True)
class KeyPart:
    factory: PartFactory
    needs_argument: bool = False  # `header:NAME`: the part is useless without its argument
    check: Callable[[str], str | None] | None = None  # argument -> why it is wrong, or None
    # The part's value is a function of the request's fingerprint alone (`ja4`, `ua_class`, ...): a
    # key made of such parts only is remembered per fingerprint object (policy/keys.py).
    per_fingerprint: bool = False


@dataclass(frozen=True, slots=True)
class Section[T]:
    """A top-level policy field compiled by a package. `compile` reports problems through the
    context's reader and returns None for a section that is absent in effect (e.g. disabled)."""

    name: str
    compile: Callable[[SectionContext, Node], T | None]


@dataclass(frozen=True, slots=True)
class SectionContext:
    """What a section compiler may use: the reader (errors as file:line:col), the policy's folder
    (relative file names), and the compiler's own key grammar (`key: stack`, `ip+ja4`, ...)."""

    reader: Reader
    policy_dir: str
    read_key: Callable[[Node, str], KeySpec | None]  # (node, what) -> spec; errors go to the reader
    default_key: KeySpec  # `ip`: what a section without a `key` counts by


@dataclass(frozen=True, slots=True)
class CompileEnv:
    """What a match condition may refer to while compiling."""

    ip_lists: Mapping[str, CidrSet]
    registry: Registry
    sections: Mapping[str, object] = field(default_factory=dict)
    # What a compiled condition needs a stage to provide before the rules are matched (e.g. the
    # session counters): a condition adds the name; the policy keeps what its rules need.
    needs: set[str] = field(default_factory=set)

    def section(self, spec: Section[T]) -> T | None:
        return cast("T | None", self.sections.get(spec.name))


ConditionCompiler = Callable[[Reader, Node, CompileEnv], Predicate | None]
SignalSource = Callable[["DecisionContext", "CompiledPolicy"], Mapping[str, float]]


class Registry:
    """Conditions, key parts, signal sources and sections, by name. Names are unique: a second
    registration under a taken name is a programming error and raises ValueError."""

    def __init__(self) -> None:
        self.conditions: dict[str, ConditionCompiler] = {}
        self.key_parts: dict[str, KeyPart] = {}
        self.sections: dict[str, Section[Any]] = {}
        self.signal_sources: list[SignalSource] = []
        self.signals: dict[str, str | None] = {}  # weighable name -> section it needs to fire (or None)

    def add_condition(self, name: str, compile_fn: ConditionCompiler) -> None:
        _unique(self.conditions, name, "condition")
        self.conditions[name] = compile_fn

    def add_key_part(self, name: str, factory: PartFactory, *, needs_argument: bool = False,
                     check: Callable[[str], str | None] | None = None, per_fingerprint: bool = False) -> None:
        _unique(self.key_parts, name, "key part")
        self.key_parts[name] = KeyPart(factory, needs_argument, check, per_fingerprint)

    def add_section(self, section: Section[Any]) -> None:
        _unique(self.sections, section.name, "section")
        self.sections[section.name] = section

    def add_signal_source(self, source: SignalSource) -> None:
        self.signal_sources.append(source)

    def add_signals(self, names: Iterable[str], needs_section: str | None = None) -> None:
        """Signal names a score may weigh (a weight on any other name is a policy error);
        `needs_section`: the top-level policy field without which the signal never fires."""
        for name in names:
            _unique(self.signals, name, "signal")
            self.signals[name] = needs_section

    def without_sections(self, names: Iterable[str]) -> Registry:
        """A copy lacking some sections: what a build without those packages accepts."""
        other = Registry()
        other.conditions = dict(self.conditions)
        other.key_parts = dict(self.key_parts)
        other.sections = {k: v for k, v in self.sections.items() if k not in set(names)}
        other.signal_sources = list(self.signal_sources)
        other.signals = dict(self.signals)
        return other


def _unique(table: Mapping[str, object], name: str, what: str) -> None:
    if name in table:
        raise ValueError(f"{what} {name!r} is registered twice")

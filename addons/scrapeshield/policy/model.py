"""The compiled policy: immutable, ready to evaluate. Built only by `compiler.compile_policy`."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from ..challenge.config import ChallengeConfig
from ..decision import Action
from ..gcra import BucketLimit
from ..netaddr import CidrSet

if TYPE_CHECKING:
    from ..context import DecisionContext
    from .registry import Section, SignalSource

T = TypeVar("T")
Predicate = Callable[["DecisionContext"], bool]
KeyFunc = Callable[["DecisionContext"], str]


class RuleCandidates(Protocol):
    """Which rules one request can match at all, in policy order: `plan.RulePlan`. A protocol, not
    the class: plan.py imports this module, so naming its class here would make a cycle that the
    compiled core cannot load (a compiled module's class annotations are evaluated at import)."""

    def candidates(self, ctx: DecisionContext) -> tuple[Rule, ...]: ...


@dataclass(frozen=True, slots=True)
class KeySpec:
    parts: tuple[str, ...]  # e.g. ("prefix", "header:x-api-key")
    func: KeyFunc = field(compare=False)

    @property
    def name(self) -> str:
        return "+".join(self.parts)


@dataclass(frozen=True, slots=True)
class BucketDef:
    uid: str  # stable across reloads while rule name, key and parameters are unchanged
    limit: BucketLimit
    name: str  # "api-users/0" for the RateLimit-Policy header and logs


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    match: Predicate = field(compare=False)
    action: Action | None  # for a direct rule; None for a rate-limit rule
    buckets: tuple[BucketDef, ...] = ()
    exceed: Action = Action.THROTTLE
    key: KeySpec | None = None
    delay_max: float = 2.0
    ban_for: float = 0.0
    monitor: bool = False
    status: int = 0
    difficulty: int = 0
    no_js: bool = False
    scores: tuple[tuple[str, float], ...] = ()  # (score name, delta) added when the rule matches
    # The `match:` fields one by one, (name, predicate), for explaining which one failed.
    conditions: tuple[tuple[str, Predicate], ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class Threshold:
    at: float
    action: Action
    difficulty: int = 0
    ban_for: float = 0.0
    status: int = 0
    when: Predicate | None = field(default=None, compare=False)  # acts only on requests matching this


@dataclass(frozen=True, slots=True)
class ScoreDef:
    name: str
    uid: str
    key: KeySpec
    half_life: float
    weights: tuple[tuple[str, float], ...]  # (signal name, weight)
    thresholds: tuple[Threshold, ...]  # ascending by `at`


# (score index in the policy, position in that score's `weights`, weight)
WeightRef = tuple[int, int, float]


@dataclass(frozen=True, slots=True)
class ScorePlan:
    """The policy's score weights arranged for one request, at compile time: a request looks up
    each of its few signals once here, instead of merging its sources' signals into one dict and
    each score looking up its weights in it."""

    # signal -> where each score weighs it; every signal some score weighs is a key (its refs may
    # be empty: only the `per_weight` scores weigh it)
    refs: dict[str, tuple[WeightRef, ...]]
    # scores that weigh one signal twice (the compiler never makes one): every weight, in order
    per_weight: tuple[int, ...]

    @staticmethod
    def of(scores: tuple[ScoreDef, ...]) -> ScorePlan:
        refs: dict[str, list[WeightRef]] = {}
        per_weight: list[int] = []
        for i, score in enumerate(scores):
            exact = len({signal for signal, _ in score.weights}) == len(score.weights)
            if not exact:
                per_weight.append(i)
            for at, (signal, weight) in enumerate(score.weights):
                found = refs.setdefault(signal, [])
                if exact:
                    found.append((i, at, weight))
        return ScorePlan({signal: tuple(found) for signal, found in refs.items()}, tuple(per_weight))


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    source: str  # file name
    version_hash: str  # sha256 of the source bytes, first 16 hex
    name: str
    monitor: bool
    fail_closed: bool
    default_action: Action
    trusted_proxies: CidrSet
    ipv4_prefix: int
    ipv6_prefix: int
    rules: tuple[Rule, ...]
    ban_keys: tuple[KeySpec, ...]  # distinct keys the penalty box and allow list are asked about
    ban_action: Action
    scores: tuple[ScoreDef, ...]
    block_status: int
    throttle_status: int
    max_keys: int
    hash_ips: bool
    challenge: ChallengeConfig
    plan: RuleCandidates = field(compare=False, repr=False)  # which rules a request can match at all
    sections: Mapping[str, Any] = field(default_factory=dict, compare=False)  # name -> compiled section
    signal_sources: tuple[SignalSource, ...] = field(default=(), compare=False)
    # What the rules' conditions need before matching (CompileEnv.needs), e.g. "session_counters":
    # a stage that costs something runs early only for a policy that names it.
    needs: frozenset[str] = field(default=frozenset(), compare=False)
    score_plan: ScorePlan = field(init=False, repr=False, compare=False)  # made from `scores`

    def __post_init__(self) -> None:
        object.__setattr__(self, "score_plan", ScorePlan.of(self.scores))

    def section(self, spec: Section[T]) -> T | None:
        """A package's compiled section (e.g. `detectors`), or None when the policy has none."""
        return cast("T | None", self.sections.get(spec.name))

    @property
    def bucket_ids(self) -> frozenset[str]:
        return frozenset(b.uid for r in self.rules for b in r.buckets) | frozenset(s.uid for s in self.scores)

"""Why a decision came out as it did: a plain value the stages record when asked (`Engine.explain`).

Recording costs nothing when no trace is requested: the stages take `trace=None` and the per-rule
part is worked out after the decision, by re-evaluating the rules' conditions on the same context.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from ..decision import Decision

if TYPE_CHECKING:
    from .stages import Matches


class RuleOutcome(StrEnum):
    MATCHED = "matched"
    NO_MATCH = "no match"  # evaluated; `failed` names the condition that did not hold
    CANNOT_MATCH = "cannot match"  # skipped by the rule plan: a necessary condition is absent
    NOT_REACHED = "not reached"  # an earlier rule decided


@dataclass(frozen=True, slots=True)
class RuleTrace:
    rule: str
    outcome: RuleOutcome
    failed: str = ""  # the `match:` field that did not hold (for NO_MATCH)
    note: str = ""  # for MATCHED: what the match did ("limit", "log", "challenge cleared", "decided", ...)


@dataclass(frozen=True, slots=True)
class BucketTrace:
    rule: str
    bucket: str  # "api-users/0"
    key: str
    allowed: bool
    remaining: int  # requests left in the burst after this one
    retry_after: float  # seconds until the next request conforms (0 when allowed)
    monitored: bool  # counted on the monitor store, never enforced


@dataclass(frozen=True, slots=True)
class ScoreTrace:
    score: str
    key: str
    delta: float  # what this request added (rule deltas + weighted signals)
    value: float  # the decayed value after the update


@dataclass(frozen=True, slots=True)
class DecisionTrace:
    decision: Decision
    rules: tuple[RuleTrace, ...]
    detector_key: str | None
    signals: tuple[tuple[str, float], ...]  # every signal a score could weigh, by name, sorted
    buckets: tuple[BucketTrace, ...]
    scores: tuple[ScoreTrace, ...]
    banned_key: str | None  # the penalty-box key that decided, if any
    detector_state: Mapping[str, object] | None = None  # what each detector measures for the identity


@dataclass(slots=True)
class TraceRecorder:
    """Filled by the stages during one decision; `freeze()` gives the DecisionTrace."""

    signals: dict[str, float] = field(default_factory=dict)
    buckets: list[BucketTrace] = field(default_factory=list)
    scores: list[ScoreTrace] = field(default_factory=list)
    banned_key: str | None = None
    matches: Matches | None = None  # the match stage's result, for the per-rule account

    def freeze(self, decision: Decision, rules: tuple[RuleTrace, ...], detector_key: str | None,
               detector_state: Mapping[str, object] | None = None) -> DecisionTrace:
        return DecisionTrace(decision, rules, detector_key, tuple(sorted(self.signals.items())),
                             tuple(self.buckets), tuple(self.scores), self.banned_key, detector_state)

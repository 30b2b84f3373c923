"""The per-rule account of a decision: for every rule in policy order, whether it matched and,
if not, which of its conditions failed. Worked out after the decision, from the match stage's
result and the same context, so deciding without a trace pays nothing for it."""
from __future__ import annotations

from ..context import DecisionContext
from ..decision import Action
from ..policy.model import CompiledPolicy, Rule
from .stages import ClearanceCheck, Matches, is_cleared
from .trace import RuleOutcome, RuleTrace


def rule_traces(policy: CompiledPolicy, ctx: DecisionContext, m: Matches,
                clearance: ClearanceCheck | None) -> tuple[RuleTrace, ...]:
    candidates = {id(rule) for rule in policy.plan.candidates(ctx)}
    out: list[RuleTrace] = []
    reached = True
    for rule in policy.rules:
        if not reached:
            out.append(RuleTrace(rule.name, RuleOutcome.NOT_REACHED))
        elif id(rule) not in candidates:
            out.append(RuleTrace(rule.name, RuleOutcome.CANNOT_MATCH))
        elif not rule.match(ctx):
            out.append(RuleTrace(rule.name, RuleOutcome.NO_MATCH, failed=_failed_condition(rule, ctx)))
        else:
            out.append(RuleTrace(rule.name, RuleOutcome.MATCHED, note=_note(rule, ctx, m, clearance)))
            reached = rule is not m.terminal
    return tuple(out)


def _failed_condition(rule: Rule, ctx: DecisionContext) -> str:
    return next((name for name, pred in rule.conditions if not pred(ctx)), "")


def _note(rule: Rule, ctx: DecisionContext, m: Matches, clearance: ClearanceCheck | None) -> str:
    if rule.buckets:
        if rule.monitor:
            return "limit (monitored)"
        if rule.exceed is Action.CHALLENGE and is_cleared(clearance, ctx, rule.name):
            return "limit passed over: its challenge already solved (clearance)"
        return "limit"
    if rule.action is Action.LOG:
        return "log"
    if rule.action is Action.CHALLENGE and is_cleared(clearance, ctx, rule.name):
        return "challenge already solved (clearance)"
    if rule.monitor:
        return f"monitored: would {rule.action}"
    return "decided" if rule is m.terminal else ""

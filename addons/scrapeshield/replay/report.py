"""Replayed decisions -> a report per client and per rule (plain values, JSON-ready)."""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..decision import Action
from ..policy.model import CompiledPolicy
from .core import ReplayedDecision, ReplayRun

ACTION_ORDER = (Action.ALLOW, Action.DELAY, Action.THROTTLE, Action.CHALLENGE, Action.BLOCK, Action.DROP)
REFUSALS = (Action.THROTTLE, Action.CHALLENGE, Action.BLOCK, Action.DROP)
FIRSTS = (Action.DELAY, *REFUSALS)  # the moments a report names for each client
REFUSED = "refused"  # key in ClientReport.first: the first of any refusal


def _counts(actions: Counter[str]) -> dict[str, int]:
    order = [a.value for a in Action]
    return {a: actions[a] for a in sorted(actions, key=order.index)}


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class FirstEvent:
    """When a client first met an action."""

    request: int  # the client's request number (1-based)
    at: float  # seconds since the client's first request
    time: float  # epoch seconds
    action: str
    rule: str
    path: str

    def to_dict(self) -> dict[str, Any]:
        return {"request": self.request, "at": round(self.at, 3), "time": iso(self.time), "action": self.action,
                "rule": self.rule, "path": self.path}


@dataclass(frozen=True, slots=True)
class ClientReport:
    client: str
    requests: int
    start: float
    end: float
    actions: dict[str, int]  # effective actions: what the shield does
    first: dict[str, FirstEvent]  # by action ("delay", "throttle", ...) and REFUSED
    user_agents: tuple[tuple[str, int], ...]  # most frequent first, at most 3

    @property
    def refused(self) -> int:
        return sum(self.actions.get(a.value, 0) for a in REFUSALS)

    @property
    def first_refused(self) -> FirstEvent | None:
        return self.first.get(REFUSED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "client": self.client, "requests": self.requests, "refused": self.refused,
            "start": iso(self.start), "seconds": round(self.end - self.start, 3), "actions": self.actions,
            "first": {k: v.to_dict() for k, v in self.first.items()},
            "user_agents": [{"user_agent": ua, "requests": n} for ua, n in self.user_agents],
        }


@dataclass(frozen=True, slots=True)
class RuleReport:
    rule: str
    in_policy: bool  # False for "default", "ban", "score:<name>", "error"
    matched: int  # requests whose match held (for pseudo-rules: requests they decided)
    decided: dict[str, int]  # enforced decisions this rule made, by action
    monitored: dict[str, int]  # what it would have done while monitored (monitor mode, log rules)

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "in_policy": self.in_policy, "matched": self.matched, "decided": self.decided,
                "monitored": self.monitored}


@dataclass(frozen=True, slots=True)
class ReplayReport:
    policy: dict[str, str]  # file, name, version
    flows: tuple[str, ...]
    requests: int
    start: float
    end: float
    actions: dict[str, int]
    clients: tuple[ClientReport, ...]  # in order of first appearance
    rules: tuple[RuleReport, ...]  # policy rules in policy order, then pseudo-rules as they appeared

    def client(self, client: str) -> ClientReport:
        for c in self.clients:
            if c.client == client:
                return c
        raise KeyError(f"no client {client!r} in the replay (clients: {', '.join(c.client for c in self.clients)})")

    def rule(self, name: str) -> RuleReport:
        for r in self.rules:
            if r.rule == name:
                return r
        raise KeyError(f"no rule {name!r} in the replay")

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy, "flows": list(self.flows), "requests": self.requests,
            "start": iso(self.start) if self.requests else None, "seconds": round(self.end - self.start, 3),
            "actions": self.actions, "clients": [c.to_dict() for c in self.clients],
            "rules": [r.to_dict() for r in self.rules],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"


def build_report(run: ReplayRun) -> ReplayReport:
    decisions, policy = run.decisions, run.policy
    return ReplayReport(
        policy={"file": policy.source, "name": policy.name, "version": policy.version_hash},
        flows=run.flow_files,
        requests=len(decisions),
        start=decisions[0].time if decisions else 0.0,
        end=decisions[-1].time if decisions else 0.0,
        actions=_counts(Counter(d.effective.value for d in decisions)),
        clients=_clients(decisions),
        rules=_rules(decisions, policy),
    )


def _clients(decisions: Sequence[ReplayedDecision]) -> tuple[ClientReport, ...]:
    by_client: dict[str, list[ReplayedDecision]] = {}
    for d in decisions:
        by_client.setdefault(d.client, []).append(d)
    out = []
    for client, ds in by_client.items():
        start = ds[0].time
        first: dict[str, FirstEvent] = {}
        for d in ds:
            action = d.effective
            if action in FIRSTS and action.value not in first:
                event = FirstEvent(d.client_request, d.time - start, d.time, action.value, d.rule, d.path)
                first[action.value] = event
                if action in REFUSALS and REFUSED not in first:
                    first[REFUSED] = event
        ordered: dict[str, FirstEvent] = {a.value: first[a.value] for a in FIRSTS if a.value in first}
        if REFUSED in first:
            ordered[REFUSED] = first[REFUSED]
        uas = Counter(d.user_agent for d in ds)
        top = tuple(sorted(uas.items(), key=lambda kv: (-kv[1], kv[0]))[:3])
        out.append(ClientReport(client, len(ds), start, ds[-1].time,
                                _counts(Counter(d.effective.value for d in ds)), ordered, top))
    return tuple(out)


def _rules(decisions: Sequence[ReplayedDecision], policy: CompiledPolicy) -> tuple[RuleReport, ...]:
    matched: Counter[str] = Counter()
    decided: dict[str, Counter[str]] = {}
    monitored: dict[str, Counter[str]] = {}
    for d in decisions:
        matched.update(d.matched)
        (decided if d.enforced else monitored).setdefault(d.rule, Counter())[d.action.value] += 1
        for rule, action in d.shadowed:
            monitored.setdefault(rule, Counter())[action] += 1
    names = [r.name for r in policy.rules]
    pseudo: list[str] = []
    for d in decisions:
        if d.rule not in names and d.rule not in pseudo:
            pseudo.append(d.rule)
    out = []
    for name in names + pseudo:
        dec = decided.get(name, Counter())
        mon = monitored.get(name, Counter())
        in_policy = name in names
        out.append(RuleReport(name, in_policy, matched[name] if in_policy else sum(dec.values()) + sum(mon.values()),
                              _counts(dec), _counts(mon)))
    return tuple(out)

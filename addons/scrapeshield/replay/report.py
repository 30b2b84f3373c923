"""Replayed decisions -> a report per client and per rule (plain values, JSON-ready)."""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..decision import ANSWERED, Action
from ..policy.model import CompiledPolicy
from .core import ReplayedDecision, ReplayRun

ACTION_ORDER = (Action.ALLOW, Action.DELAY, Action.THROTTLE, Action.CHALLENGE, Action.BLOCK, Action.DROP)
FIRSTS = (Action.DELAY, *ANSWERED)  # the moments a report names for each client
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
        return sum(self.actions.get(a.value, 0) for a in ANSWERED)

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
    builder = ReportBuilder(run.policy, run.flow_files)
    for d in run.decisions:
        builder.add(d)
    return builder.report()


OTHER_CLIENTS = "(other clients)"  # where requests of clients past `max_clients` are counted
_MAX_UAS_PER_CLIENT = 32  # distinct User-Agents counted per client (a rotating scraper has thousands)


class _ClientTally:
    __slots__ = ("actions", "client", "end", "first", "requests", "start", "uas")

    def __init__(self, client: str, start: float) -> None:
        self.client = client
        self.requests = 0
        self.start = start
        self.end = start
        self.actions: Counter[str] = Counter()
        self.first: dict[str, FirstEvent] = {}
        self.uas: Counter[str] = Counter()

    def add(self, d: ReplayedDecision) -> None:
        self.requests += 1
        self.end = d.time
        action = d.effective
        self.actions[action.value] += 1
        if action in FIRSTS and action.value not in self.first:
            event = FirstEvent(d.client_request, d.time - self.start, d.time, action.value, d.rule, d.path)
            self.first[action.value] = event
            if action in ANSWERED and REFUSED not in self.first:
                self.first[REFUSED] = event
        if d.user_agent in self.uas or len(self.uas) < _MAX_UAS_PER_CLIENT:
            self.uas[d.user_agent] += 1

    def report(self) -> ClientReport:
        first = self.first
        ordered: dict[str, FirstEvent] = {a.value: first[a.value] for a in FIRSTS if a.value in first}
        if REFUSED in first:
            ordered[REFUSED] = first[REFUSED]
        top = tuple(sorted(self.uas.items(), key=lambda kv: (-kv[1], kv[0]))[:3])
        return ClientReport(self.client, self.requests, self.start, self.end, _counts(self.actions), ordered, top)


class ReportBuilder:
    """A report from decisions fed one at a time, in bounded memory: a replay of a long log
    keeps no decision. Clients past `max_clients` are counted together as OTHER_CLIENTS."""

    def __init__(self, policy: CompiledPolicy, sources: Sequence[str], max_clients: int = 100_000) -> None:
        self.policy = policy
        self.sources = tuple(sources)
        self.max_clients = max_clients
        self.requests = 0
        self.start = 0.0
        self.end = 0.0
        self.actions: Counter[str] = Counter()
        self._clients: dict[str, _ClientTally] = {}
        self._matched: Counter[str] = Counter()
        self._decided: dict[str, Counter[str]] = {}
        self._monitored: dict[str, Counter[str]] = {}
        self._pseudo: dict[str, None] = {}  # rules outside the policy, in order of appearance
        self._names = frozenset(r.name for r in policy.rules)

    def add(self, d: ReplayedDecision) -> None:
        if not self.requests:
            self.start = d.time
        self.requests += 1
        self.end = d.time
        self.actions[d.effective.value] += 1
        tally = self._clients.get(d.client)
        if tally is None:
            name = d.client if len(self._clients) < self.max_clients else OTHER_CLIENTS
            tally = self._clients.get(name)
            if tally is None:
                tally = self._clients[name] = _ClientTally(name, d.time)
        tally.add(d)
        self._matched.update(d.matched)
        (self._decided if d.enforced else self._monitored).setdefault(d.rule, Counter())[d.action.value] += 1
        for rule, action in d.shadowed:
            self._monitored.setdefault(rule, Counter())[action] += 1
        if d.rule not in self._pseudo and d.rule not in self._names:
            self._pseudo[d.rule] = None

    def report(self) -> ReplayReport:
        policy = self.policy
        names = [r.name for r in policy.rules]
        rules = []
        for name in names + [p for p in self._pseudo if p not in names]:
            dec = self._decided.get(name, Counter())
            mon = self._monitored.get(name, Counter())
            in_policy = name in self._names
            rules.append(RuleReport(name, in_policy,
                                    self._matched[name] if in_policy else sum(dec.values()) + sum(mon.values()),
                                    _counts(dec), _counts(mon)))
        return ReplayReport(
            policy={"file": policy.source, "name": policy.name, "version": policy.version_hash},
            flows=self.sources, requests=self.requests, start=self.start, end=self.end,
            actions=_counts(self.actions), clients=tuple(t.report() for t in self._clients.values()),
            rules=tuple(rules))

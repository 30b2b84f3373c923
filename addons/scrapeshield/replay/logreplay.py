"""Replay access logs through a policy as a stream: read a line, decide it, hand the decision to
the sinks (report, expectations), forget it. Memory is bounded by the policy's store limits and
the report's client cap, never by the length of the log.

Lines are decided in file order, files in command-line order; access logs are written in time
order, so no sort is needed (one would hold the whole log). The clock never goes back: a line
stamped earlier than the one before it (a log written by several workers) is decided at the
later time.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..clock import FakeClock
from ..context import DecisionContext
from ..decision import ANSWERED, Decision
from ..policy.model import CompiledPolicy
from .accesslog import LogReadStats, facts_from_record, iter_records, log_limits
from .core import ReplayedDecision, replay_runtime

DecisionSink = Callable[[ReplayedDecision], None]
ProgressCallback = Callable[[str, int], None]  # (file, bytes of it read so far)

_MAX_COUNTED_CLIENTS = 1_000_000  # per-client request numbers kept for this many addresses


@dataclass(frozen=True, slots=True)
class LogReplayRun:
    policy: CompiledPolicy
    logs: tuple[LogReadStats, ...]
    requests: int

    def limits(self) -> dict[str, list[str]]:
        fmts = {s.to_dict()["format"] for s in self.logs}
        # What the least detailed of the logs cannot carry.
        return log_limits("json-caddy" if fmts == {"json-caddy"} else "headerless")

    def to_dict(self) -> dict[str, object]:
        return {"logs": [s.to_dict() for s in self.logs], "log_limits": self.limits()}


async def replay_logs_async(paths: Sequence[str], formats: Sequence[str], policy_path: str | os.PathLike[str],
                            sinks: Sequence[DecisionSink], progress: ProgressCallback | None = None) -> LogReplayRun:
    """Decide every request of the access logs `paths` (each in the format at the same index).

    Raises `PolicyInvalid` for a bad policy and `LogFormatError` for an unreadable log.
    """
    runtime = replay_runtime(policy_path)
    clock = runtime.clock
    assert isinstance(clock, FakeClock)
    policy = runtime.policy
    rules = policy.rules
    per_client: dict[str, int] = {}
    all_stats: list[LogReadStats] = []
    index = 0
    now = float("-inf")
    try:
        for path, fmt in zip(paths, formats, strict=True):
            stats = LogReadStats(path, fmt)
            all_stats.append(stats)
            report_progress = None if progress is None else (lambda n, p=path: progress(p, n))
            for rec in iter_records(path, fmt, stats, report_progress):
                facts = facts_from_record(rec)
                now = max(now, rec.time)
                clock.set(now)
                ctx = DecisionContext(facts)
                decision: Decision = await runtime.decide_in(ctx)
                matched = tuple([rule.name for rule in rules if rule.match(ctx)])
                index += 1
                n = per_client.get(rec.client)
                if n is None and len(per_client) >= _MAX_COUNTED_CLIENTS:
                    n = -1  # past the cap: request numbers are not counted for new addresses
                else:
                    n = per_client[rec.client] = (n or 0) + 1
                replayed = ReplayedDecision(
                    index=index, client=facts.client_ip, client_request=max(n, 0), time=now, method=facts.method,
                    host=facts.host, path=facts.path, query=facts.query, user_agent=rec.user_agent,
                    action=decision.action, enforced=decision.enforced, rule=decision.rule, reason=decision.reason,
                    key=decision.key, matched=matched,
                    shadowed=tuple([(s.rule, s.action.value) for s in decision.shadowed]),
                    status=rec.status, source=path, flow_id=f"line {stats.lines}", facts=facts)
                for sink in sinks:
                    sink(replayed)
                if rec.status is not None and decision.effective not in ANSWERED:
                    # The origin's status for a request this policy lets through (no body in a log).
                    runtime.observe_response(ctx, rec.status, None, None)
        return LogReplayRun(policy, tuple(all_stats), index)
    finally:
        await runtime.stop()
        runtime.decision_log.close()

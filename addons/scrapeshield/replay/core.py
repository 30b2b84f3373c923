"""Replay captured flows through a policy: the same `ShieldRuntime` the proxy runs, on a fake clock.

Flow files (`mitmdump -w`, `scrapeshield run --save`, optionally gzip-compressed) are read whole,
their HTTP requests sorted by `request.timestamp_start` (ties: file order on the command line,
then position in the file), and each is decided with the clock set to its own timestamp. No
wall clock and no randomness take part, so the same files and policy give the same decisions.
"""
from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Callable, Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..clock import FakeClock
from ..context import DecisionContext
from ..decision import ANSWERED, Action, Decision
from ..engine import fail_decision
from ..facts import RequestFacts
from ..mitm.flowfile import iter_http_flows, read_requests
from ..policy.model import CompiledPolicy
from ..runtime import RuntimeConfig, ShieldRuntime
from ..session.policy import SESSION
from .recorded import CutOff, RecordedRequest, ReplayInputError

__all__ = ["ReplayInputError", "ReplayRun", "ReplayedDecision", "iter_http_flows", "replay", "replay_async",
           "replay_runtime", "run_sync"]


@dataclass(frozen=True, slots=True)
class ReplayedDecision:
    """One replayed request and what the policy decided about it."""

    index: int  # 1-based position in the replay, all clients together
    client: str  # the client address the policy sees (after trusted_proxies)
    client_request: int  # 1-based number of this request among the client's own
    time: float  # the request's recorded timestamp (epoch seconds): the clock during the decision
    method: str
    host: str
    path: str
    query: str
    user_agent: str
    action: Action  # what the policy decided
    enforced: bool  # False for monitor-mode decisions: logged, not enforced
    rule: str  # rule name, "default", "ban", "score:<name>" or "error"
    reason: str
    key: str
    matched: tuple[str, ...]  # names of the policy rules whose match held, in policy order
    shadowed: tuple[tuple[str, str], ...]  # (rule, action) of monitored rules that would have acted
    status: int | None  # the recorded response status (None: no response was recorded)
    source: str  # the flow file
    flow_id: str
    facts: RequestFacts | None = field(default=None, compare=False, repr=False)

    @property
    def effective(self) -> Action:
        """What the shield would do: monitor-mode decisions let the request through."""
        return self.action if self.enforced else Action.ALLOW

    @property
    def refused(self) -> bool:
        """Throttled, challenged, blocked or dropped: the client did not get the page."""
        return self.effective in ANSWERED

    def describe(self) -> str:
        target = self.path + (f"?{self.query}" if self.query else "")
        return f"#{self.client_request} {self.method} {target} -> {self.effective.value} by {self.rule} ({self.reason})"


# --- deciding -----------------------------------------------------------------------------

def replay_runtime(policy_path: str | os.PathLike[str]) -> ShieldRuntime:
    """A runtime as the proxy builds it, minus the parts that touch the world: no admin server,
    no policy polling, decision log to /dev/null, time from a FakeClock the replay moves."""
    return ShieldRuntime(RuntimeConfig(str(policy_path), admin="", decision_log=os.devnull, reload_interval=0),
                         clock=FakeClock(0.0))


@dataclass(frozen=True, slots=True)
class ReplayRun:
    """The outcome of one replay: the policy as compiled for it, and every decision in order."""

    policy: CompiledPolicy
    flow_files: tuple[str, ...]
    decisions: tuple[ReplayedDecision, ...]
    cut_off: tuple[CutOff, ...] = ()  # files cut off while written: replayed up to the cut


async def replay_async(flow_files: Iterable[str | os.PathLike[str]],
                       policy_path: str | os.PathLike[str]) -> ReplayRun:
    """Decide every request of `flow_files` under the policy at `policy_path`, in time order.

    Raises `PolicyInvalid` for a bad policy and `ReplayInputError` for an unreadable flow file; a
    file cut off after its first flow is replayed up to the cut, and named in `ReplayRun.cut_off`.
    """
    files = tuple(str(p) for p in flow_files)
    runtime = replay_runtime(policy_path)
    cut: list[CutOff] = []
    try:
        decisions = tuple(await _replay(runtime, files, cut))
        return ReplayRun(runtime.policy, files, decisions, tuple(cut))
    finally:
        await runtime.stop()
        runtime.decision_log.close()


async def _replay(runtime: ShieldRuntime, paths: Sequence[str], cut: list[CutOff]) -> list[ReplayedDecision]:
    policy = runtime.policy
    clock = runtime.clock
    assert isinstance(clock, FakeClock)
    observe = getattr(runtime, "observe_response", None)
    requests = read_requests(paths, policy, keep_bodies=observe is not None, cut=cut)
    per_client: dict[str, int] = {}
    jar = _SessionJar()
    out: list[ReplayedDecision] = []
    for index, rec in enumerate(requests, 1):
        facts = jar.present(rec.facts, policy)
        clock.set(rec.sort_key[0])
        ctx = DecisionContext(facts)
        if rec.malformed is not None:  # what the live addon does with a request it cannot read
            matched: tuple[str, ...] = ()
            decision = fail_decision(policy, rec.malformed)
            runtime.record(facts, decision)
        else:
            decision = await runtime.decide_in(ctx)
            # For the report only, after deciding: the context is then as the engine saw it.
            matched = tuple(rule.name for rule in policy.rules if rule.match(ctx))
        jar.keep(ctx, runtime)
        n = per_client[facts.client_ip] = per_client.get(facts.client_ip, 0) + 1
        out.append(_replayed(index, n, facts, decision, matched, rec))
        if observe is not None and rec.response is not None and not rec.response.from_shield \
                and decision.effective not in ANSWERED:
            # The origin's answer to a request this policy also lets through: what the live addon sees.
            result = observe(ctx, rec.response.status, rec.response.content_type, rec.response.body)
            if inspect.isawaitable(result):
                await result
    return out


class _SessionJar:
    """The session cookies the replayed clients would hold.

    A capture cannot hold this shield's session cookies (it was made without sessions, or under
    another key), so every replayed client is taken to keep the cookie it is given, as browsers
    do: the cookie minted for a client (address + User-Agent) is presented on its next requests,
    in place of any captured one. Bounded: the oldest client is forgotten beyond MAX_CLIENTS.
    """

    MAX_CLIENTS = 100_000

    def __init__(self) -> None:
        self._cookies: dict[tuple[str, str], str] = {}

    def present(self, facts: RequestFacts, policy: CompiledPolicy) -> RequestFacts:
        settings = policy.section(SESSION)
        if settings is None:
            return facts
        value = self._cookies.get((facts.client_ip, facts.user_agent))
        if value is None:
            return facts
        name = settings.cookie_name
        headers = [(k, v) for k, v in facts.headers if k.lower() != "cookie"]
        others = [p for k, v in facts.headers if k.lower() == "cookie" for p in v.split(";")
                  if p.strip() and p.partition("=")[0].strip() != name]
        headers.append(("Cookie", "; ".join([f"{name}={value}", *[p.strip() for p in others]])))
        return RequestFacts(peer_ip=facts.peer_ip, client_ip=facts.client_ip, method=facts.method,
                            scheme=facts.scheme, host=facts.host, path=facts.path, query=facts.query,
                            headers=tuple(headers), http_version=facts.http_version, tls=facts.tls,
                            alpn=facts.alpn, connection_id=facts.connection_id, timestamp=facts.timestamp)

    def keep(self, ctx: DecisionContext, runtime: ShieldRuntime) -> None:
        header = runtime.session_set_cookie(ctx)
        if header is None:
            return
        facts = ctx.facts
        key = (facts.client_ip, facts.user_agent)
        if key not in self._cookies and len(self._cookies) >= self.MAX_CLIENTS:
            del self._cookies[next(iter(self._cookies))]
        self._cookies[key] = header.split(";", 1)[0].partition("=")[2]


def _replayed(index: int, n: int, facts: RequestFacts, d: Decision, matched: tuple[str, ...],
              rec: RecordedRequest) -> ReplayedDecision:
    return ReplayedDecision(
        index=index, client=facts.client_ip, client_request=n, time=rec.sort_key[0], method=facts.method,
        host=facts.host, path=facts.path, query=facts.query, user_agent=facts.user_agent, action=d.action,
        enforced=d.enforced, rule=d.rule, reason=d.reason, key=d.key, matched=matched,
        shadowed=tuple((s.rule, s.action.value) for s in d.shadowed),
        status=rec.response.status if rec.response is not None else None,
        source=rec.source, flow_id=rec.flow_id, facts=facts,
    )


def replay(flow_files: Iterable[str | os.PathLike[str]], policy_path: str | os.PathLike[str]) -> ReplayRun:
    """`replay_async` for synchronous callers; also safe to call while an event loop runs."""
    return run_sync(lambda: replay_async(flow_files, policy_path))


def run_sync[T](make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with ThreadPoolExecutor(1, thread_name_prefix="scrapeshield-replay") as pool:  # a loop runs here already
        return pool.submit(lambda: asyncio.run(make())).result()


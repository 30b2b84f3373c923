"""The running shield, apart from mitmproxy, composed from its parts in one place:

    store            state shared by replicas (memory, or Redis behind a resilient wrapper)
    engine           the decision pipeline over the live policy
    ChallengeGate    clearance, challenge pages, the shield's own endpoints
    ShadowRunner     a candidate policy deciding beside the live one (optional)
    PolicyWatcher    file polling and reload; tells the PolicyListeners of a new policy
    DecisionLog, ShieldMetrics, AdminServer   what operators see
    start()/stop()   the background tasks (watcher, SIGHUP, admin) and closing the store

The mitmproxy addon is a thin adapter over this. A runtime lives in this module's registry
(`shared_runtime`), not in the addon object, so a stock `mitmdump -s addons/shield.py` that
re-executes the script on change gets the same runtime -- and keeps every bucket, ban and score.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import TYPE_CHECKING, Any

from .. import accel
from ..challenge.endpoints import ChallengeService
from ..clock import Clock, SystemClock
from ..context import DecisionContext
from ..decision import Decision
from ..decisionlog import DecisionLog
from ..engine import Engine
from ..facts import RequestFacts
from ..health import HealthCheck
from ..livestats import LiveStats, request_signals
from ..metrics import ShieldMetrics
from ..policy.compiler import compile_file
from ..policy.model import CompiledPolicy
from ..responses import ShieldResponse, answer_status
from ..store import open_store
from ..store.base import Store
from ..store.memory import MemoryStore
from ..store.resilient import ResilientStore
from .config import RuntimeConfig
from .gate import ChallengeGate, load_keys
from .listeners import StatusSource
from .shadow import ShadowRunner
from .watcher import PolicyWatcher

if TYPE_CHECKING:
    from ..admin import AdminServer

log = logging.getLogger("scrapeshield")


class ShieldRuntime:
    def __init__(self, config: RuntimeConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.metrics = ShieldMetrics()
        self.live = LiveStats()  # for the dashboard
        policy = compile_file(config.policy_path)  # raises PolicyInvalid: never start without one
        self.store = self._open_store(policy)
        self.gate = ChallengeGate(load_keys(config.secret_file), policy, self.store, self.clock)
        self.sessions = self.gate.sessions
        self.engine = Engine(policy, self.store, self.clock, clearance=self.gate.cleared, sessions=self.sessions)
        self.shadow = ShadowRunner(config.shadow_policy_path, self.clock, self.metrics, self.sessions) \
            if config.shadow_policy_path else None
        self.decision_log = DecisionLog(config.decision_log, policy.hash_ips)
        self.decision_log.answer_status = lambda d: answer_status(d, self.policy)
        self.health = HealthCheck(self.store, lambda: self.policy.version_hash,
                                  lambda: "closed" if self.policy.fail_closed else "open",
                                  timeout=min(2.0, max(0.25, config.store_timeout)))
        self.watcher = PolicyWatcher(config.policy_path, policy, on_success=self._reloaded,
                                     on_failure=lambda: self.metrics.reloads.labels("failed").inc())
        self.watcher.listeners += [self, self.gate]
        self.watcher.lint_at_start()
        self.status_sources: list[StatusSource] = []  # parts outside the runtime (the addon) add theirs
        self._tasks: list[asyncio.Task[Any]] = []
        self._admin: AdminServer | None = None
        self.metrics.set_policy(policy.name, policy.version_hash, policy.source, self.watcher.loaded_at)
        self.metrics.tracked_keys.set_function(self.store.tracked_keys)
        self.metrics.count_from("scrapeshield_challenge_events", "Challenges issued and verification/clearance "
                                "outcomes by stage.reason", self.gate.service.counters)

    @property
    def challenges(self) -> ChallengeService:
        return self.gate.service

    def _open_store(self, policy: CompiledPolicy) -> Store:
        url = self.config.store_url or "memory://"
        if url.startswith("memory:"):
            return open_store(url, max_keys=policy.max_keys)
        primary = open_store(url, timeout=self.config.store_timeout)
        return ResilientStore(primary, MemoryStore(max_keys=policy.max_keys),
                              "closed" if policy.fail_closed else "open", log, on_change=self._store_changed)

    def _store_changed(self, degraded: bool) -> None:
        self.metrics.store_degraded.set(1 if degraded else 0)
        if degraded:
            self.metrics.store_outages.inc()

    @property
    def policy(self) -> CompiledPolicy:
        return self.engine.policy

    # -- deciding ----------------------------------------------------------------------------
    async def decide(self, facts: RequestFacts) -> Decision:
        return await self.decide_in(DecisionContext(facts))

    async def decide_in(self, ctx: DecisionContext) -> Decision:
        """Decide, count and log one request; the context keeps what the stages found (for the response)."""
        t0 = time.perf_counter()
        decision = await self.engine.decide_in(ctx)
        seconds = time.perf_counter() - t0
        difference = await self.shadow.difference(ctx, decision) if self.shadow is not None else None
        self.record(ctx.facts, decision, seconds, shadow=difference, ctx=ctx)
        return decision

    def observe_response(self, ctx: DecisionContext, status: int, content_type: str | None,
                         body: bytes | None) -> None:
        self.engine.observe_response(ctx, status, content_type, body)

    def html_scan_bytes(self) -> int:
        """How much of an HTML response body `observe_response` reads: 0 when the policy's detectors
        read none (the response hook then decodes nothing)."""
        detectors = self.engine.detectors
        return detectors.html_scan_bytes if detectors is not None else 0

    def record(self, facts: RequestFacts, decision: Decision, seconds: float = 0.0,
               shadow: dict[str, Any] | None = None, ctx: DecisionContext | None = None) -> None:
        """Count and log a decision (also one made outside the engine, e.g. for a malformed request).

        `shadow` is what the shadow policy decided instead; such a line is written even for an
        allowed request, which the decision log otherwise leaves out.
        """
        self.metrics.decided(decision, seconds)
        self.live.observe(decision, request_signals(ctx, decision),
                          () if decision.score is None else ((decision.rule.removeprefix("score:"), decision.score),))
        if decision.rule == "error":
            self.metrics.errors.labels("engine").inc()
        self.decision_log.record(facts, decision, self.clock.now(), None if shadow is None else {"shadow": shadow},
                                 context=ctx)

    # -- challenges (see ChallengeGate) --------------------------------------------------------------
    def challenge_response(self, facts: RequestFacts, decision: Decision) -> ShieldResponse:
        return self.gate.challenge_response(facts, decision)

    def session_set_cookie(self, ctx: DecisionContext) -> str | None:
        return self.gate.session_set_cookie(ctx)

    def is_reserved(self, path: str) -> bool:
        return self.gate.is_reserved(path)

    def reserved_allowed(self, facts: RequestFacts) -> bool:
        return self.gate.reserved_allowed(facts)

    async def handle_reserved(self, facts: RequestFacts, body: bytes) -> ShieldResponse:
        return await self.gate.handle_reserved(facts, body)

    # -- reloading (see PolicyWatcher) ---------------------------------------------------------
    def reload(self, force: bool = False) -> bool:
        return self.watcher.reload(force)

    def policy_changed(self, policy: CompiledPolicy) -> None:
        """The runtime's own parts follow a new policy (PolicyListener)."""
        self.engine.swap(policy)
        if isinstance(self.store, ResilientStore):  # the policy owns the fail mode
            self.store.fail_mode = "closed" if policy.fail_closed else "open"
        self.decision_log.hash_ips = policy.hash_ips  # `log.hash_ips` applies from the next line on

    def _reloaded(self, policy: CompiledPolicy) -> None:
        self.metrics.reloads.labels("ok").inc()
        self.metrics.set_policy(policy.name, policy.version_hash, policy.source, self.watcher.loaded_at)

    @property
    def loaded_at(self) -> float:
        return self.watcher.loaded_at

    @property
    def last_reload_error(self) -> str | None:
        return self.watcher.last_reload_error

    @property
    def reloads_ok(self) -> int:
        return self.watcher.reloads_ok

    @property
    def reloads_failed(self) -> int:
        return self.watcher.reloads_failed

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start background tasks; needs a running event loop. Synchronous on purpose (see module doc)."""
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        if self.config.reload_interval > 0:
            self._tasks.append(loop.create_task(self.watcher.watch(self.config.reload_interval)))
        try:
            loop.add_signal_handler(signal.SIGHUP, self.watcher.reload_on_signal)
            loop.add_signal_handler(signal.SIGUSR1, self.decision_log.reopen)  # after logrotate
        except (NotImplementedError, RuntimeError, ValueError):
            pass
        if self.config.admin:
            from ..admin import AdminServer  # aiohttp only for a runtime that serves (not replay)

            self._admin = AdminServer(self, self.config.admin)
            self._tasks.append(loop.create_task(self._admin.start()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        if self._admin is not None:
            await self._admin.stop()
            self._admin = None
        await self.store.close()

    def status(self) -> dict[str, Any]:
        counters = {
            "decisions": {f"{rule}/{action}{'' if enforced else ' (monitor)'}": n
                          for (rule, action, enforced), n in self.metrics.decision_counts.items()},
            "engine_errors": self.engine.errors,
            "reloads_ok": self.reloads_ok,
            "reloads_failed": self.reloads_failed,
            "tracked_keys": self.store.tracked_keys(),
        }
        status: dict[str, Any] = {"policy": self.watcher.status(), "counters": counters, "store": self.store.status(),
                                  "compiled_core": {"used": accel.STATUS.compiled, "detail": accel.STATUS.detail}}
        if self.engine.detectors is not None:
            status["detectors"] = self.engine.detectors.stats(self.clock.now())
        if self.shadow is not None:
            status.update(self.shadow.status())
        for source in self.status_sources:
            status.update(source.status())
        return status


_RUNTIMES: dict[RuntimeConfig, ShieldRuntime] = {}


def shared_runtime(config: RuntimeConfig) -> ShieldRuntime:
    """One runtime per configuration per process, surviving `-s` script re-execution."""
    rt = _RUNTIMES.get(config)
    if rt is None:
        rt = ShieldRuntime(config)
        _RUNTIMES[config] = rt
    return rt

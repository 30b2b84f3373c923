"""The running shield, apart from mitmproxy: policy (with hot reload), engine, shadow engine,
store, metrics, decision log and admin server. The mitmproxy addon is a thin adapter over this.

A runtime lives in this module's registry (`shared_runtime`), not in the addon object, so a
stock `mitmdump -s addons/shield.py` that re-executes the script on change gets the same
runtime -- and keeps every bucket, ban and score -- instead of starting empty.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from typing import Any

from .challenge.binding import ClientBinding
from .challenge.endpoints import ChallengeService
from .challenge.keys import DEFAULT_ENV as CHALLENGE_KEYS_ENV
from .challenge.keys import KeyRing
from .clock import Clock, SystemClock
from .context import DecisionContext
from .decision import Decision
from .decisionlog import DecisionLog
from .engine import Engine
from .facts import RequestFacts
from .gcra import BucketLimit
from .livestats import LiveStats, request_signals
from .metrics import ShieldMetrics
from .policy.compiler import compile_bytes, compile_file
from .policy.errors import PolicyInvalid
from .policy.model import CompiledPolicy
from .responses import ShieldResponse, answer_status
from .session import cookie as session_cookie
from .session.policy import SESSION
from .session.stage import BUDGET_RULE_NAME, SessionStage, set_cookie_header, stack_of
from .store import open_store
from .store.base import Batch, BucketCheck
from .store.memory import MemoryStore

log = logging.getLogger("scrapeshield")


@dataclass(frozen=True)
class RuntimeConfig:
    policy_path: str
    store_url: str = "memory://"
    admin: str = "127.0.0.1:9090"  # "" disables the admin server
    decision_log: str = "-"
    shadow_policy_path: str = ""
    reload_interval: float = 1.0  # seconds between stat() polls; 0 disables polling
    store_timeout: float = 1.0
    secret_file: str = ""  # challenge/clearance keys; else $SCRAPESHIELD_CHALLENGE_KEYS; else ephemeral
    admin_token_file: str = ""  # control API bearer token; else $SCRAPESHIELD_ADMIN_TOKEN; else the API is off


SETTLE_SECONDS = 0.25  # a policy file modified more recently than this may still be being written
RACY_SECONDS = 2.0  # how long after a change a same-size rewrite may keep the same mtime (coarse clocks)


def _stat_signature(path: str) -> tuple[Any, ...] | None:
    """What changes when the file changes: follows symlinks, so ConfigMap `..data` swaps count."""
    try:
        st = os.stat(path)
        return (os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        return None


class ShieldRuntime:
    def __init__(self, config: RuntimeConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.metrics = ShieldMetrics()
        self.live = LiveStats()  # for the dashboard
        policy = compile_file(config.policy_path)  # raises PolicyInvalid: never start without one
        self.store = self._open_store(policy)
        self.challenges = ChallengeService(_load_keys(config.secret_file), policy.challenge)
        # Sessions are signed with the challenge key ring: one secret to rotate, shared by replicas.
        self.sessions = SessionStage(self.challenges.keys, self._clearance_token)
        self.engine = Engine(policy, self.store, self.clock, clearance=self._cleared, sessions=self.sessions)
        # The reserved endpoints (/.shield/verify) sit outside the policy -- a challenge rule must not
        # challenge its own verify endpoint -- so they get a fixed per-IP budget of their own.
        self._reserved = MemoryStore(max_keys=100_000)
        self.shadow: Engine | None = None
        if config.shadow_policy_path:
            self.shadow = Engine(compile_file(config.shadow_policy_path), None, self.clock, sessions=self.sessions)
        self.decision_log = DecisionLog(config.decision_log, policy.hash_ips)
        self.decision_log.answer_status = lambda d: answer_status(d, self.policy)
        self.loaded_at = time.time()
        self.last_reload_error: str | None = None
        self.reloads_ok = 0
        self.reloads_failed = 0
        self._signature = _stat_signature(config.policy_path)
        self._recheck = True  # the file may have changed between compiling it and this stat()
        self._content_hash: str | None = policy.version_hash
        self._tasks: list[asyncio.Task[Any]] = []
        self._admin: Any = None
        self.metrics.set_policy(policy.name, policy.version_hash, policy.source, self.loaded_at)
        self.metrics.tracked_keys.set_function(self.store.tracked_keys)
        self.metrics.count_from("scrapeshield_challenge_events", "Challenges issued and verification/clearance "
                                "outcomes by stage.reason", self.challenges.counters)
        self.extensions: list[Any] = []  # challenge service, detectors, ... (see attach())

    def _open_store(self, policy: CompiledPolicy):  # type: ignore[no-untyped-def]
        url = self.config.store_url or "memory://"
        if url.startswith("memory:"):
            return open_store(url, max_keys=policy.max_keys)
        from .store.memory import MemoryStore
        from .store.resilient import ResilientStore

        primary = open_store(url, timeout=self.config.store_timeout)
        return ResilientStore(primary, MemoryStore(max_keys=policy.max_keys),
                              "closed" if policy.fail_closed else "open", log,
                              on_change=self._store_changed)

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
        difference = None
        if self.shadow is not None:
            difference = await self._shadow_difference(ctx.fork(), decision)
        self.record(ctx.facts, decision, seconds, shadow=difference, ctx=ctx)
        return decision

    def observe_response(self, ctx: DecisionContext, status: int, content_type: str | None,
                         body: bytes | None) -> None:
        self.engine.observe_response(ctx, status, content_type, body)

    # -- sessions ------------------------------------------------------------------------------
    def _session_id(self, facts: RequestFacts) -> str | None:
        """The request's valid session id, read from its Cookie header (what a clearance binds to)."""
        settings = self.policy.section(SESSION)
        cookie = facts.header_map.get("cookie")
        if settings is None or not cookie:
            return None
        presented = session_cookie.read(self.challenges.keys, cookie, stack_of(DecisionContext(facts)),
                                        self.clock.now(), settings.ttl, settings.cookie_name)
        return presented.cookie.id if presented.cookie is not None else None

    def session_set_cookie(self, ctx: DecisionContext) -> str | None:
        """The Set-Cookie value the response to this request carries (a new or updated session)."""
        settings = self.policy.section(SESSION)
        if ctx.session is None or settings is None:
            return None
        return set_cookie_header(self.challenges.keys, ctx.session, settings, ctx.facts.is_tls)

    def _binding(self, facts: RequestFacts) -> ClientBinding:
        return self.challenges.binding(facts.client_ip, facts.user_agent, self._session_id(facts))

    # -- challenges ----------------------------------------------------------------------------
    def _cleared(self, facts: RequestFacts, rule: str) -> bool:
        if rule == BUDGET_RULE_NAME:
            return False  # a spent record budget is never lifted by the clearance that spent it
        svc = self.challenges
        cookie = facts.header_map.get("cookie")
        if not cookie:
            return False
        return svc.check_clearance(cookie, self._binding(facts), rule, self.clock.now())

    def _clearance_token(self, facts: RequestFacts) -> str | None:
        cookie = facts.header_map.get("cookie")
        if not cookie:
            return None
        return self.challenges.clearance_token(cookie, self._binding(facts), self.clock.now())

    def challenge_response(self, facts: RequestFacts, decision: Decision) -> ShieldResponse:
        svc = self.challenges
        return_to = facts.path + ("?" + facts.query if facts.query else "")
        resp = svc.challenge_response(decision.rule, decision.difficulty or self.policy.challenge.difficulty,
                                      return_to, self._binding(facts),
                                      facts.header_map.get("accept"), decision.no_js, self.clock.now())
        if decision.status:
            return ShieldResponse(decision.status, resp.headers, resp.body)
        return resp

    def is_reserved(self, path: str) -> bool:
        return self.challenges.is_reserved(path)

    def reserved_allowed(self, facts: RequestFacts) -> bool:
        """The verify endpoint's own rate limit: 30 per minute per client address."""
        res = self._reserved.apply_now(Batch(buckets=(BucketCheck("reserved", facts.client_ip, _RESERVED_LIMIT),)),
                                       self.clock.now())
        return res.refused < 0

    async def handle_reserved(self, facts: RequestFacts, body: bytes) -> ShieldResponse:
        svc = self.challenges
        policy = self.policy
        settings = policy.section(SESSION)

        async def solved() -> None:  # solves on a stack and a network make the next challenge there harder
            if settings is None:
                return
            prefix = self.sessions.prefix(facts.client_ip, policy.ipv4_prefix, policy.ipv6_prefix)
            ups = self.sessions.tracker(settings).solved_updates(prefix, stack_of(DecisionContext(facts)))
            try:
                await self.store.apply(Batch(scores=ups), self.clock.now())
            except Exception:  # the count is advice; the solve stands
                log.warning("could not count a solved challenge", exc_info=True)

        return await svc.handle(facts.method, facts.path, facts.query, body, self._binding(facts), facts.is_tls,
                                self.clock.now(), self.store.spend_once, facts.header_map.get("cookie"), solved)

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

    async def _shadow_difference(self, ctx: DecisionContext, live: Decision) -> dict[str, Any] | None:
        try:
            shadow = await self.shadow.decide_in(ctx)  # type: ignore[union-attr]
        except Exception:  # the candidate policy must never hurt live traffic
            log.exception("shadow policy failed")
            return None
        if shadow.effective is live.effective:
            return None
        self.metrics.shadow_differences.labels(live.effective.value, shadow.effective.value).inc()
        return {"rule": shadow.rule, "action": shadow.effective.value, "reason": shadow.reason}

    # -- reloading ---------------------------------------------------------------------------
    def reload(self, force: bool = False) -> bool:
        """Recompile the policy if its file changed. The old policy stays on any failure.

        A poll (force=False) ignores a file written less than SETTLE_SECONDS ago, one that changes
        while it is read, and a freshly emptied one: an in-place save may be half done, and half a
        policy can be a valid one. Such a file is looked at again on the next poll. A file whose stat
        changed is recompiled even if its bytes did not (`touch` picks up an edited `ip_lists` file);
        `force` (SIGHUP) recompiles at once, whatever changed.
        """
        path = self.config.policy_path
        sig = _stat_signature(path)
        if not force and sig == self._signature and not self._recheck:
            return False
        if sig is None:
            self._signature, self._recheck, self._content_hash = None, False, None
            self._reload_failed(f"{path}: file is missing; keeping the last good policy")
            return False
        age = time.time() - sig[3] / 1e9
        if not force and 0 <= age < SETTLE_SECONDS:
            return False
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            self._signature, self._recheck, self._content_hash = sig, False, None
            self._reload_failed(f"{path}: cannot read policy: {exc.strerror or exc}; keeping the last good policy")
            return False
        if _stat_signature(path) != sig:
            if force:
                log.warning("policy file %s changed while being read; it is read again on the next poll", path)
            return False
        if not data.strip() and not force and abs(age) < RACY_SECONDS:
            return False  # truncated by an in-place save whose writer has not written yet
        touched, self._signature = sig != self._signature, sig
        # Within RACY_SECONDS of its mtime, a same-size rewrite may keep the same stat signature
        # (coarse timestamps): until then, polls compare the content too.
        self._recheck = abs(age) < RACY_SECONDS
        digest = hashlib.sha256(data).hexdigest()[:16]  # what compile_bytes calls version_hash
        if not force and not touched and digest == self._content_hash:
            return False  # a content check of an unchanged file
        self._content_hash = digest  # a touched file is recompiled: that picks up edited ip_lists files
        try:
            policy = compile_bytes(data, path)
        except PolicyInvalid as exc:
            self._reload_failed(str(exc))
            return False
        except Exception as exc:  # pragma: no cover - a compiler bug must not kill the proxy
            self._reload_failed(f"{path}: {type(exc).__name__}: {exc}")
            return False
        self.engine.swap(policy)
        self.challenges.config = policy.challenge
        if hasattr(self.store, "fail_mode"):  # ResilientStore: the policy owns the fail mode
            self.store.fail_mode = "closed" if policy.fail_closed else "open"
        self.decision_log.hash_ips = policy.hash_ips  # `log.hash_ips` applies from the next line on
        for ext in self.extensions:
            if hasattr(ext, "policy_changed"):
                ext.policy_changed(policy)
        self.loaded_at = time.time()
        self.last_reload_error = None
        self.reloads_ok += 1
        self.metrics.reloads.labels("ok").inc()
        self.metrics.set_policy(policy.name, policy.version_hash, policy.source, self.loaded_at)
        log.info("policy reloaded from %s (version %s)", path, policy.version_hash)
        return True

    def _reload_failed(self, message: str) -> None:
        self.reloads_failed += 1
        self.metrics.reloads.labels("failed").inc()
        if message != self.last_reload_error:  # once per distinct error, not once per poll
            log.error("policy reload rejected, keeping version %s:\n%s", self.policy.version_hash, message)
        self.last_reload_error = message

    async def _watch(self) -> None:
        interval = self.config.reload_interval
        while True:
            await asyncio.sleep(interval)
            try:
                self.reload()
            except Exception:  # pragma: no cover
                log.exception("policy watcher error")

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start background tasks; needs a running event loop. Synchronous on purpose (see module doc)."""
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        if self.config.reload_interval > 0:
            self._tasks.append(loop.create_task(self._watch()))
        try:
            loop.add_signal_handler(signal.SIGHUP, lambda: self.reload(force=True))
            loop.add_signal_handler(signal.SIGUSR1, self.decision_log.reopen)  # after logrotate
        except (NotImplementedError, RuntimeError, ValueError):
            pass
        if self.config.admin:
            from .admin import AdminServer

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
        p = self.policy
        counters = {
            "decisions": {
                f"{s.labels['rule']}/{s.labels['action']}{'' if s.labels['enforced'] == 'true' else ' (monitor)'}": int(s.value)
                for metric in self.metrics.decisions.collect() for s in metric.samples if s.name.endswith("_total")
            },
            "engine_errors": self.engine.errors,
            "reloads_ok": self.reloads_ok,
            "reloads_failed": self.reloads_failed,
            "tracked_keys": self.store.tracked_keys(),
        }
        status: dict[str, Any] = {
            "policy": {"file": p.source, "name": p.name, "version": p.version_hash, "loaded_at": self.loaded_at,
                       "monitor": p.monitor, "rules": len(p.rules), "last_reload_error": self.last_reload_error},
            "counters": counters,
            "store": self.store.status(),
        }
        if self.shadow is not None:
            status["shadow_policy"] = {"file": self.shadow.policy.source, "version": self.shadow.policy.version_hash}
        for ext in self.extensions:
            if hasattr(ext, "status"):
                status.update(ext.status())
        return status


_RESERVED_LIMIT = BucketLimit(30, 60.0, 29)


def _load_keys(secret_file: str) -> KeyRing:
    """Replicas that share a secret accept each other's challenges and cookies."""
    if secret_file:
        return KeyRing.from_file(secret_file)
    if os.environ.get(CHALLENGE_KEYS_ENV):
        return KeyRing.from_env(CHALLENGE_KEYS_ENV)
    log.warning("no --secret-file or $%s: challenge keys are ephemeral (cookies die with this process, "
                "replicas do not share them)", CHALLENGE_KEYS_ENV)
    return KeyRing.generate()


_RUNTIMES: dict[RuntimeConfig, ShieldRuntime] = {}


def shared_runtime(config: RuntimeConfig) -> ShieldRuntime:
    """One runtime per configuration per process, surviving `-s` script re-execution."""
    rt = _RUNTIMES.get(config)
    if rt is None:
        rt = ShieldRuntime(config)
        _RUNTIMES[config] = rt
    return rt

"""The decision engine: RequestFacts + CompiledPolicy + Store + Clock -> Decision.

`Engine` holds what outlives one request (the store, the monitor store, the detectors, the
clock) and runs the stages of `stages.py` in order:

    session -> observe -> match -> count monitored -> signals -> batch -> store (one round trip) -> resolve

The session stage (`scrapeshield.session`) runs first when the policy has a `session:` section:
the session is a key part and a condition for everything after it. Its counters and the
clearance's record budget ride in the same batch.

Everything the store must know for a request goes to it as ONE batch, so a networked store
costs one round trip. Policies change only through `swap()`, between decisions: a decision
already running keeps the policy it started with.
"""
from __future__ import annotations

import logging
from dataclasses import replace

from ..clock import Clock, SystemClock
from ..context import DecisionContext
from ..decision import Action, Decision
from ..detectors import CROSS_SESSION_WALK, CrowdView, DetectorSet, Observation
from ..detectors.policy import DETECTORS, DetectorsSection
from ..facts import RequestFacts
from ..policy.model import CompiledPolicy
from ..policy.registry import SignalSource
from ..session.policy import SESSION, SESSION_COUNTERS
from ..session.stage import BUDGET_BUCKET, BUDGET_RULE, SessionStage
from ..session.state import SessionContext, SessionSettings, SessionTracker
from ..store.base import EMPTY_RESULT, Batch, BatchResult, Logs, ScoreUpdate, Store, StoreError
from ..store.memory import MemoryStore
from . import stages
from .explain import rule_traces
from .stages import ClearanceCheck, Matches
from .trace import BucketTrace, DecisionTrace, ScoreTrace, TraceRecorder

log = logging.getLogger("scrapeshield.engine")


class Engine:
    def __init__(
        self,
        policy: CompiledPolicy,
        store: Store | None = None,
        clock: Clock | None = None,
        *,
        clearance: ClearanceCheck | None = None,
        signal_sources: tuple[SignalSource, ...] = (),
        sessions: SessionStage | None = None,
    ) -> None:
        self._policy = policy
        self.store: Store = store if store is not None else MemoryStore(max_keys=policy.max_keys)
        self.monitor_store = MemoryStore(max_keys=min(policy.max_keys, 100_000))
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.clearance = clearance
        self.signal_sources = signal_sources  # beside the policy's own (the registry's sources)
        self.sessions = sessions  # the session stage; None: no sessions whatever the policy says
        self.errors = 0
        self.detectors = _detector_set(policy, self.store)
        self._crowds: tuple[CompiledPolicy | None, bool] = (None, False)  # (policy, a score weighs crowd walks)

    @property
    def policy(self) -> CompiledPolicy:
        return self._policy

    def swap(self, policy: CompiledPolicy) -> None:
        """Install a new policy between requests. Decisions already running keep the old one."""
        old, new = self._policy.section(DETECTORS), policy.section(DETECTORS)
        if (old.config if old else None) != (new.config if new else None):  # unchanged settings keep their state
            self.detectors = _detector_set(policy, self.store)
        self._policy = policy
        keep = policy.bucket_ids | {BUDGET_BUCKET}
        self.store.retain_buckets(keep)
        self.monitor_store.retain_buckets(keep)

    # -- deciding ------------------------------------------------------------------------------
    async def decide(self, facts: RequestFacts) -> Decision:
        return await self.decide_in(DecisionContext(facts))

    async def decide_in(self, ctx: DecisionContext, trace: TraceRecorder | None = None) -> Decision:
        """Decide the request of `ctx`, filling the context as the stages go (see stages.py)."""
        policy = self._policy  # one policy for the whole decision, even if a reload lands meanwhile
        ctx.now = self.clock.now()
        try:
            return await self._run(policy, ctx, trace)
        except StoreError as exc:
            self.errors += 1
            return stages.fail_decision(policy, f"store unavailable: {exc}")
        except Exception as bug:  # never let a bug take the request down with it
            self.errors += 1
            log.exception("engine error on %r", ctx.facts)
            return stages.fail_decision(policy, f"internal error: {type(bug).__name__}")

    async def explain(self, request: RequestFacts | DecisionContext) -> DecisionTrace:
        """Decide as `decide` does (same stages, same state changes) and say why, rule by rule."""
        ctx = request if isinstance(request, DecisionContext) else DecisionContext(request)
        policy = self._policy
        recorder = TraceRecorder()
        decision = await self.decide_in(ctx, recorder)
        rules = rule_traces(policy, ctx, recorder.matches, self.clearance) if recorder.matches else ()
        detectors, key = self.detectors, ctx.detector_key
        state = detectors.describe(key) if detectors is not None and key is not None else None
        return recorder.freeze(decision, rules, key, state)

    async def _run(self, policy: CompiledPolicy, ctx: DecisionContext, trace: TraceRecorder | None) -> Decision:
        store = self.store
        # The memory store, called directly: compiled, a native call instead of a bound method looked
        # up through the Store protocol (`sync_apply`) and called through the interpreter's C API.
        # Its exact class only: a subclass may answer as a networked store does (the tests' do).
        local = store if type(store) is MemoryStore else None
        settings, sessions = policy.section(SESSION), self.sessions
        session: SessionContext | None = None
        early: tuple[float, ...] = ()  # counter values read before matching (policies whose rules name one)
        if settings is not None and sessions is not None:
            # The price is read with the counters on a networked store (one round trip), and only for
            # a challenge on one in process (no round trip: a store operation per counter less). The
            # memory store is in process: its `sync_apply` (a bound method made per read) is not asked.
            session = sessions.begin(ctx, settings, policy.ipv4_prefix, policy.ipv6_prefix,
                                     local is None and store.sync_apply is None)
            if session.counters and SESSION_COUNTERS in policy.needs:
                early = await self._read_counters(policy, ctx, session, sessions.tracker(settings))
        section = policy.section(DETECTORS)
        detectors = self.detectors
        if detectors is not None and section is not None:
            if local is not None or store.sync_append_logs is not None:  # in-process logs: no coroutine
                self._observe_now(detectors, section, policy, ctx)
            else:
                await self._observe(detectors, section, policy, ctx)

        m = stages.match(policy, ctx, self.clearance)
        if trace is not None:
            trace.matches = m
        if m.monitored_limits:
            stages.count_monitored(policy, ctx, m, self.monitor_store, trace)

        scores: tuple[ScoreUpdate, ...] = ()
        if m.terminal is None and policy.scores:
            if trace is None:  # only the signals some score weighs
                signals = stages.weighted_signals(policy, ctx, self.signal_sources)
            else:
                signals = trace.signals = stages.collect_signals(policy, ctx, self.signal_sources)
            scores = stages.score_updates(policy, ctx, m.rule_scores, signals,
                                          section.key if section is not None else None)
        batch = stages.build_batch(policy, ctx, m, scores)
        if session is not None and settings is not None and sessions is not None:
            batch = _with_session(sessions, batch, ctx, m, session, settings, len(early))
        res: BatchResult | None = None
        if batch is not stages.NO_BATCH:
            if local is not None:
                res = local.apply_now(batch, ctx.now)
            else:
                sync_apply = store.sync_apply  # `_apply` inlined: one coroutine less per decision
                res = sync_apply(batch, ctx.now) if sync_apply is not None else await store.apply(batch, ctx.now)
        if trace is not None and res is not None:
            _trace_store(trace, policy, m, batch, res)
        if session is not None and len(session.counters) > len(early) and res is not None \
                and res.banned_key is None and settings is not None and sessions is not None:
            counted = len(batch.scores) - (len(session.counters) - len(early))
            ctx.level_signals = sessions.tracker(settings).after(session, early + res.scores[counted:])

        outcome = stages.resolve(policy, ctx, m, batch, res, self.clearance)
        if outcome.ban is not None:
            key, seconds = outcome.ban
            await self.store.ban(key, ctx.now + seconds, ctx.now)
        decision = outcome.decision
        if session is not None and decision.action is Action.CHALLENGE and settings is not None \
                and sessions is not None and not session.priced:
            await self._price(sessions, settings, session, ctx.now)
        if session is not None and decision.action is Action.CHALLENGE and session.difficulty > decision.difficulty:
            decision = replace(decision, difficulty=session.difficulty)  # adaptive: identities cost more
        return stages.with_shadow(decision, m.shadowed)

    async def _read_counters(self, policy: CompiledPolicy, ctx: DecisionContext, session: SessionContext,
                             tracker: SessionTracker) -> tuple[float, ...]:
        """The session counters, bumped and read before the rules are matched, so a rule may name a
        counter signal. The penalty box is asked first, as in the request's own batch: a banned
        client's counters stay untouched (and the request's batch carries them, to be refused again)."""
        ban_keys = tuple([ctx.key(k) for k in policy.ban_keys])
        res = await self._apply(Batch(ban_keys, (), session.counters), ctx.now)
        if res.banned_key is not None:
            return ()
        ctx.level_signals = tracker.after(session, res.scores)
        return res.scores

    async def _observe(self, detectors: DetectorSet, section: DetectorsSection, policy: CompiledPolicy,
                       ctx: DecisionContext) -> None:
        """The observe stage. With a shared store the detectors' logs cost one store call, and only
        for requests that log something (pages, records): their signals feed this request's scores,
        so they are read before its batch."""
        obs, key, ids, crowd = self._observation(detectors, section, policy, ctx)
        plan = detectors.log_plan(key, obs, ids, crowd)
        logs: Logs = ()
        if plan is not None:
            sync_logs = self.store.sync_append_logs
            logs = sync_logs(plan.appends, ctx.now) if sync_logs is not None else \
                await self.store.append_logs(plan.appends, ctx.now)
        ctx.detector_signals = detectors.observe_request(key, obs, ids, crowd, plan, logs)

    def _observe_now(self, detectors: DetectorSet, section: DetectorsSection, policy: CompiledPolicy,
                     ctx: DecisionContext) -> None:
        """`_observe` for a store that never waits (its logs, if any, are appended in process)."""
        obs, key, ids, crowd = self._observation(detectors, section, policy, ctx)
        plan = detectors.log_plan(key, obs, ids, crowd)
        logs: Logs = ()
        if plan is not None:
            store = self.store
            if type(store) is MemoryStore:  # a native call compiled (see `_run`)
                logs = store.append_logs_now(plan.appends, ctx.now)
            else:
                sync_logs = store.sync_append_logs
                assert sync_logs is not None
                logs = sync_logs(plan.appends, ctx.now)
        ctx.detector_signals = detectors.observe_request(key, obs, ids, crowd, plan, logs)

    def _observation(self, detectors: DetectorSet, section: DetectorsSection, policy: CompiledPolicy,
                     ctx: DecisionContext) -> tuple[Observation, str, list[tuple[str, int]], CrowdView | None]:
        obs = stages.observation(section, ctx)
        key = ctx.detector_key
        assert key is not None
        ids = [] if obs.is_asset else ctx.path_ids  # detectors.record_ids, read once per request
        crowds = self._crowds
        if crowds[0] is not policy:
            crowds = self._crowds = (policy, detectors.watches_crowds and _weighs_crowds(policy))
        crowd = stages.crowd_view(policy, ctx) if ids and crowds[1] else None
        return obs, key, ids, crowd

    async def _price(self, sessions: SessionStage, settings: SessionSettings, session: SessionContext,
                     now: float) -> None:
        """A challenge to a request that did not read the going price (rare: a session with standing
        challenged by its own score) reads it now, so no challenge is cheaper than the market's."""
        counters = sessions.tracker(settings).price_updates(session)
        if not counters:
            return
        try:
            res = await self._apply(Batch(scores=counters), now)
        except StoreError:  # the price is advice: the rule's own difficulty stands
            return
        sessions.tracker(settings).after(session, res.scores)

    async def _apply(self, batch: Batch, now: float) -> BatchResult:
        sync_apply = self.store.sync_apply
        if sync_apply is not None:  # an in-process store: skip one coroutine, same result
            return sync_apply(batch, now)
        return await self.store.apply(batch, now)

    # -- after the response ----------------------------------------------------------------------
    def observe_response(self, ctx: DecisionContext, status: int, content_type: str | None,
                         body: bytes | None) -> None:
        """Feed a response to the detectors (probe rate, referenced assets)."""
        detectors, key = self.detectors, ctx.detector_key
        if detectors is not None and key is not None:
            detectors.observe_response(key, status, content_type, body, self.clock.now(), is_asset=ctx.is_asset)


def _weighs_crowds(policy: CompiledPolicy) -> bool:
    """Whether a score weighs `cross_session_walk`: only then are record requests logged per crowd."""
    return any(signal == CROSS_SESSION_WALK for score in policy.scores for signal, _ in score.weights)


def _detector_set(policy: CompiledPolicy, store: Store) -> DetectorSet | None:
    """The policy's detectors; with a store shared between replicas (one that may wait: Redis) the
    state that must be seen whole -- walks, timing, crowds -- is kept in the store's logs."""
    section = policy.section(DETECTORS)
    return DetectorSet(section.config, shared=store.sync_append_logs is None) if section is not None else None


def _trace_store(trace: TraceRecorder, policy: CompiledPolicy, m: Matches, batch: Batch, res: BatchResult) -> None:
    if res is EMPTY_RESULT or res.banned_key is not None:
        trace.banned_key = res.banned_key
        return
    for rule, check, state in zip(m.owners, batch.buckets, res.buckets, strict=False):
        bdef = next(b for b in rule.buckets if b.uid == check.bucket_id)
        trace.buckets.append(BucketTrace(rule.name, bdef.name, check.key, state.allowed, state.remaining,
                                         state.retry_after, monitored=False))
    for score, up, value in zip(policy.scores, batch.scores, res.scores, strict=False):
        trace.scores.append(ScoreTrace(score.name, up.key, up.delta, value))


def _with_session(sessions: SessionStage, batch: Batch, ctx: DecisionContext, m: Matches, session: SessionContext,
                  settings: SessionSettings, counted: int = 0) -> Batch:
    """The batch plus the session counters (less the first `counted`, read before matching) and,
    for a record fetched under a clearance, one record of the clearance's budget (owned by BUDGET_RULE)."""
    budget = None
    if not m.refused_outright:
        budget = sessions.budget_check(ctx.facts, session, settings)
    counters = session.counters[counted:] if counted else session.counters
    if not counters and budget is None:
        return batch
    buckets = batch.buckets
    if budget is not None:
        buckets = (*buckets, budget)
        m.owners.append(BUDGET_RULE)
    return Batch(batch.ban_keys, buckets, batch.scores + counters)

"""The decision engine: RequestFacts + CompiledPolicy + Store + Clock -> Decision.

One pass over the rules in order. Direct rules (allow, block, challenge, ...) end the pass;
`log` rules and rate-limit rules only collect. Everything the store must know for the request
(penalty-box keys, every bucket of every matching limit rule, score updates) goes to the store
as ONE batch, so a networked store costs one round trip. Monitored rules record what they would
have done and let the pass continue; their buckets live in a local store so a dry run never
spends the enforced buckets.
"""
from __future__ import annotations

import logging
from typing import Callable, Mapping, Protocol

from .clock import Clock
from .decision import ALLOW_DEFAULT, Action, Decision, RateInfo
from .facts import RequestFacts
from .netaddr import MalformedRequest
from .policy.model import BucketDef, CompiledPolicy, Rule, ScoreDef
from .store.base import Batch, BatchResult, BucketCheck, ScoreUpdate, Store, StoreError
from .store.memory import MemoryStore

log = logging.getLogger("scrapeshield.engine")

ClearanceCheck = Callable[[RequestFacts, str], bool]
SignalSource = Callable[[RequestFacts, CompiledPolicy], Mapping[str, float]]


class DecisionObserver(Protocol):
    def decided(self, facts: RequestFacts, decision: Decision, seconds: float) -> None: ...


class Engine:
    def __init__(
        self,
        policy: CompiledPolicy,
        store: Store | None = None,
        clock: Clock | None = None,
        *,
        clearance: ClearanceCheck | None = None,
        signal_sources: tuple[SignalSource, ...] = (),
    ) -> None:
        from .clock import SystemClock

        self.policy = policy
        self.store: Store = store if store is not None else MemoryStore(max_keys=policy.max_keys)
        self.monitor_store = MemoryStore(max_keys=min(policy.max_keys, 100_000))
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.clearance = clearance
        self.signal_sources = signal_sources
        self.errors = 0

    def swap(self, policy: CompiledPolicy) -> None:
        """Install a new policy between requests. Decisions already running keep the old one."""
        self.policy = policy
        keep = policy.bucket_ids
        self.store.retain_buckets(keep)
        self.monitor_store.retain_buckets(keep)

    async def decide(self, facts: RequestFacts) -> Decision:
        policy = self.policy  # one policy for the whole decision, even if a reload lands meanwhile
        try:
            return await self._decide(policy, facts, self.clock.now())
        except MalformedRequest as exc:
            self.errors += 1
            return self._fail(policy, f"malformed request: {exc}")
        except StoreError as exc:
            self.errors += 1
            return self._fail(policy, f"store unavailable: {exc}")
        except Exception as exc:  # never let a bug take the request down with it
            self.errors += 1
            log.exception("engine error on %r", facts)
            return self._fail(policy, f"internal error: {type(exc).__name__}")

    @staticmethod
    def _fail(policy: CompiledPolicy, reason: str) -> Decision:
        if policy.fail_closed:
            return Decision(Action.BLOCK, "error", reason, enforced=not policy.monitor)
        return Decision(Action.ALLOW, "error", reason)

    # ------------------------------------------------------------------------------------
    async def _decide(self, policy: CompiledPolicy, facts: RequestFacts, now: float) -> Decision:
        enforced = not policy.monitor
        shadowed: list[Decision] = []
        limit_rules: list[Rule] = []
        checks: list[BucketCheck] = []
        owners: list[Rule] = []
        rule_scores: dict[str, float] = {}
        terminal: Rule | None = None

        for rule in policy.rules:
            if not rule.match(facts):
                continue
            for sname, delta in rule.scores:
                rule_scores[sname] = rule_scores.get(sname, 0.0) + delta
            if rule.buckets:
                if rule.monitor:
                    limit_rules.append(rule)
                else:
                    key = rule.key.func(facts)  # type: ignore[union-attr]
                    for b in rule.buckets:
                        checks.append(BucketCheck(b.uid, key, b.limit))
                        owners.append(rule)
                continue
            action = rule.action
            if action is Action.LOG:
                shadowed.append(Decision(Action.LOG, rule.name, "log rule matched", enforced=False))
                continue
            if action is Action.CHALLENGE and self._cleared(facts, rule.name):
                continue
            if rule.monitor:
                shadowed.append(self._direct(rule, facts, policy, enforced=False))
                continue
            terminal = rule
            break

        # Monitored limit rules run on the local store: counted, never enforced.
        for rule in limit_rules:
            key = rule.key.func(facts)  # type: ignore[union-attr]
            mres = self.monitor_store.apply_now(
                Batch(buckets=tuple(BucketCheck(b.uid, key, b.limit) for b in rule.buckets)), now)
            if mres.refused >= 0:
                shadowed.append(self._exceeded(rule, key, rule.buckets[mres.refused], mres, False, policy))

        if terminal is not None and terminal.action is not Action.ALLOW:
            # Refused outright: no bucket is spent, but the penalty box still comes first.
            decision = self._direct(terminal, facts, policy, enforced)
            if policy.ban_keys:
                res = await self.store.apply(Batch(ban_keys=self._ban_keys(policy, facts)), now)
                if res.banned_key is not None:
                    return self._banned(policy, res, shadowed, enforced)
            if terminal.ban_for and enforced:
                await self.store.ban(decision.key, now + terminal.ban_for, now)
            return _with_shadow(decision, shadowed)

        use_scores = terminal is None and bool(policy.scores)
        score_updates: tuple[ScoreUpdate, ...] = ()
        if use_scores:
            score_updates = self._score_updates(policy, facts, rule_scores)

        batch = Batch(self._ban_keys(policy, facts) if policy.ban_keys else (), tuple(checks), score_updates)
        if batch.ban_keys or batch.buckets or batch.scores:
            res = await self.store.apply(batch, now)
        else:
            res = None

        if res is not None:
            if res.banned_key is not None:
                return self._banned(policy, res, shadowed, enforced)
            if res.refused >= 0:
                rule = owners[res.refused]
                bdef = next(b for b in rule.buckets if b.uid == checks[res.refused].bucket_id)
                decision = self._exceeded(rule, checks[res.refused].key, bdef, res, enforced, policy)
                if decision.action is Action.CHALLENGE and self._cleared(facts, rule.name):
                    decision = None  # type: ignore[assignment]
                else:
                    if rule.ban_for and enforced:
                        await self.store.ban(decision.key, now + rule.ban_for, now)
                    return _with_shadow(decision, shadowed)

        if terminal is not None:  # an allow rule
            return _with_shadow(Decision(Action.ALLOW, terminal.name, "allow rule matched"), shadowed)

        if res is not None and score_updates:
            decision = await self._score_decision(policy, facts, score_updates, res, enforced, now)
            if decision is not None:
                return _with_shadow(decision, shadowed)

        if policy.default_action is Action.ALLOW:
            return _with_shadow(ALLOW_DEFAULT, shadowed) if shadowed else ALLOW_DEFAULT
        if policy.default_action is Action.CHALLENGE and self._cleared(facts, "default"):
            return _with_shadow(ALLOW_DEFAULT, shadowed)
        return _with_shadow(Decision(policy.default_action, "default", "no rule matched", enforced=enforced,
                                     difficulty=policy.challenge.difficulty), shadowed)

    # ------------------------------------------------------------------------------------
    def _cleared(self, facts: RequestFacts, rule_name: str) -> bool:
        return self.clearance is not None and self.clearance(facts, rule_name)

    @staticmethod
    def _ban_keys(policy: CompiledPolicy, facts: RequestFacts) -> tuple[str, ...]:
        return tuple(k.func(facts) for k in policy.ban_keys)

    @staticmethod
    def _direct(rule: Rule, facts: RequestFacts, policy: CompiledPolicy, enforced: bool) -> Decision:
        key = rule.key.func(facts) if rule.key is not None else ""
        return Decision(rule.action or Action.BLOCK, rule.name, f"rule {rule.name} matched", key=key,
                        enforced=enforced, status=rule.status,
                        difficulty=rule.difficulty or policy.challenge.difficulty, no_js=rule.no_js)

    @staticmethod
    def _exceeded(rule: Rule, key: str, bdef: BucketDef, res: BatchResult, enforced: bool,
                  policy: CompiledPolicy) -> Decision:
        state = res.buckets[res.refused]
        lim = bdef.limit
        retry = max((s.retry_after for s in res.buckets if not s.allowed), default=state.retry_after)
        rate = RateInfo(bdef.name, lim.count, lim.period, lim.burst, state.remaining, state.reset, retry)
        return Decision(rule.exceed, rule.name, f"over {lim.describe()}", key=key, enforced=enforced,
                        status=rule.status, rate=rate, delay=min(retry, rule.delay_max),
                        difficulty=rule.difficulty or policy.challenge.difficulty, no_js=rule.no_js)

    @staticmethod
    def _banned(policy: CompiledPolicy, res: BatchResult, shadowed: list[Decision], enforced: bool) -> Decision:
        return _with_shadow(Decision(policy.ban_action, "ban", f"in penalty box until {res.banned_until:.0f}",
                                     key=res.banned_key or "", enforced=enforced), shadowed)

    def _score_updates(self, policy: CompiledPolicy, facts: RequestFacts,
                       rule_scores: dict[str, float]) -> tuple[ScoreUpdate, ...]:
        signals: dict[str, float] = {}
        for source in self.signal_sources:
            signals.update(source(facts, policy))
        ups = []
        for score in policy.scores:
            delta = rule_scores.get(score.name, 0.0)
            for signal, weight in score.weights:
                strength = signals.get(signal)
                if strength:
                    delta += weight * strength
            ups.append(ScoreUpdate(score.uid, score.key.func(facts), delta, score.half_life))
        return tuple(ups)

    async def _score_decision(self, policy: CompiledPolicy, facts: RequestFacts, ups: tuple[ScoreUpdate, ...],
                              res: BatchResult, enforced: bool, now: float) -> Decision | None:
        for score, up, value in zip(policy.scores, ups, res.scores):
            threshold = _threshold(score, value)
            if threshold is None:
                continue
            rule_name = f"score:{score.name}"
            if threshold.action is Action.CHALLENGE and self._cleared(facts, rule_name):
                continue
            if threshold.ban_for and enforced:
                await self.store.ban(up.key, now + threshold.ban_for, now)
            return Decision(threshold.action, rule_name, f"score {value:.1f} >= {threshold.at:g}", key=up.key,
                            enforced=enforced and threshold.action is not Action.LOG, status=threshold.status,
                            difficulty=threshold.difficulty or policy.challenge.difficulty, score=value)
        return None


def _threshold(score: ScoreDef, value: float):  # type: ignore[no-untyped-def]
    found = None
    for t in score.thresholds:
        if value >= t.at:
            found = t
        else:
            break
    return found


def _with_shadow(decision: Decision, shadowed: list[Decision]) -> Decision:
    if not shadowed:
        return decision
    from dataclasses import replace

    return replace(decision, shadowed=tuple(shadowed))

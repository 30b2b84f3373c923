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
from .detectors import DetectorSet, Observation, is_asset_request, is_document_request
from .facts import RequestFacts
from .netaddr import CidrSet, MalformedRequest
from .policy.matchers import first_segment, guard_of
from .policy.model import BucketDef, CompiledPolicy, Rule, ScoreDef
from .store.base import Batch, BatchResult, BucketCheck, ScoreUpdate, Store, StoreError
from .store.memory import MemoryStore

log = logging.getLogger("scrapeshield.engine")
_MEMORY_APPLY = MemoryStore.apply

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
        self._plan = _RulePlan(policy)
        self.detectors: DetectorSet | None = DetectorSet(policy.detectors) if policy.detectors else None  # type: ignore[arg-type]

    def swap(self, policy: CompiledPolicy) -> None:
        """Install a new policy between requests. Decisions already running keep the old one."""
        self._plan = _RulePlan(policy)
        if policy.detectors != self.policy.detectors:  # unchanged detector settings keep their state
            self.detectors = DetectorSet(policy.detectors) if policy.detectors else None  # type: ignore[arg-type]
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
    def observe_response(self, facts: RequestFacts, status: int, content_type: str | None, body: bytes | None) -> None:
        """Feed a response to the detectors (probe rate, referenced assets)."""
        detectors, key = self.detectors, facts.detector_key
        if detectors is not None and key is not None:
            detectors.observe_response(key, status, content_type, body, self.clock.now(), is_asset=facts.is_asset)

    def _observe(self, detectors: DetectorSet, policy: CompiledPolicy, facts: RequestFacts, now: float) -> str:
        hmap = facts.header_map
        is_asset = is_asset_request(facts.method, facts.path, hmap)
        obs = Observation(facts.path, facts.query, facts.method,
                          not is_asset and is_document_request(facts.method, facts.path, hmap), is_asset, now)
        key = policy.detector_key.func(facts)  # type: ignore[union-attr]
        facts.detector_key, facts.is_asset = key, is_asset
        facts.detector_signals = detectors.observe_request(key, obs)
        return key

    async def _decide(self, policy: CompiledPolicy, facts: RequestFacts, now: float) -> Decision:
        detectors = self.detectors
        observed: tuple[object, str] | None = None  # (key spec, value) computed for the detectors
        if detectors is not None and policy.detector_key is not None:
            observed = (policy.detector_key, self._observe(detectors, policy, facts, now))
        enforced = not policy.monitor
        shadowed: list[Decision] = []
        limit_rules: list[Rule] = []
        checks: list[BucketCheck] = []
        owners: list[Rule] = []
        rule_scores: dict[str, float] = {}
        terminal: Rule | None = None
        cleared = False

        plan = self._plan
        if plan.policy is not policy:  # `engine.policy` was assigned directly
            plan = self._plan = _RulePlan(policy)
        for rule in plan.candidates(facts):  # the rules in policy order, less those that cannot match
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
                cleared = True  # also satisfies a `default_action: challenge` below
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
            score_updates = self._score_updates(policy, facts, rule_scores, observed)

        batch = Batch(self._ban_keys(policy, facts) if policy.ban_keys else (), tuple(checks), score_updates)
        if batch.ban_keys or batch.buckets or batch.scores:
            store = self.store
            if type(store).apply is _MEMORY_APPLY:  # a plain MemoryStore: skip one coroutine, same result
                res = store.apply_now(batch, now)  # type: ignore[attr-defined]
            else:
                res = await store.apply(batch, now)
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
        if policy.default_action is Action.CHALLENGE and (cleared or self._cleared(facts, "default")):
            return _with_shadow(ALLOW_DEFAULT, shadowed)
        return _with_shadow(Decision(policy.default_action, "default", "no rule matched", enforced=enforced,
                                     difficulty=policy.challenge.difficulty), shadowed)

    # ------------------------------------------------------------------------------------
    def _cleared(self, facts: RequestFacts, rule_name: str) -> bool:
        return self.clearance is not None and self.clearance(facts, rule_name)

    @staticmethod
    def _ban_keys(policy: CompiledPolicy, facts: RequestFacts) -> tuple[str, ...]:
        return tuple([k.func(facts) for k in policy.ban_keys])

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

    def _score_updates(self, policy: CompiledPolicy, facts: RequestFacts, rule_scores: dict[str, float],
                       observed: tuple[object, str] | None = None) -> tuple[ScoreUpdate, ...]:
        signals: dict[str, float] = {}
        for source in self.signal_sources:
            signals.update(source(facts, policy))
        signals.update(facts.detector_signals)
        ups = []
        for score in policy.scores:
            delta = rule_scores.get(score.name, 0.0)
            for signal, weight in score.weights:
                strength = signals.get(signal)
                if strength:
                    delta += weight * strength
            # A score keyed like the detectors (e.g. both `stack`) reuses that key, computed this decision.
            key = observed[1] if observed is not None and score.key is observed[0] else score.key.func(facts)
            ups.append(ScoreUpdate(score.uid, key, delta, score.half_life))
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


class _RulePlan:
    """Which of a policy's rules a request can match at all, from the guards of their predicates
    (necessary conditions, see `policy/matchers.py`): the first path segment, the method, the
    presence of a header, the client address in a CIDR set.

    `candidates()` returns the rules in policy order minus rules whose predicate is certainly
    false for the request, so the decision is exactly that of a pass over every rule. Candidate
    lists are cached per combination of holding atoms; the combinations are bounded by the
    policy, not by the traffic.

    Rules whose whole match is one `user_agent` condition (bad-bot lists) depend on the UA alone:
    which of them match is remembered per UA string (bounded), so a request pays one lookup for
    all of them instead of one regex search each.
    """

    __slots__ = ("policy", "_trivial", "_segs", "_methods", "_hdrs", "_ip_sets", "_ip_union", "_always",
                 "_by_atom", "_cache", "_ua_rules", "_ua_memo")

    _CACHE_MAX = 4096
    _UA_MEMO_MAX = 4096
    _UA_MEMO_MAX_LEN = 512

    def __init__(self, policy: CompiledPolicy) -> None:
        self.policy = policy
        always: list[int] = []
        ua_rules: list[tuple[int, object]] = []
        by_atom: dict[tuple[str, object], list[int]] = {}
        for i, rule in enumerate(policy.rules):
            guard = guard_of(rule.match)
            if not guard:
                if getattr(rule.match, "ua_only", False):
                    ua_rules.append((i, rule.match))
                else:
                    always.append(i)
                continue
            for atom in guard:
                by_atom.setdefault(atom, []).append(i)
        self._ua_rules = tuple(ua_rules)
        self._ua_memo: dict[str, tuple[int, ...]] = {}
        self._trivial = not by_atom and not ua_rules
        self._always = always
        self._segs = frozenset(v for k, v in by_atom if k == "seg")
        self._methods = frozenset(v for k, v in by_atom if k == "method")
        self._hdrs = frozenset(v for k, v in by_atom if k == "hdr")
        ip_sets: list[CidrSet] = [v for k, v in by_atom if k == "ip"]  # type: ignore[misc]
        self._ip_sets = tuple(enumerate(ip_sets))
        self._ip_union = CidrSet.of(c for s in ip_sets for c in s.source) if ip_sets else None
        # Atoms keyed compactly: ("ip", i) stands for ip_sets[i] (hashing a big CidrSet is slow).
        self._by_atom: dict[tuple[str, object], list[int]] = {}
        for (kind, value), idx in by_atom.items():
            if kind == "ip":
                value = next(i for i, s in self._ip_sets if s is value)
            self._by_atom[(kind, value)] = idx
        self._cache: dict[tuple[tuple[tuple[str, object], ...], tuple[int, ...]], tuple[Rule, ...]] = {}

    def candidates(self, facts: RequestFacts) -> tuple[Rule, ...]:
        if self._trivial:
            return self.policy.rules
        atoms: list[tuple[str, object]] = []
        if self._segs:
            seg = first_segment(facts.path)
            if seg is not None and seg in self._segs:
                atoms.append(("seg", seg))
        if self._methods and facts.method in self._methods:
            atoms.append(("method", facts.method))
        if self._hdrs:
            hdrs = self._hdrs
            present = [name for name in facts.header_map if name in hdrs]
            if present:
                present.sort()
                atoms.extend(("hdr", name) for name in present)
        if self._ip_union is not None:
            ip = facts.ip
            if self._ip_union.contains(ip):
                atoms.extend(("ip", i) for i, s in self._ip_sets if s.contains(ip))
        ua_hits: tuple[int, ...] = ()
        if self._ua_rules:
            ua = facts.user_agent
            hits = self._ua_memo.get(ua)
            if hits is None:
                hits = tuple([i for i, match in self._ua_rules if match(facts)])  # type: ignore[operator]
                if len(ua) <= self._UA_MEMO_MAX_LEN:
                    if len(self._ua_memo) >= self._UA_MEMO_MAX:
                        self._ua_memo.clear()
                    self._ua_memo[ua] = hits
            ua_hits = hits
        key = (tuple(atoms), ua_hits)
        rules = self._cache.get(key)
        if rules is None:
            idx = set(self._always)
            idx.update(ua_hits)
            for atom in key[0]:
                idx.update(self._by_atom[atom])
            rules = tuple(self.policy.rules[i] for i in sorted(idx))
            if len(self._cache) >= self._CACHE_MAX:
                self._cache.clear()
            self._cache[key] = rules
        return rules


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

"""The stages of one decision, in the order `Engine` runs them:

    observe   context <- detector key, asset flag, detector signals          (behaviour so far)
    match     policy rules (through the rule plan) -> Matches: buckets to check, score deltas,
              monitored/log decisions, the rule that decides directly (if any)
    signals   fingerprint, detector and other sources -> named strengths     (only when scored)
    batch     Matches + signals -> ONE store Batch: penalty-box keys, buckets, score updates
    [store]   Batch -> BatchResult                                           (the engine's job)
    resolve   Matches + BatchResult -> Outcome: the decision that wins, and a ban to record

Each stage is a plain function over plain values; only `observe` and `count_monitored` touch
state (the detectors', the monitor store's), and only the engine talks to the real store.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import cast

from ..context import NO_SIGNALS, DecisionContext
from ..decision import ALLOW_DEFAULT, Action, Decision, RateInfo
from ..detectors import CrowdView, DetectorSet, Observation
from ..detectors.policy import DetectorsSection
from ..facts import RequestFacts
from ..netaddr import cached_ip_prefix
from ..policy.model import BucketDef, CompiledPolicy, KeySpec, Rule, ScoreDef, Threshold, WeightRef
from ..policy.plan import RulePlan
from ..policy.registry import SignalSource
from ..store.base import Batch, BatchResult, BucketCheck, ScoreUpdate
from ..store.memory import MemoryStore
from .trace import BucketTrace, TraceRecorder

ClearanceCheck = Callable[[RequestFacts, str], bool]  # (request, rule name) -> holds a valid clearance
NO_BATCH = Batch()
ALLOW_LIST_RULE = "allow-list"  # the rule name of a decision the operators' allow list made


# -- observe ---------------------------------------------------------------------------------
def observe(detectors: DetectorSet, section: DetectorsSection, ctx: DecisionContext) -> None:
    """Feed the request to the detectors; the context gets the identity key, asset flag and signals.
    (Without shared logs; the engine runs `observation` + `crowd_view` + the detectors' log plan.)"""
    obs = observation(section, ctx)
    assert ctx.detector_key is not None
    ctx.detector_signals = detectors.observe_request(ctx.detector_key, obs)


def observation(section: DetectorsSection, ctx: DecisionContext) -> Observation:
    """The detectors' view of the request; the context gets the identity key and asset flag."""
    facts = ctx.facts
    is_asset = ctx.asset_request
    obs = Observation(facts.path, facts.query, facts.method, ctx.document_request, is_asset, ctx.now)
    ctx.detector_key, ctx.is_asset = ctx.key(section.key), is_asset
    return obs


def crowd_view(policy: CompiledPolicy, ctx: DecisionContext) -> CrowdView:
    """A record request's place in the crowd: its session (its address without one), and the
    scopes a cross-session walk is looked for in: its client stack and its network."""
    s = ctx.session
    if s is not None:
        who = s.id or "~" + ctx.facts.client_ip
        stack, net = s.stack, s.prefix
    else:
        fp = ctx.fingerprint
        who = "~" + ctx.facts.client_ip
        stack = fp.field("ja4") + "|" + fp.field("ua_class")
        net = cached_ip_prefix(ctx.facts.client_ip, policy.ipv4_prefix, policy.ipv6_prefix)
    return CrowdView(who, ("stack\x1f" + stack, "net\x1f" + net))


# -- match -----------------------------------------------------------------------------------
@dataclass(slots=True, init=False)
class Matches:
    """What the policy's rules said about one request, before the store is asked."""

    rule_scores: dict[str, float] = field(default_factory=dict)  # score name -> delta from matched rules
    checks: list[BucketCheck] = field(default_factory=list)  # enforced buckets, in rule order
    owners: list[Rule] = field(default_factory=list)  # the rule of each check
    monitored_limits: list[Rule] = field(default_factory=list)
    shadowed: list[Decision] = field(default_factory=list)  # log rules, monitored rules that would act
    terminal: Rule | None = None  # the rule that decides directly (allow, block, ...), if any
    cleared: bool = False  # a challenge rule matched and the client holds its clearance

    # init=False, this __init__: native when compiled (docs/architecture.md, "The compiled core")
    def __init__(self, rule_scores: dict[str, float] | None = None, checks: list[BucketCheck] | None = None,
                 owners: list[Rule] | None = None, monitored_limits: list[Rule] | None = None,
                 shadowed: list[Decision] | None = None, terminal: Rule | None = None, cleared: bool = False) -> None:
        self.rule_scores = {} if rule_scores is None else rule_scores
        self.checks = [] if checks is None else checks
        self.owners = [] if owners is None else owners
        self.monitored_limits = [] if monitored_limits is None else monitored_limits
        self.shadowed = [] if shadowed is None else shadowed
        self.terminal = terminal
        self.cleared = cleared

    @property
    def refused_outright(self) -> bool:
        return self.terminal is not None and self.terminal.action is not Action.ALLOW


def match(policy: CompiledPolicy, ctx: DecisionContext, clearance: ClearanceCheck | None) -> Matches:
    """One pass over the rules in policy order (less those the plan rules out). Direct rules end
    the pass; `log` rules, monitored rules and rate-limit rules only collect. A challenge the
    client has cleared -- a rule's, or a limit rule's `exceed: challenge` -- is passed over."""
    m = Matches()
    rule_scores, checks, owners = m.rule_scores, m.checks, m.owners
    # The compiled policy names its plan by a protocol (model.py cannot import plan.py); the cast
    # lets compiled code call RulePlan.candidates directly instead of looking the method up.
    for rule in cast(RulePlan, policy.plan).candidates(ctx):
        if not rule.match(ctx):
            continue
        for sname, delta in rule.scores:
            rule_scores[sname] = rule_scores.get(sname, 0.0) + delta
        if rule.buckets:
            if rule.monitor:
                m.monitored_limits.append(rule)
            elif rule.exceed is Action.CHALLENGE and is_cleared(clearance, ctx, rule.name):
                # Passed over like a cleared challenge rule: its buckets are not checked, so they
                # cannot refuse -- and so spend none -- of the client's other buckets (before, a
                # cleared client over this limit went uncounted by every other limit rule).
                continue
            else:
                key = rule_key(rule, ctx)
                for b in rule.buckets:
                    checks.append(BucketCheck(b.uid, key, b.limit))
                    owners.append(rule)
            continue
        action = rule.action
        if action is Action.LOG:
            m.shadowed.append(Decision(Action.LOG, rule.name, "log rule matched", enforced=False))
            continue
        if action is Action.CHALLENGE and is_cleared(clearance, ctx, rule.name):
            m.cleared = True  # also satisfies a `default_action: challenge` below
            continue
        if rule.monitor:
            m.shadowed.append(direct_decision(rule, ctx, policy, enforced=False))
            continue
        m.terminal = rule
        break
    return m


def count_monitored(policy: CompiledPolicy, ctx: DecisionContext, m: Matches, monitor_store: MemoryStore,
                    trace: TraceRecorder | None = None) -> None:
    """Monitored limit rules run on a local store: counted, never enforced, never spending the
    enforced buckets. A limit they would have enforced becomes a shadow decision."""
    for rule in m.monitored_limits:
        key = rule_key(rule, ctx)
        res = monitor_store.apply_now(Batch(buckets=tuple(BucketCheck(b.uid, key, b.limit) for b in rule.buckets)),
                                      ctx.now)
        if trace is not None:
            for b, state in zip(rule.buckets, res.buckets, strict=False):
                trace.buckets.append(BucketTrace(rule.name, b.name, key, state.allowed, state.remaining,
                                                 state.retry_after, monitored=True))
        if res.refused >= 0:
            m.shadowed.append(exceeded_decision(rule, key, rule.buckets[res.refused], res, False, policy))


# -- signals and batch -------------------------------------------------------------------------
def collect_signals(policy: CompiledPolicy, ctx: DecisionContext,
                    extra_sources: Iterable[SignalSource] = ()) -> dict[str, float]:
    """Every named strength a score may weigh: the policy's sources, the session stage's event
    signals (`ctx.session.signals`), the engine's sources, the detectors' (a later source's
    strength for a name wins). What `explain` shows; a plain decision merges
    only the weighted ones (`weighted_signals`)."""
    signals: dict[str, float] = {}
    for source in policy.signal_sources:
        found = source(ctx, policy)
        if found:  # most sources find nothing for most requests (often the shared, empty NO_SIGNALS)
            signals.update(found)
    session = ctx.session  # the session stage's event signals, read like the detectors' (no source)
    if session is not None and session.signals:
        signals.update(session.signals)
    for source in extra_sources:
        signals.update(source(ctx, policy))
    found = ctx.detector_signals
    if found is not NO_SIGNALS:
        signals.update(found)
    return signals


def weighted_signals(policy: CompiledPolicy, ctx: DecisionContext,
                     extra_sources: tuple[SignalSource, ...] = ()) -> dict[str, float] | None:
    """The signals of `collect_signals` that some score weighs and that hold (a strength of 0 adds
    nothing to a score), the same strengths (a later source's wins), without copying the rest;
    None when there are none (most requests: the detectors' signals are mostly at 0)."""
    refs = policy.score_plan.refs
    picked: dict[str, float] | None = None
    for source in policy.signal_sources:
        found = source(ctx, policy)
        if found:
            picked = _pick(refs, found, picked)
    session = ctx.session
    if session is not None and session.signals:
        picked = _pick(refs, session.signals, picked)
    for source in extra_sources:
        found = source(ctx, policy)
        if found:
            picked = _pick(refs, found, picked)
    found = ctx.detector_signals
    if found is not NO_SIGNALS and found:
        picked = _pick(refs, found, picked)
    return picked


def _pick(refs: dict[str, tuple[WeightRef, ...]], found: Mapping[str, float],
          picked: dict[str, float] | None) -> dict[str, float] | None:
    """`picked` plus the weighted signals of `found` that hold (compiled, a native loop over a
    dict); one at 0 takes back what an earlier source said, as merging the sources would."""
    signals = found if isinstance(found, dict) else dict(found)
    for signal, strength in signals.items():
        if not strength:  # (not `== 0.0`: compiled, that unboxes the float and boxes it again to keep it)
            if picked is not None and signal in picked:
                del picked[signal]
        elif signal in refs:
            if picked is None:
                picked = {}
            picked[signal] = strength
    return picked if picked else None


def score_updates(policy: CompiledPolicy, ctx: DecisionContext, rule_scores: dict[str, float],
                  signals: dict[str, float] | None, detector_key: KeySpec | None) -> tuple[ScoreUpdate, ...]:
    """One store update per score, under the score's key for this request: its matched rules'
    deltas plus weight x strength of every weighted signal that fired, added in the order of the
    score's weights (floating-point sums depend on the order: the same order, the same bits).
    `signals` may hold signals no score weighs (`collect_signals`) or only those (`weighted_signals`)."""
    scores = policy.scores
    plan = policy.score_plan
    hits: list[WeightRef] | None = None  # (score index, weight position, weight x strength): a few, often none
    if signals:
        refs = plan.refs
        for signal, strength in signals.items():
            if strength:
                found = refs.get(signal)
                if found:
                    if hits is None:
                        hits = []
                    for i, at, weight in found:
                        hits.append((i, at, weight * strength))
        if hits is not None and len(hits) > 1:
            hits.sort()  # by score, then weight position: (score, position) pairs are unique
    n_hits = len(hits) if hits is not None else 0
    per_weight = plan.per_weight
    # A score keyed like the detectors (e.g. both `client`) reuses the key the observe stage computed.
    known = ctx.detector_key if detector_key is not None else None
    ups = []
    h = 0  # the next hit
    for i in range(len(scores)):  # an index, not zip(): compiled, a native loop
        score = scores[i]
        delta = rule_scores.get(score.name, 0.0) if rule_scores else 0.0
        while h < n_hits and hits is not None and hits[h][0] == i:
            delta += hits[h][2]
            h += 1
        if per_weight and signals and i in per_weight:
            for signal, weight in score.weights:  # every weight, in order
                value = signals.get(signal)
                if value:
                    delta += weight * value
        spec = score.key
        key = known if known is not None and spec is detector_key else ctx.key(spec)
        ups.append(ScoreUpdate(score.uid, key, delta, score.half_life))
    return tuple(ups)


def build_batch(policy: CompiledPolicy, ctx: DecisionContext, m: Matches,
                scores: tuple[ScoreUpdate, ...] = ()) -> Batch:
    """Everything the store must know for this request, as one batch (one round trip). A request
    refused outright spends no bucket, but the penalty box is still asked first."""
    ban_keys = tuple([ctx.key(k) for k in policy.ban_keys]) if policy.ban_keys else ()
    if m.refused_outright:
        return Batch(ban_keys=ban_keys) if ban_keys else NO_BATCH
    if not ban_keys and not m.checks and not scores:
        return NO_BATCH
    return Batch(ban_keys, tuple(m.checks), scores)


# -- resolve ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, init=False)
class Outcome:
    decision: Decision
    ban: tuple[str, float] | None = None  # (key, seconds) to put into the penalty box

    # init=False, this __init__: native when compiled (docs/architecture.md, "The compiled core")
    def __init__(self, decision: Decision, ban: tuple[str, float] | None = None) -> None:
        object.__setattr__(self, "decision", decision)
        object.__setattr__(self, "ban", ban)


ALLOWED_BY_DEFAULT = Outcome(ALLOW_DEFAULT)  # most requests' outcome: one value, not one per request


def resolve(policy: CompiledPolicy, ctx: DecisionContext, m: Matches, batch: Batch, res: BatchResult | None,
            clearance: ClearanceCheck | None) -> Outcome:
    """Which outcome wins, in this order: the allow list, the penalty box, a rule that refuses outright, a bucket
    over its limit, an allow rule, the highest score threshold reached, the default action.
    A challenge the client has already solved (clearance cookie) does not win."""
    enforced = not policy.monitor
    if res is not None and res.allowed_key is not None:  # an operator vouched for this client
        return Outcome(Decision(Action.ALLOW, ALLOW_LIST_RULE, "on the allow list", key=res.allowed_key))
    if res is not None and res.banned_key is not None:
        return Outcome(Decision(policy.ban_action, "ban", f"in penalty box until {res.banned_until:.0f}",
                                key=res.banned_key or "", enforced=enforced))
    terminal = m.terminal
    if terminal is not None and terminal.action is not Action.ALLOW:
        decision = direct_decision(terminal, ctx, policy, enforced)
        return Outcome(decision, _ban(decision.key, terminal.ban_for, enforced))

    if res is not None and res.refused >= 0:
        rule = m.owners[res.refused]
        check = batch.buckets[res.refused]
        bdef = next(b for b in rule.buckets if b.uid == check.bucket_id)
        if bdef.limit != check.limit:  # a bucket a stage added with a limit of its own (record budget)
            bdef = replace(bdef, limit=check.limit)
        decision = exceeded_decision(rule, check.key, bdef, res, enforced, policy)
        if not (decision.action is Action.CHALLENGE and is_cleared(clearance, ctx, rule.name)):
            return Outcome(decision, _ban(decision.key, rule.ban_for, enforced))

    if terminal is not None:  # an allow rule
        return Outcome(Decision(Action.ALLOW, terminal.name, "allow rule matched"))

    if res is not None and batch.scores:
        level = ctx.level_signals
        # Levels (e.g. session counters) weigh on this decision; the counters are the memory.
        levels = level_weights(policy, level) if level else None
        scores, ups, values = policy.scores, batch.scores, res.scores
        n = len(scores)  # zip()'s length, without an iterator or a generic min() call a decision
        if len(ups) < n:
            n = len(ups)
        if len(values) < n:
            n = len(values)
        for i in range(n):
            score, up, value = scores[i], ups[i], values[i]
            if levels is not None:
                value += levels[i]
            thresholds = score.thresholds
            if not thresholds or value < thresholds[0].at:  # below the lowest: `reached_threshold` says None
                continue
            threshold = reached_threshold(score, value, ctx)
            if threshold is None:
                continue
            rule_name = f"score:{score.name}"
            if threshold.action is Action.CHALLENGE and is_cleared(clearance, ctx, rule_name):
                continue
            return Outcome(
                Decision(threshold.action, rule_name, f"score {value:.1f} >= {threshold.at:g}", key=up.key,
                         enforced=enforced and threshold.action is not Action.LOG, status=threshold.status,
                         difficulty=threshold.difficulty or policy.challenge.difficulty, score=value),
                _ban(up.key, threshold.ban_for, enforced))

    if policy.default_action is Action.ALLOW:
        return ALLOWED_BY_DEFAULT
    if policy.default_action is Action.CHALLENGE and (m.cleared or is_cleared(clearance, ctx, "default")):
        return ALLOWED_BY_DEFAULT
    return Outcome(Decision(policy.default_action, "default", "no rule matched", enforced=enforced,
                            difficulty=policy.challenge.difficulty))


def level_weights(policy: CompiledPolicy, level: Mapping[str, float]) -> list[float]:
    """Per score, 0.0 + w x level of each weighted level signal, added one after another in the
    order of the score's weights (what the compiled `sum(w * level[sig] for sig, w in score.weights
    if sig in level)` added; the interpreter's sum() rounds differently past a few terms), from the
    level signals' few entries instead of a lookup per weight."""
    scores = policy.scores
    plan = policy.score_plan
    refs = plan.refs
    terms: list[WeightRef] = []
    for signal, strength in level.items():
        found = refs.get(signal)
        if found:
            for i, at, weight in found:
                terms.append((i, at, weight * strength))
    if len(terms) > 1:
        terms.sort()
    totals = [0.0] * len(scores)
    for i, _, term in terms:
        totals[i] += term
    for i in plan.per_weight:
        total = 0.0
        for signal, weight in scores[i].weights:
            if signal in level:
                total += weight * level[signal]
        totals[i] = total
    return totals


def with_shadow(decision: Decision, shadowed: list[Decision]) -> Decision:
    if not shadowed:
        return decision
    return replace(decision, shadowed=tuple(shadowed))


# -- small helpers the stages share -------------------------------------------------------------
def rule_key(rule: Rule, ctx: DecisionContext) -> str:
    return ctx.key(rule.key) if rule.key is not None else ""


def is_cleared(clearance: ClearanceCheck | None, ctx: DecisionContext, rule_name: str) -> bool:
    return clearance is not None and clearance(ctx.facts, rule_name)


def reached_threshold(score: ScoreDef, value: float, ctx: DecisionContext | None = None) -> Threshold | None:
    """The highest threshold the value has reached (thresholds ascend) whose `when`, if it has
    one, the request matches."""
    found = None
    for t in score.thresholds:
        if value < t.at:
            break
        if t.when is None or (ctx is not None and t.when(ctx)):
            found = t
    return found


def direct_decision(rule: Rule, ctx: DecisionContext, policy: CompiledPolicy, enforced: bool) -> Decision:
    return Decision(rule.action or Action.BLOCK, rule.name, f"rule {rule.name} matched", key=rule_key(rule, ctx),
                    enforced=enforced, status=rule.status,
                    difficulty=rule.difficulty or policy.challenge.difficulty, no_js=rule.no_js)


def exceeded_decision(rule: Rule, key: str, bdef: BucketDef, res: BatchResult, enforced: bool,
                      policy: CompiledPolicy) -> Decision:
    state = res.buckets[res.refused]
    lim = bdef.limit
    retry = max((s.retry_after for s in res.buckets if not s.allowed), default=state.retry_after)
    rate = RateInfo(bdef.name, lim.count, lim.period, lim.burst, state.remaining, state.reset, retry)
    return Decision(rule.exceed, rule.name, f"over {lim.describe()}", key=key, enforced=enforced,
                    status=rule.status, rate=rate, delay=min(retry, rule.delay_max),
                    difficulty=rule.difficulty or policy.challenge.difficulty, no_js=rule.no_js)


def fail_decision(policy: CompiledPolicy, reason: str) -> Decision:
    """What a request gets when it cannot be decided (malformed, store down, a bug): the policy's
    fail mode. The one place this decision is built (engine, proxy adapter and replay use it)."""
    if policy.fail_closed:
        return Decision(Action.BLOCK, "error", reason, enforced=not policy.monitor)
    return Decision(Action.ALLOW, "error", reason)


def _ban(key: str, seconds: float, enforced: bool) -> tuple[str, float] | None:
    return (key, seconds) if seconds and enforced else None

"""The engine's faster code paths decide exactly as the straightforward code they replaced: each is
compared with a reference written the plain way, on generated inputs and on the bench's traffic."""
from __future__ import annotations

import asyncio
import dataclasses
import sys
import tracemalloc
from bisect import bisect_left
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from librt.vecs import vec
from mypy_extensions import i64

from scrapeshield import fingerprint, netaddr
from scrapeshield.challenge.binding import ClientBinding
from scrapeshield.challenge.endpoints import ChallengeService
from scrapeshield.challenge.keys import KeyRing
from scrapeshield.clock import FakeClock
from scrapeshield.context import DecisionContext
from scrapeshield.detectors import crowd, distinct
from scrapeshield.detectors.crowd import NO_RUN, CrossSessionWalk, CrowdIndex, CrowdRun
from scrapeshield.engine import Engine, stages
from scrapeshield.extensions import new_standard_registry
from scrapeshield.fingerprint.tls import TlsFingerprint
from scrapeshield.policy.compiler import compile_file
from scrapeshield.policy.model import CompiledPolicy, ScoreDef
from scrapeshield.session import cookie
from scrapeshield.session import stage as session_stage
from scrapeshield.session import state as session_state
from scrapeshield.session.stage import SessionStage
from scrapeshield.store.memory import MemoryStore

REPO = Path(__file__).resolve().parents[2]
DEFAULT = compile_file(str(REPO / "policies" / "default.yaml"))
KEYS = KeyRing((b"k" * 32,))


def reference_score_updates(policy: CompiledPolicy, rule_scores: Mapping[str, float],
                            signals: Mapping[str, float]) -> list[float]:
    """The deltas as the engine computed them before `ScoreDef.weight_index`: every weight looked up."""
    out = []
    for score in policy.scores:
        delta = rule_scores.get(score.name, 0.0)
        for signal, weight in score.weights:
            strength = signals.get(signal)
            if strength:
                delta += weight * strength
        out.append(delta)
    return out


SIGNAL_NAMES = sorted({s for score in DEFAULT.scores for s, _ in score.weights} | {"not_weighted", "other"})
strengths = st.one_of(st.just(0.0), st.just(1.0), st.floats(-3.0, 3.0, allow_nan=False))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(SIGNAL_NAMES), strengths, max_size=len(SIGNAL_NAMES)),
       st.dictionaries(st.sampled_from([s.name for s in DEFAULT.scores]), st.floats(-50, 50), max_size=2))
def test_score_deltas_are_bit_for_bit_those_of_a_lookup_of_every_weight(signals: dict[str, float],
                                                                         rule_scores: dict[str, float]) -> None:
    assert _deltas(DEFAULT, rule_scores, signals) == reference_score_updates(DEFAULT, rule_scores, signals)


def _deltas(policy: CompiledPolicy, rule_scores: dict[str, float], signals: dict[str, float] | None) -> list[float]:
    return [up.delta for up in stages.score_updates(policy, DecisionContext(_facts()), rule_scores, signals, None)]


signal_maps = st.dictionaries(st.sampled_from(SIGNAL_NAMES), strengths, max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.lists(signal_maps, max_size=3), st.lists(signal_maps, max_size=2), signal_maps,
       st.dictionaries(st.sampled_from([s.name for s in DEFAULT.scores]), st.floats(-50, 50), max_size=2))
def test_the_weighted_signals_of_the_sources_score_as_all_of_them_merged(
        policy_found: list[dict[str, float]], extra_found: list[dict[str, float]], detector_found: dict[str, float],
        rule_scores: dict[str, float]) -> None:
    """A plain decision merges only the signals some score weighs that hold (a name in several
    sources: the later source's strength, as `collect_signals` merges them, a later 0 included):
    the same deltas, bit for bit."""
    policy = dataclasses.replace(DEFAULT, signal_sources=tuple(_source(found) for found in policy_found))
    extra = tuple(_source(found) for found in extra_found)
    ctx = DecisionContext(_facts())
    ctx.detector_signals = detector_found
    merged = stages.collect_signals(policy, ctx, extra)
    weighted = stages.weighted_signals(policy, ctx, extra)
    assert weighted == ({name: v for name, v in merged.items() if name in policy.score_plan.refs and v} or None)
    assert _deltas(policy, rule_scores, weighted) == _deltas(policy, rule_scores, merged) == reference_score_updates(
        policy, rule_scores, merged)


def reference_level_weights(policy: CompiledPolicy, level: Mapping[str, float]) -> list[float]:
    """What the levels added to each score's value before: every weight looked up, the terms added
    one after another from 0 (the compiled sum() of a generator)."""
    out = []
    for score in policy.scores:
        total = 0.0
        for signal, weight in score.weights:
            if signal in level:
                total += weight * level[signal]
        out.append(total)
    return out


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(SIGNAL_NAMES), st.floats(-3.0, 3.0, allow_nan=False), max_size=8),
       st.booleans())
def test_level_weights_are_bit_for_bit_those_of_a_lookup_of_every_weight(level: dict[str, float],
                                                                         twice: bool) -> None:
    policy = DEFAULT
    if twice:  # a score that weighs one signal twice: every weight, in order
        score = DEFAULT.scores[0]
        doubled = ScoreDef(score.name, score.uid, score.key, score.half_life,
                           (*score.weights, score.weights[0], ("cookie_refuser", 0.1)), score.thresholds)
        policy = dataclasses.replace(DEFAULT, scores=(doubled, *DEFAULT.scores[1:]))
    assert stages.level_weights(policy, level) == reference_level_weights(policy, level)


def _source(found: dict[str, float]):  # type: ignore[no-untyped-def]
    return lambda ctx, policy: found


def test_a_score_that_weighs_one_signal_twice_falls_back_to_every_weight_in_order() -> None:
    score = DEFAULT.scores[0]
    twice = ScoreDef(score.name, score.uid, score.key, score.half_life, (("a", 1.5), ("b", 2.0), ("a", 0.25)),
                     score.thresholds)
    policy = dataclasses.replace(DEFAULT, scores=(twice, *DEFAULT.scores[1:]))
    assert policy.score_plan.per_weight == (0,) and policy.score_plan.refs["a"] == ()
    signals = {"a": 2.0, "b": 1.0, "good_bot": 1.0}
    deltas = _deltas(policy, {score.name: 0.5}, signals)
    assert deltas[0] == 0.5 + 1.5 * 2.0 + 2.0 + 0.25 * 2.0
    assert deltas == reference_score_updates(policy, {score.name: 0.5}, signals)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_the_memoised_session_decoder_answers_as_decode_for_any_value(value: str) -> None:
    decode = cookie.Decoder(KEYS, max_entries=8)
    assert decode(value) == cookie.decode(KEYS, value)
    assert decode(value) == cookie.decode(KEYS, value)  # the remembered answer too


def test_the_memoised_decoder_remembers_genuine_cookies_and_stays_bounded() -> None:
    decode = cookie.Decoder(KEYS, max_entries=4)
    values = [cookie.mint("203.0.113.0/24", "ja4|browser", 1_800_000_000.0 + i).encode(KEYS) for i in range(10)]
    for value in values:
        assert decode(value) == cookie.decode(KEYS, value)
    assert len(decode) == 4
    for value in values:  # issued here: remembered as issued, bounded all the same
        assert decode.encode(cookie.decode(KEYS, value)) == value  # type: ignore[arg-type]
    assert len(decode) == 4
    other_ring = cookie.Decoder(KeyRing((b"o" * 32,)))
    assert other_ring(values[-1]) == "bad_signature"  # a memo belongs to one key ring
    assert other_ring("s." + "x" * 5000) == "malformed" and len(other_ring) == 1  # longer than a token: not kept


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="AZaz09_-.!", min_size=0, max_size=18), st.integers(-5, 1 << 41),
       st.sampled_from(["4" + "n" * 12, "6" + "n" * 12, "4short", "x" + "n" * 12]),
       st.sampled_from(["s" * 12, "s" * 11, "s" * 12 + "="]), st.sampled_from([0, 1, 2, 3, -1, True]),
       st.integers(0, 200))
def test_a_cookie_issued_here_is_remembered_as_decode_reads_it_and_a_changed_value_is_not(
        sid: str, issued: int, net: str, stack: str, returned: int, flip: int) -> None:
    """Whatever the fields (genuine or ones decode refuses), the value `encode` gives back reads,
    through the decoder, as `decode` reads it afresh; one character changed, it reads as decode
    says too (refused: the encode vouches only for the value it made)."""
    decode = cookie.Decoder(KEYS)
    session = cookie.SessionCookie(sid, issued, net, stack, returned)
    value = decode.encode(session)
    assert decode(value) == cookie.decode(KEYS, value)
    i = flip % len(value)
    forged = value[:i] + ("A" if value[i] != "A" else "B") + value[i + 1:]
    assert decode(forged) == cookie.decode(KEYS, forged) and not isinstance(decode(forged), cookie.SessionCookie)


def test_clearance_checks_with_a_lazy_binding_answer_as_with_the_binding_itself() -> None:
    service = ChallengeService(KEYS)
    binding = ClientBinding.of("203.0.113.7", "UA")
    made: list[int] = []

    def lazy() -> ClientBinding:
        made.append(1)
        return binding

    for header in (None, "", "theme=dark", "shield_clearance=junk", "a=1; shield_clearance=x.y.z"):
        assert service.check_clearance(header, lazy, "r", 0.0) == service.check_clearance(header, binding, "r", 0.0)
        assert service.clearance_token(header, lazy, 0.0) == service.clearance_token(header, binding, 0.0)
    assert len(made) == 4  # made only for the headers that carry a clearance cookie


def test_the_bench_traffic_gets_the_same_decisions_with_and_without_the_memos() -> None:
    """The whole engine over the bench's realistic mix (sessions kept like browsers do), once as it is,
    once with the session decoder memo replaced by the plain `decode` (issued values not remembered
    either), fresh tags and Referer readings for every request, neither the fingerprint memo nor the
    Cookie-header memo, and the adaptive price read with every request's counters (as a networked
    store has it) instead of only for a challenge: the same decision, rule, key, score, difficulty
    and Set-Cookie for every request."""
    sys.path.insert(0, str(REPO / "bench"))
    import bench_engine

    def run(plain: bool) -> list[tuple[object, ...]]:
        clock = FakeClock(1_800_000_000.0)
        sessions = SessionStage(KEYS)
        store = MemoryStore()
        if plain:
            sessions.decode = lambda value: cookie.decode(KEYS, value)
            # No fingerprint memo, no Cookie-header memo (nothing is short enough to be remembered).
            monkeypatch.setattr(fingerprint, "_MEMO_MAX_NAMES", -1)
            monkeypatch.setattr(session_stage, "_MEMO_MAX_HEADER", -1)
            store = NetworkedMemoryStore()  # the adaptive price read with every request's counters
        engine = Engine(DEFAULT, store, clock, sessions=sessions)
        traffic = bench_engine.Traffic(seed=3)
        # The fast run's Set-Cookie values are remembered as issued, as the runtime's are.
        jar = bench_engine.SessionJar(traffic, KEYS, cookie.COOKIE_NAME, None if plain else sessions.decoder.encode)
        out: list[tuple[object, ...]] = []

        async def go() -> None:
            for spec in traffic.specs(3000):
                clock.advance(0.005)
                ctx = DecisionContext(jar.facts(spec))
                if plain:
                    cookie._NET_TAGS.clear()
                    cookie._STACK_TAGS.clear()
                    session_stage._REFERERS.clear()
                    session_state._PAGE_TAGS.clear()
                    netaddr._PREFIXES.clear()
                d = await engine.decide_in(ctx)
                jar.took(spec[0], ctx)
                set_cookie = ctx.session.set_cookie if ctx.session is not None else None
                sid = ctx.session.id if ctx.session is not None else None
                key = d.key.replace(sid, "<session>") if sid else d.key  # ids are random per run
                out.append((d.action, d.rule, key, d.score, d.difficulty,
                            None if set_cookie is None else (set_cookie.net, set_cookie.stack, set_cookie.returned)))
        asyncio.run(go())
        return out

    fast = run(False)
    with pytest.MonkeyPatch.context() as monkeypatch:
        plain = run(True)
    assert fast == plain
    assert len({d[0] for d in fast}) > 1  # the mix is not all one answer


class NetworkedMemoryStore(MemoryStore):
    """A MemoryStore answering as a networked store does (every answer may wait: no sync_apply)."""

    sync_apply = None  # type: ignore[assignment]


def _facts():  # type: ignore[no-untyped-def]
    from scrapeshield.facts import RequestFacts

    return RequestFacts(peer_ip="203.0.113.7", path="/")


def reference_crowd_measure(cross: CrossSessionWalk, index: CrowdIndex, x: int, now: float) -> CrowdRun:
    """`CrossSessionWalk.measure` as first written: a membership test per candidate id."""
    from itertools import pairwise

    index.expire(now)
    ids = index.ids
    if x not in index or len(ids) < 2:
        return NO_RUN
    i = bisect_left(ids, x)
    stride = min(x - ids[i - 1] if i > 0 else cross.max_stride + 1,
                 ids[i + 1] - x if i + 1 < len(ids) else cross.max_stride + 1)
    if stride > cross.max_stride:
        return NO_RUN
    run = [x]
    for direction in (-stride, stride):
        edge = x
        while True:
            for k in range(1, cross.max_gap + 1):
                if edge + k * direction in index:
                    edge += k * direction
                    run.append(edge)
                    break
            else:
                break
    if len(run) < cross.start:
        return CrowdRun(len(run), 0, 0.0, 0.0)
    on_run = set(run)
    first: dict[int, float] = {}
    requests = 0
    sessions: set[int] = set()
    for v, t, who in index.entries:
        if v in on_run:
            requests += 1
            sessions.add(who)
            if v not in first:
                first[v] = t
    run.sort()
    ascending = sum(first[a] <= first[b] for a, b in pairwise(run))
    pairs = len(run) - 1
    order = max(ascending, pairs - ascending) / pairs
    return CrowdRun(len(run), len(sessions), (requests - len(run)) / requests, order)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 6)), min_size=1, max_size=150),
       st.integers(1, 40), st.integers(1, 6), st.integers(2, 10), st.data())
def test_the_crowd_run_is_the_run_a_lookup_per_candidate_id_finds(
        entries: list[tuple[int, int]], max_stride: int, max_gap: int, start: int, data: st.DataObject) -> None:
    cross = CrossSessionWalk(window_s=60.0, keep=128, max_stride=max_stride, max_gap=max_gap, min_sessions=2,
                             max_repeat_share=0.5, min_order_share=0.8, start=start, full=start + 8)
    index = cross.new_index()
    for n, (value, who) in enumerate(entries):
        index.add((value, 1000.0 + n, who))
    now = 1000.0 + len(entries)
    x = data.draw(st.one_of(st.sampled_from([v for v, _ in entries]), st.integers(0, 400)))
    assert cross.measure(index, x, now) == reference_crowd_measure(cross, index, x, now)



@st.composite
def crowd_logs(draw: st.DrawFn) -> tuple[list[tuple[int, float, int]], int]:
    """A crowd log of up to ~250 record requests, a second apart or bunched, and the request's id
    (mostly one on a walk): random ids, and walks (one id after the other by rotating sessions, up
    or down) with re-reads mixed in, so that short, long, re-read, out-of-order and strong runs all
    occur, and the thresholds are met exactly."""
    entries: list[tuple[int, float, int]] = []
    walked: list[int] = []
    t = 1000.0
    for _ in range(draw(st.integers(1, 5))):
        if draw(st.integers(0, 2)):
            base, stride = draw(st.integers(0, 1500)), draw(st.integers(1, 8))
            steps = draw(st.integers(2, 40))
            per_session = draw(st.integers(1, 8))
            backwards = draw(st.booleans())
            reread = draw(st.sampled_from([0, 3, 10]))  # one in `reread` requests re-reads an id on the walk
            for k in range(steps):
                value = base + (steps - k if backwards else k) * stride
                if reread and draw(st.integers(1, reread)) == 1:
                    value = base + draw(st.integers(0, steps)) * stride
                t += draw(st.sampled_from([0.0, 1.0, 2.5]))
                entries.append((value, t, k // per_session))
                walked.append(value)
        else:
            for value, who in draw(st.lists(st.tuples(st.integers(0, 1600), st.integers(0, 6)), max_size=30)):
                t += draw(st.sampled_from([0.0, 1.0, 7.0]))
                entries.append((value, t, who))
    if not entries:
        entries.append((draw(st.integers(0, 1600)), t, 0))
    candidates = [st.sampled_from([v for v, _, _ in entries]), st.integers(0, 1600)]
    if walked:
        candidates.insert(0, st.sampled_from(walked))
    return entries, draw(st.one_of(*candidates))


WALK = [(100 + k, 1000.0 + k, k // 2) for k in range(12)]  # 12 ids in order by 6 sessions
REREAD_WALK = WALK + [(100 + k, 1013.0 + k, 9) for k in range(4)]  # and 4 re-reads: repeat share 0.25


@settings(max_examples=600, deadline=None)
# Each threshold met exactly (strong), and missed by one session (nothing):
@example((WALK, 105), 256, 600.0, 12, 3, 6, 0.0, 1.0, 4, 16)
@example((WALK, 105), 256, 600.0, 12, 3, 7, 0.0, 1.0, 4, 16)
@example((REREAD_WALK, 105), 256, 600.0, 12, 3, 6, 0.25, 1.0, 4, 16)
@given(crowd_logs(), st.one_of(st.integers(8, 40), st.just(256)), st.sampled_from([20.0, 600.0, 600.0]),
       st.integers(1, 12), st.integers(1, 4), st.integers(2, 5),
       st.sampled_from([0.0, 0.1, 0.2, 0.25, 0.5, 1.0]), st.sampled_from([0.5, 0.75, 0.8, 1.0]),
       st.integers(2, 12), st.integers(1, 16))
def test_the_crowd_strength_a_request_needs_is_the_strength_of_the_whole_analysis(
        log: tuple[list[tuple[int, float, int]], int], keep: int, window_s: float, max_stride: int, max_gap: int,
        min_sessions: int, max_repeat_share: float, min_order_share: float, start: int, span: int) -> None:
    """`strength_at` skips the log's entries for short runs and re-read runs: it must say what the
    whole analysis (`measure`, and the reference written before it) says."""
    entries, x = log
    cross = CrossSessionWalk(window_s=window_s, keep=keep, max_stride=max_stride, max_gap=max_gap,
                             min_sessions=min_sessions, max_repeat_share=max_repeat_share,
                             min_order_share=min_order_share, start=start, full=start + span)
    def indexed() -> CrowdIndex:  # three equal indexes (built, not deep-copied: compiled classes do not copy)
        index = cross.new_index()
        for entry in entries:
            index.add(entry)
        return index
    index, fast = indexed(), indexed()
    now = entries[-1][1]
    whole = cross.measure(indexed(), x, now)
    assert whole == reference_crowd_measure(cross, index, x, now)
    assert cross.strength_at(fast, x, now) == cross.strength(whole)
    assert fast.entries == index.entries  # expired alike

@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-(1 << 62), 1 << 62), max_size=80), st.lists(st.integers(-(1 << 62), 1 << 62),
                                                                          min_size=1, max_size=40))
def test_the_crowd_logs_search_and_insert_on_a_vector_do_what_bisect_and_insert_do_on_a_list(
        items: list[int], probes: list[int]) -> None:
    """A crowd log's ids live in a `vec[i64]` (no insert, no bisect: compiled, native loops written
    for it; interpreted, C over a view and slices): searched and inserted into as a sorted list is."""
    ordered = sorted(items)
    slots = vec[i64](ordered)
    room = len(ordered)
    for key in probes:
        at = crowd._search(slots, key)
        assert at == bisect_left(ordered, key)
        room += 1 + key % 3  # more than it needs, sometimes
        grown = vec[i64](slots, capacity=room)
        slots = crowd._inserted(grown, at, key, room)
        ordered.insert(at, key)
        assert list(slots) == ordered


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, (1 << 32) - 1), max_size=300))
def test_the_exact_distinct_hashes_in_a_vector_are_the_sorted_set_of_those_seen(hashes: list[int]) -> None:
    """`many_distinct_resources` keeps its exact hashes in a `vec[i32]` (less 2**31, searched and
    inserted into by hand): the same set, in the same order, as a sorted list of them, kept in no
    more room than `_room` says."""
    exact = distinct.no_hashes()
    seen: list[int] = []
    for h in hashes:
        key = h - (1 << 31)
        at = distinct._search(exact, key)
        assert at == bisect_left(seen, h)
        if at == len(seen) or seen[at] != h:
            exact = distinct._inserted(exact, at, key)
            seen.insert(at, h)
        assert [x + (1 << 31) for x in exact] == seen
    assert list(distinct.hashes_copy(exact)) == list(exact)
    assert all(distinct._room(n) >= n and (n < 32 or distinct._room(n) <= n * 9 // 8 + 1) for n in range(1, 600))


def test_a_full_crowd_log_holds_its_ids_and_entries_in_vectors_no_larger_than_they_need() -> None:
    """A vector grown by its own `append`/`extend` doubles its room: a full log of 128 different ids
    would cost up to twice the ~50 bytes an entry it needs (docs/detectors.md's figures: 32 for the
    entry, 16 for its id and the id's newest entry)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        logs = []
        for k in range(50):
            index = CrowdIndex(128, 600.0)
            for i in range(200):  # full, wrapped, grown and worn
                index.append(1_000_000 + 7919 * i + k, 1.7e9 + i, i)
            logs.append(index)
        per_entry = (tracemalloc.get_traced_memory()[0] - before) / (50 * 128)
    finally:
        tracemalloc.stop()
    assert per_entry < 52


CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 "
          "Safari/537.36")
HEADER_VALUES = {  # name -> values it may take: what the fingerprint reads, and what it must not
    "Host": ["shop.example.com"], "Connection": ["keep-alive"], "X-Other": ["1", "2"],
    "User-Agent": [CHROME, "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0", "curl/8.8.0", ""],
    "Accept": ["text/html,*/*", "*/*", "application/json"], "Accept-Language": ["en", ""],
    "sec-ch-ua": ['"Chromium";v="126"'], "Sec-Fetch-Mode": ["navigate", "cors", ""],
    "Sec-Fetch-Dest": ["document", "image"], "Cookie": ["a=1", "b=2"], "Referer": ["https://x/", ""],
}
HEADER_NAMES = list(HEADER_VALUES)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(HEADER_NAMES), max_size=9, unique=True), st.data(),
       st.sampled_from(["HTTP/1.1", "HTTP/2.0"]), st.sampled_from([None, "h2", "http/1.1"]), st.booleans())
def test_the_remembered_fingerprint_is_the_fingerprint_computed_afresh(names: list[str], data: st.DataObject,
                                                                       http_version: str, alpn: str | None,
                                                                       is_tls: bool) -> None:
    """Two requests with the same header names and different values: the second one's fingerprint,
    perhaps remembered from the first, is the one computed afresh."""
    from scrapeshield.facts import RequestFacts

    fingerprint._MEMO.clear()
    args = {"http_version": http_version, "alpn": alpn, "is_tls": is_tls}
    for _ in range(2):
        values = [data.draw(st.sampled_from(HEADER_VALUES[name])) for name in names]
        facts = RequestFacts(peer_ip="203.0.113.7", headers=tuple(zip(names, values, strict=True)))
        hmap = facts.header_map
        fresh = fingerprint._fingerprint(tuple(names), hmap, http_version, alpn, is_tls, None, hmap.get("user-agent"),
                                         None, None)
        assert fingerprint.fingerprint_request(tuple(names), hmap, **args) == fresh


TLS_CHROME = TlsFingerprint("771,4865-4866,0-23,29,0", "0" * 32, "t13d1516h2_8daaf6152771_02713d6af862",
                            "t13d1516h2_1301,1302_0017,001d", ("h2", "http/1.1"), "shop.example.com", "chromium")
TLS_CHROME_RESUMED = TlsFingerprint(TLS_CHROME.ja3, TLS_CHROME.ja3_hash, "t13d1517h2_8daaf6152771_b0da82dd1658",
                                    TLS_CHROME.ja4_r, ("h2", "http/1.1"), "shop.example.com", "chromium")
TLS_CURL = TlsFingerprint("771,4865,0,29,0", "1" * 32, "t13d3112h1_e8f1e7e78f70_ce5650b735ce",
                          "t13d3112h1_1301_0017", ("http/1.1",), None, "openssl")
# Equal to TLS_CHROME, another object (another connection of the same browser).
TLS_VALUES = [None, TLS_CHROME, dataclasses.replace(TLS_CHROME), TLS_CHROME_RESUMED, TLS_CURL]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(HEADER_NAMES), st.data()), max_size=9), st.data(),
       st.sampled_from(["HTTP/1.1", "HTTP/2.0"]), st.sampled_from([None, "h2", "http/1.1"]),
       st.sampled_from(["http", "https"]))
def test_a_context_s_remembered_fingerprint_is_the_fingerprint_computed_afresh(
        fields: list[tuple[str, st.DataObject]], data: st.DataObject, http_version: str, alpn: str | None,
        scheme: str) -> None:
    """Requests with the same header names (repeated ones too) and different values, over the
    same or another connection: each context's fingerprint, perhaps remembered from an earlier
    request, is the one computed afresh; its stack is the session's reading of its JA4 and UA class."""
    from scrapeshield.facts import RequestFacts
    from scrapeshield.fingerprint.ja4 import session_ja4

    fingerprint._MEMO.clear()
    names = [name for name, _ in fields]
    for _ in range(3):
        values = [data.draw(st.sampled_from(HEADER_VALUES[name])) for name in names]
        tls = data.draw(st.sampled_from(TLS_VALUES))
        facts = RequestFacts(peer_ip="203.0.113.7", scheme=scheme, headers=tuple(zip(names, values, strict=True)),
                             http_version=http_version, alpn=alpn, tls=tls)
        hmap = facts.header_map
        fresh = fingerprint._fingerprint(tuple(names), hmap, http_version, alpn, facts.is_tls, tls,
                                         hmap.get("user-agent"), None, None)
        got = DecisionContext(facts).fingerprint
        assert got == fresh
        assert got.stack == session_ja4(got.field("ja4")) + "|" + got.field("ua_class")
        assert fingerprint.fingerprint_request(tuple(names), hmap, http_version=http_version, alpn=alpn,
                                               is_tls=facts.is_tls, tls=tls) == fresh


def test_the_fingerprint_memo_stays_bounded_for_clients_rotating_user_agents_and_header_orders() -> None:
    from scrapeshield.facts import RequestFacts

    fingerprint._MEMO.clear()
    for i in range(fingerprint._MEMO_MAX + 50):  # a new User-Agent every request
        facts = RequestFacts(peer_ip="203.0.113.7", headers=(("Host", "x"), ("User-Agent", f"bot/{i}")))
        assert DecisionContext(facts).fingerprint.ua.kind == "unknown"
        assert len(fingerprint._MEMO) <= fingerprint._MEMO_MAX
    fingerprint._MEMO.clear()
    names = [f"X-H{i}" for i in range(8)]
    for i in range(200):  # one User-Agent, a new header order every request
        order = names[i % 8:] + names[:i % 8] + [f"X-Extra{i}"]
        facts = RequestFacts(peer_ip="203.0.113.7", headers=(("User-Agent", CHROME), *((n, "1") for n in order)))
        fresh = fingerprint._fingerprint(("User-Agent", *order), facts.header_map, "HTTP/1.1", None, False,
                                         None, CHROME, None, None)
        assert DecisionContext(facts).fingerprint == fresh
        assert max(len(variants) for variants in fingerprint._MEMO.by_key.values()) <= fingerprint._MEMO_MAX_VARIANTS
    assert len(fingerprint._MEMO) == fingerprint._MEMO_MAX_VARIANTS


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["203.0.113.7", "203.0.113.200", "2001:db8::1", "2001:db8:0:1::1",
                                           "not an address"]),
                          st.sampled_from([8, 24, 32]), st.sampled_from([48, 64, 128])), min_size=1, max_size=12))
def test_the_remembered_prefix_is_the_prefix_afresh(asks: list[tuple[str, int, int]]) -> None:
    from scrapeshield.netaddr import ip_prefix

    sessions = SessionStage(KEYS)
    for ip, v4, v6 in asks:
        assert sessions.prefix(ip, v4, v6) == ip_prefix(ip, v4, v6)


T_ISSUE = 1_800_000_000.0
SESSION_VALUES = ["shield_session=" + cookie.mint("203.0.113.0/24", "ja4|browser", t).encode(KEYS)
                  for t in (T_ISSUE, T_ISSUE + 3600.0, T_ISSUE + 7 * 86400.0)]
# The moments a reading changes: a value becomes valid (issued less the skew allowed) or expires.
EDGES = sorted(t + d for t in (T_ISSUE, T_ISSUE + 3600.0, T_ISSUE + 7 * 86400.0)
               for d in (-cookie.MAX_CLOCK_SKEW, cookie.DEFAULT_TTL, 3600.0))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([*SESSION_VALUES, "shield_session=junk", "a=1", "shield_session=",
                                 " shield_session = x.y.z", "theme=dark"]), max_size=6),
       st.lists(st.tuples(st.sampled_from(["ja4|browser", "ja4|library"]),
                          st.one_of(st.floats(T_ISSUE - 1000.0, T_ISSUE + 16 * 86400.0), st.sampled_from(EDGES),
                                    st.sampled_from(EDGES).map(lambda t: t - 1e-6)),
                          st.sampled_from([cookie.DEFAULT_TTL, 3600.0])), min_size=1, max_size=8))
def test_a_remembered_cookie_header_reads_as_the_header_read_afresh(pairs: list[str],
                                                                   requests: list[tuple[str, float, float]]) -> None:
    """The same Cookie header request after request, at any moment (across a value's expiry and
    the clock skew allowed), from either stack, under either TTL: the reading remembered for the
    header is the reading of the header afresh."""
    header = "; ".join(pairs)
    sessions = SessionStage(KEYS)
    for stack, now, ttl in requests:
        for _ in range(2):  # decoded or read again, then remembered
            got = sessions.presented(header, cookie.COOKIE_NAME, stack, now, ttl)
            assert got == cookie.read(KEYS, header, stack, now, ttl)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.sampled_from(["https://shop.example.com/a?b=1", "https://SHOP.example.com/",
                                              "http://[::1", "https://other.example/x", "/relative", ""]),
                 st.text(max_size=40)),
       st.sampled_from(["shop.example.com", "", "x" * 3000]))
def test_the_remembered_referer_reading_is_the_reading_afresh(referer: str | None, host: str) -> None:
    assert session_stage._referer(referer, host) == (
        ("", "") if not referer else session_stage._read_referer(referer[:session_stage.MAX_PAGE], host))
    assert session_stage._referer(referer, host) == session_stage._referer(referer, host)


def test_bucket_states_computed_when_read_are_those_computed_at_once() -> None:
    from scrapeshield.gcra import parse_rate, state_after
    from scrapeshield.store.base import Batch, BatchResult, BucketCheck
    from scrapeshield.store.memory import entry_hash

    store = MemoryStore()
    limits = [parse_rate("2/s burst 1"), parse_rate("5/m")]
    now = 1_800_000_000.0
    for step in range(12):
        now += 0.2
        res = store.apply_now(Batch((), tuple(BucketCheck(f"b{i}", "ip=1", lim) for i, lim in enumerate(limits))), now)
        inspected = [store._tats.values[store._tats.find(entry_hash(f"b{i}", "ip=1"))] for i in range(2)]
        eager = BatchResult(None, 0.0, res.refused,
                            tuple(state_after(t, now, lim, res.refused < 0)
                                  for t, lim in zip(inspected, limits, strict=True)), ())
        assert res.buckets == eager.buckets, step
        assert res == eager
    assert res.refused >= 0  # the run reached a refusal


def test_requests_that_differ_only_in_what_the_fingerprint_reads_get_their_own_fingerprints() -> None:
    """Every combination of the values the fingerprint reads, under the same header names, one after
    the other through the memo: each gets the fingerprint computed afresh."""
    import itertools

    from scrapeshield.facts import RequestFacts

    fingerprint._MEMO.clear()
    names = ("User-Agent", "Sec-Fetch-Mode", "Accept", "Referer")
    for ua, mode, accept, referer in itertools.product(HEADER_VALUES["User-Agent"], HEADER_VALUES["Sec-Fetch-Mode"],
                                                       HEADER_VALUES["Accept"], HEADER_VALUES["Referer"]):
        for is_tls in (False, True):
            facts = RequestFacts(peer_ip="203.0.113.7", headers=tuple(zip(names, (ua, mode, accept, referer),
                                                                          strict=True)))
            hmap = facts.header_map
            fresh = fingerprint._fingerprint(names, hmap, "HTTP/1.1", None, is_tls, None, ua, None, None)
            assert fingerprint.fingerprint_request(names, hmap, http_version="HTTP/1.1", alpn=None,
                                                   is_tls=is_tls) == fresh


def test_fingerprint_signals_remembered_per_fingerprint_are_those_computed_afresh() -> None:
    from scrapeshield.facts import RequestFacts
    from scrapeshield.fingerprint.policy import fingerprint_signals

    def reference(ctx: DecisionContext) -> dict[str, float]:
        fp = ctx.fingerprint
        out = dict.fromkeys(fp.signals, 1.0)
        out["ua_class:" + fp.ua.kind] = 1.0
        if fp.tls is not None:
            out["tls_family:" + fp.tls.tls_family] = 1.0
        from scrapeshield.fingerprint.policy import GOODBOTS, good_bot_of
        if good_bot_of(ctx, DEFAULT.section(GOODBOTS)):
            out["good_bot"] = 1.0
        elif fp.ua.kind == "crawler":
            out["unverified_crawler"] = 1.0
        return out

    googlebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    for ua, ip in ((googlebot, "66.249.66.1"), (googlebot, "203.0.113.7"), (CHROME, "203.0.113.7"),
                   ("curl/8.8.0", "203.0.113.7"), (CHROME, "203.0.113.8")):
        for _ in range(2):  # afresh, then remembered
            ctx = DecisionContext(RequestFacts(peer_ip=ip, scheme="https", headers=(("User-Agent", ua),)))
            got = fingerprint_signals(ctx, DEFAULT)
            assert list(got.items()) == list(reference(ctx).items())


def test_what_a_context_computes_once_is_what_the_plain_functions_say() -> None:
    """Request kind, record ids and client keys, read through the context (computed once, shared by
    the stages), against the plain functions, over the bench's traffic after a decision filled the
    context (session included)."""
    from scrapeshield.detectors import is_asset_request, is_document_request
    from scrapeshield.detectors.sequence import extract_ids

    sys.path.insert(0, str(REPO / "bench"))
    import bench_engine

    clock = FakeClock(1_800_000_000.0)
    engine = Engine(DEFAULT, MemoryStore(), clock, sessions=SessionStage(KEYS))
    traffic = bench_engine.Traffic(seed=4)
    jar = bench_engine.SessionJar(traffic, KEYS, cookie.COOKIE_NAME)
    specs = [rule.key for rule in DEFAULT.rules if rule.key is not None]
    specs += [score.key for score in DEFAULT.scores] + list(DEFAULT.ban_keys)

    async def go() -> None:
        for spec in traffic.specs(600):
            clock.advance(0.005)
            ctx = DecisionContext(jar.facts(spec))
            await engine.decide_in(ctx)
            jar.took(spec[0], ctx)
            f = ctx.facts
            asset = is_asset_request(f.method, f.path, f.header_map)
            assert (ctx.asset_request, ctx.document_request) == (
                asset, not asset and is_document_request(f.method, f.path, f.header_map))
            assert ctx.path_ids == extract_ids(f.path, f.query)
            for key_spec in specs:
                assert ctx.key(key_spec) == key_spec.func(ctx)
    asyncio.run(go())


def test_a_key_of_fingerprint_parts_remembered_per_fingerprint_is_the_key_computed_afresh() -> None:
    """`stack` (ja4 + ua_class) is remembered per fingerprint object; `ip+ua_class` reads the address
    too and is not: each is the join of its parts' values, for clients that share a fingerprint
    and clients that do not, afresh and remembered."""
    from scrapeshield.facts import RequestFacts
    from scrapeshield.policy.keys import build_key
    from scrapeshield.policy.registry import KeyContext

    parts = new_standard_registry().key_parts
    kctx = KeyContext(24, 64)
    stack = build_key(("ja4", "ua_class"), kctx, parts)
    mixed = build_key(("ip", "ua_class"), kctx, parts)
    assert parts["ja4"].per_fingerprint and not parts["ip"].per_fingerprint
    for ua, ip in ((CHROME, "203.0.113.7"), (CHROME, "203.0.113.8"), ("curl/8.8.0", "203.0.113.7"),
                   (CHROME, "203.0.113.7")):
        for _ in range(2):  # afresh, then remembered
            ctx = DecisionContext(RequestFacts(peer_ip=ip, scheme="https", headers=(("User-Agent", ua),)))
            fp = ctx.fingerprint
            assert stack.func(ctx) == f"ja4={fp.field('ja4')}|ua_class={fp.field('ua_class')}"
            assert mixed.func(ctx) == f"ip={ip}|ua_class={fp.field('ua_class')}"

"""The detector log table (detectors/mirror.py): idle logs expire by the injected clock, the count
and entry bounds evict least recently used, and neither changes what the detectors measure."""
from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from scrapeshield.clock import FakeClock
from scrapeshield.detectors import CROSS_SESSION_WALK, CrowdView, DetectorConfig, DetectorSet, Observation
from scrapeshield.detectors.crowd import CrossSessionWalk, CrowdIndex
from scrapeshield.detectors.mirror import LogMirror, LogMirrors
from scrapeshield.detectors.strength import stable_hash
from scrapeshield.store.base import LogRead

T0 = 1_700_000_000.0
STACK = "stack\x1ft13d1516h2_8daaf6152771_02713d6af862|chrome"


def log_of(mirrors: LogMirrors[list[int]], key: str, clock: FakeClock, entry: int = 0) -> list[int]:
    return mirrors.local(key, clock.now(), list, list.append, entry)


# -- idle expiry by the injected clock --------------------------------------------------------------

def test_a_log_idle_past_its_ttl_is_dropped_and_counted_as_expired_not_evicted() -> None:
    clock = FakeClock(T0)
    mirrors: LogMirrors[list[int]] = LogMirrors(100, ttl=600)
    log_of(mirrors, "a", clock, 1)
    clock.advance(600)  # exactly the ttl: its entry is still inside the window (kept)
    assert log_of(mirrors, "a", clock, 2) == [1, 2]
    clock.advance(600.001)
    assert log_of(mirrors, "a", clock, 3) == [3]  # begun anew
    assert (mirrors.expired, mirrors.evicted) == (1, 0)


def test_idle_logs_are_swept_when_another_log_is_used() -> None:
    clock = FakeClock(T0)
    mirrors: LogMirrors[list[int]] = LogMirrors(100, ttl=60, max_entries=1_000, size=len)
    for i in range(50):
        log_of(mirrors, f"quiet-{i}", clock, i)
        clock.advance(1)
    assert (len(mirrors), mirrors.entries) == (50, 50)
    clock.advance(40)  # the first 30 are idle past 60 s now, the last 20 not
    log_of(mirrors, "busy", clock)
    assert len(mirrors) == 21 and mirrors.entries == 21
    assert (mirrors.expired, mirrors.evicted) == (30, 0)
    clock.advance(3600)
    log_of(mirrors, "busy", clock)
    assert len(mirrors) == 1 and mirrors.expired == 51  # "busy" itself idled past 60 s too


def test_a_shared_mirror_idle_past_its_ttl_is_rebuilt_from_the_whole_log() -> None:
    mirrors: LogMirrors[list[str]] = LogMirrors(16, 60)
    mirrors.apply("log", LogRead(3, ("a", "b", "c"), True), T0, list, list.append)
    assert mirrors.seen("log", T0 + 61) == 0
    state = mirrors.apply("log", LogRead(1, ("z",), True), T0 + 61, list, list.append)
    assert state == ["z"] and mirrors.expired == 1


def test_a_clock_stepping_back_never_makes_a_log_look_older_than_its_newest_entry() -> None:
    mirrors: LogMirrors[list[int]] = LogMirrors(16, 60)
    mirrors.local("log", T0 + 100, list, list.append, 1)
    mirrors.local("log", T0 + 50, list, list.append, 2)  # a replay out of order
    assert mirrors.local("log", T0 + 160, list, list.append, 3) == [1, 2, 3]  # 60 s after the newest
    assert mirrors.expired == 0


# -- count and entry bounds ------------------------------------------------------------------------

def test_the_count_bound_evicts_the_least_recently_used_log() -> None:
    clock = FakeClock(T0)
    mirrors: LogMirrors[list[int]] = LogMirrors(3, ttl=600)
    for key in ("a", "b", "c"):
        log_of(mirrors, key, clock)
    log_of(mirrors, "a", clock)  # a is now the most recently used: b goes first
    log_of(mirrors, "d", clock, 7)
    assert len(mirrors) == 3 and (mirrors.expired, mirrors.evicted) == (0, 1)
    assert log_of(mirrors, "b", clock, 9) == [9]  # b was evicted (and now c is)
    assert log_of(mirrors, "a", clock, 5) == [0, 0, 5]


def test_the_entry_bound_holds_for_logs_of_any_size() -> None:
    clock = FakeClock(T0)
    mirrors: LogMirrors[list[int]] = LogMirrors(1_000, ttl=600, max_entries=100, size=len)
    rng = random.Random(7)
    for _ in range(5_000):
        log_of(mirrors, f"log-{rng.randint(0, 300)}", clock)
        clock.advance(0.01)
        assert mirrors.entries <= 100
    assert mirrors.entries == sum(len(m) for m in _states(mirrors))
    assert mirrors.evicted > 0 and mirrors.expired == 0


def _states(mirrors: LogMirrors[list[int]]) -> list[list[int]]:
    return [m.state for _, m in mirrors.items()]


# -- the detectors on it ---------------------------------------------------------------------------

def record(path: str, now: float) -> Observation:
    return Observation(path=path, query="", method="GET", is_document=True, is_asset=False, now=now)


def test_crowd_logs_idle_past_the_window_are_dropped_without_changing_a_signal() -> None:
    # given traffic in bursts with long quiet spells: walks, random readers, many networks
    config = DetectorConfig()
    detectors = DetectorSet(config)
    cross = CrossSessionWalk(window_s=config.cross_walk_window_s, keep=config.cross_walk_keep,
                             max_stride=config.sequence_max_stride, max_gap=config.cross_walk_max_gap,
                             min_sessions=config.cross_walk_min_sessions,
                             max_repeat_share=config.cross_walk_max_repeat_share,
                             min_order_share=config.cross_walk_min_order_share,
                             start=config.cross_walk_start, full=config.cross_walk_full)
    reference: dict[str, CrowdIndex] = {}  # never dropped: what the signal would be without expiry
    rng = random.Random(12)
    now = T0
    signals = 0
    for burst in range(12):
        now += rng.choice((5.0, 300.0, 599.0, 600.0, 601.0, 1_800.0))
        nets = [f"net\x1f10.{burst}.{n}.0/24" for n in range(rng.randint(1, 6))]
        base = rng.randint(1_000, 90_000)
        for i in range(rng.randint(20, 80)):
            now += rng.uniform(0.2, 3.0)
            who = f"s{burst}-{i // 4}"
            value = base + i if rng.random() < 0.7 else rng.randint(1, 100_000)
            net = rng.choice(nets)
            obs = record(f"/user/{value}", now)
            ids = detectors.record_ids(obs)
            got = detectors.observe_request(who, obs, ids, CrowdView(who, (STACK, net)))[CROSS_SESSION_WALK]
            best = 0.0
            for scope in (STACK, net):
                index = reference.setdefault(scope, cross.new_index())
                index.add((value, now, stable_hash(who)))
                best = max(best, cross.strength(cross.measure(index, value, now)))
            assert got == best
            signals += got > 0
    stats = detectors.stats()
    assert signals > 0  # the walks were seen
    assert stats["crowd_logs_expired"] > 0 and stats["crowd_logs_evicted"] == 0
    assert stats["crowd_logs"] < len(reference)  # the quiet networks' logs are gone


def test_a_flood_of_record_requests_from_many_networks_stays_within_the_crowd_bounds() -> None:
    config = DetectorConfig(max_keys=1_000, cross_walk_max_logs=500, cross_walk_max_entries=4_096)
    detectors = DetectorSet(config)
    for i in range(60_000):
        who = f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}"
        obs = record(f"/user/{i}", T0 + i * 1e-4)  # all within the window: nothing idles out
        detectors.observe_request(who, obs, None, CrowdView(who, (STACK, f"net\x1f{who.rsplit('.', 1)[0]}.0/24")))
        if i % 97 == 0:
            stats = detectors.stats()
            assert stats["crowd_logs"] <= 500 and stats["crowd_log_entries"] <= 4_096
    stats = detectors.stats()
    assert stats["crowd_logs"] <= 500 and stats["crowd_log_entries"] <= 4_096
    assert stats["crowd_logs_evicted"] > 0 and stats["crowd_logs_expired"] == 0


def test_config_refuses_an_entry_bound_below_one_full_log() -> None:
    try:
        DetectorConfig(cross_walk_keep=256, cross_walk_max_entries=200)
    except ValueError as exc:
        assert "cross_walk_max_entries must be >= cross_walk_keep" in str(exc)
    else:
        raise AssertionError("accepted")


# -- the table is the take-and-put table it was first written as -------------------------------------

@dataclass
class PlainMirror:
    state: list[str]
    appended: int = 0
    updated: float = 0.0
    entries: int = 0


class TakenAndPut:
    """`LogMirrors` as first written: an OrderedDict in use order, a mirror taken out of it
    (`_take`), brought up to date, and put back (`_put`). The reference the table is held to."""

    def __init__(self, max_logs: int, ttl: float, max_entries: int | None) -> None:
        self.max_logs, self.ttl, self.max_entries = max_logs, ttl, max_entries
        self.mirrors: OrderedDict[str, PlainMirror] = OrderedDict()
        self.entries = self.expired = self.evicted = 0

    def local(self, key: str, now: float, entry: str) -> list[str]:
        mirror = self._take(key, now)
        if mirror is None:
            mirror = PlainMirror([])
        mirror.state.append(entry)
        self._put(key, mirror, now)
        return mirror.state

    def apply(self, key: str, read: LogRead, now: float) -> list[str]:
        mirror = self._take(key, now)
        if read.whole or mirror is None:
            if mirror is None or read.appended != mirror.appended:
                if mirror is not None:
                    self.entries -= mirror.entries
                mirror = PlainMirror(list(read.entries), read.appended)
        else:
            first = read.appended - len(read.entries) + 1
            mirror.state.extend(read.entries[max(0, mirror.appended + 1 - first):])
            mirror.appended = max(mirror.appended, read.appended)
        self._put(key, mirror, now)
        return mirror.state

    def _take(self, key: str, now: float) -> PlainMirror | None:
        mirror = self.mirrors.pop(key, None)
        if mirror is None:
            return None
        if now - mirror.updated > self.ttl:
            self.entries -= mirror.entries
            self.expired += 1
            return None
        return mirror

    def _put(self, key: str, mirror: PlainMirror, now: float) -> None:
        if self.max_entries is not None:
            self.entries += len(mirror.state) - mirror.entries
            mirror.entries = len(mirror.state)
        mirror.updated = max(mirror.updated, now)
        while self.mirrors:
            head = next(iter(self.mirrors))
            other = self.mirrors[head]
            if now - other.updated > self.ttl:
                self.expired += 1
            elif len(self.mirrors) >= self.max_logs or (self.max_entries is not None
                                                         and self.entries > self.max_entries):
                self.evicted += 1
            else:
                break
            del self.mirrors[head]
            self.entries -= other.entries
        self.mirrors[key] = mirror

    def table(self) -> tuple[object, ...]:
        return (tuple((key, m.state, m.entries, m.updated) for key, m in self.mirrors.items()),
                self.entries, self.expired, self.evicted)


def _table(mirrors: LogMirrors[list[str]]) -> tuple[object, ...]:
    return (tuple((key, m.state, m.entries, m.updated) for key, m in mirrors.items()),
            mirrors.entries, mirrors.expired, mirrors.evicted)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.sampled_from([0.0, 0.0, 1.0, 5.0, 30.0, -20.0])), max_size=120),
       st.integers(1, 6), st.one_of(st.none(), st.integers(4, 30)), st.booleans())
def test_a_local_log_is_moved_in_place_exactly_as_taken_out_and_put_back(
        uses: list[tuple[int, float]], max_logs: int, max_entries: int | None, by_parts: bool) -> None:
    """Same table, same order, same counts after every use -- with idle logs, both bounds, and a clock
    that steps back -- whether through `local` or `live` + `settle` (the crowd path) or the old way."""
    size = len if max_entries is not None else None
    fast: LogMirrors[list[str]] = LogMirrors(max_logs, 10.0, max_entries, size)
    slow = TakenAndPut(max_logs, 10.0, max_entries)
    now = T0
    for n, (log, step) in enumerate(uses):
        now += step
        key = f"log-{log}"
        if by_parts:
            mirror = fast.live(key, now)
            fresh = mirror is None
            if mirror is None:
                mirror = LogMirror(list[str]())
            mirror.state.append(str(n))
            fast.settle(key, mirror, now, len(mirror.state), fresh)
            state = mirror.state
        else:
            state = fast.local(key, now, list, list.append, str(n))
        assert state == slow.local(key, now, str(n))
        assert _table(fast) == slow.table()


@st.composite
def log_reads(draw: st.DrawFn) -> tuple[int, LogRead]:
    """A store's answer about one of a few logs: the whole log or what came since an append, racing
    replies (an older whole log after a newer one) included."""
    appended = draw(st.integers(1, 12))
    count = draw(st.integers(0, min(appended, 4)))
    entries = tuple(f"e{k}" for k in range(appended - count + 1, appended + 1))
    return draw(st.integers(0, 5)), LogRead(appended, entries, draw(st.booleans()))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(log_reads(), st.sampled_from([0.0, 0.0, 1.0, 5.0, 30.0, -20.0]), st.booleans()),
                max_size=100),
       st.integers(1, 6), st.one_of(st.none(), st.integers(4, 30)))
def test_a_shared_log_is_brought_up_to_date_in_place_exactly_as_taken_out_and_put_back(
        reads: list[tuple[tuple[int, LogRead], float, bool]], max_logs: int, max_entries: int | None) -> None:
    """`apply` (whole logs, increments, stale and racing replies, rebuilt logs) mixed with local
    uses: the same states, order and counts as the table first written."""
    size = len if max_entries is not None else None
    fast: LogMirrors[list[str]] = LogMirrors(max_logs, 10.0, max_entries, size)
    slow = TakenAndPut(max_logs, 10.0, max_entries)
    now = T0
    for n, ((log, read), step, local) in enumerate(reads):
        now += step
        key = f"log-{log}"
        if local:
            assert fast.local(key, now, list, list.append, f"l{n}") == slow.local(key, now, f"l{n}")
        else:
            assert fast.apply(key, read, now, list, list.append) == slow.apply(key, read, now)
        assert _table(fast) == slow.table()
        kept = slow.mirrors[key]
        assert fast.seen(key, now) == (0 if now - kept.updated >= 10.0 else kept.appended)

"""Behavioural detectors: what an identity's recent requests look like.

The engine builds one `Observation` per request, picks an identity key (IP,
subnet, client-stack fingerprint, ...) and asks a `DetectorSet` for signal
strengths in [0, 1] by stable name; policies weight them into a score.
Responses are fed back with `observe_response` (probe rate, asset references).

Pure: no mitmproxy, no clock of its own (time is the `now` passed in).
Bounded: one table of per-identity state (identities.py: max_keys, idle TTL), and every
structure inside a state is capped (see docs/detectors.md for the figures).

Each detector module holds an algorithm object (parameters, no per-identity
state) and a small slotted state class; `DetectorSet` owns the single
identity table, so a request costs one cache lookup for all the detectors
and the key is stored once.

Signals are reported on the requests that carry evidence for them: asset
requests report all zeros (they only feed `no_assets`), so a policy summing
per-request evidence doesn't multiply a person's score by the asset count.

Shared state. With a shared store (Redis) every replica sees only part of a
client's requests, so the state that decides within a client's first records
lives in the store's logs (`Store.append_logs`) instead of the process: the
recent ids of each walk (`sequential_ids`), the recent page arrival times
(`regular_timing`) and the crowd logs of `cross_session_walk`. A request asks
`log_plan` what to append, the engine sends that in one store call, and
`observe_request` replays the logs it got back through the same algorithms.
Without a shared store (`shared=False`) all of it stays in process.
`many_distinct_resources`, `probe_rate`, `no_assets` and `record_rush` stay per
process in both cases (docs/detectors.md says why).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mypy_extensions import mypyc_attr

from ..store.base import LogAppend, Logs
from . import crowd as crowd_log
from . import sequence as walk_log
from . import timing as timing_log
from .assets import MissingAssets, file_name, name_hash
from .classify import is_asset_path, is_asset_request, is_document_request
from .config import DetectorConfig
from .crowd import CrossSessionWalk, CrowdIndex
from .distinct import DistinctResources
from .identities import DISTINCT, LEDGER, TIMING, IdentityState, IdentityTable
from .mirror import LogMirror, LogMirrors
from .probe import ProbeRate, ProbeWindow
from .rush import RecordRush
from .sequence import LoggedWalk, SequentialIds, Walk, extract_ids
from .strength import ramp, stable_hash, unmemoised_hash
from .timing import LoggedArrivals, RegularTiming

__all__ = [
    "CROSS_SESSION_WALK",
    "MANY_DISTINCT_RESOURCES",
    "NO_ASSETS",
    "PROBE_RATE",
    "RECORD_RUSH",
    "REGULAR_TIMING",
    "SEQUENTIAL_IDS",
    "SIGNAL_NAMES",
    "CrowdView",
    "DetectorConfig",
    "DetectorSet",
    "LogPlan",
    "Observation",
    "is_asset_path",
    "is_asset_request",
    "is_document_request",
]

MANY_DISTINCT_RESOURCES = "many_distinct_resources"
SEQUENTIAL_IDS = "sequential_ids"
PROBE_RATE = "probe_rate"
NO_ASSETS = "no_assets"
REGULAR_TIMING = "regular_timing"
CROSS_SESSION_WALK = "cross_session_walk"
RECORD_RUSH = "record_rush"
SIGNAL_NAMES = (MANY_DISTINCT_RESOURCES, SEQUENTIAL_IDS, PROBE_RATE, NO_ASSETS, REGULAR_TIMING, CROSS_SESSION_WALK,
                RECORD_RUSH)

# Every quiet request's signals: one value, never written. A dict, not a read-only proxy: the
# engine merges it into the request's signals, and only a dict merges on the C fast path.
_QUIET: Mapping[str, float] = dict.fromkeys(SIGNAL_NAMES, 0.0)
_HTML_TYPES = ("text/html", "application/xhtml+xml")


@mypyc_attr(acyclic=True)  # made per request: not tracked by the GC (compiled), so not counted toward a collection
@dataclass(frozen=True, slots=True, init=False)
class Observation:
    """What the detectors need to know about one request."""

    path: str  # without the query
    query: str  # raw query string without '?', '' if none
    method: str
    is_document: bool  # a page navigation (see is_document_request)
    is_asset: bool  # CSS/JS/image/font/media (see is_asset_request)
    now: float  # epoch seconds

    # init=False, this __init__: native when compiled (docs/architecture.md, "The compiled core")
    def __init__(self, path: str, query: str, method: str, is_document: bool, is_asset: bool, now: float) -> None:
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "query", query)
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "is_document", is_document)
        object.__setattr__(self, "is_asset", is_asset)
        object.__setattr__(self, "now", now)


@mypyc_attr(acyclic=True)  # made per request: not tracked by the GC (compiled), so not counted toward a collection
@dataclass(frozen=True, slots=True, init=False)
class CrowdView:
    """Where a record request stands in the crowd (`cross_session_walk`): who fetches it (a
    session id, or the address without one) and the scopes whose walks it may extend (its client
    stack, its network)."""

    who: str
    scopes: tuple[str, ...]

    # init=False, this __init__: native when compiled (docs/architecture.md, "The compiled core")
    def __init__(self, who: str, scopes: tuple[str, ...]) -> None:
        object.__setattr__(self, "who", who)
        object.__setattr__(self, "scopes", scopes)


@dataclass(frozen=True, slots=True, init=False)
class LogPlan:
    """The shared logs one request appends to (one store call), and which answer is which:
    first one log per id series (walks), then the timing log if `timing`, then the crowd logs."""

    appends: tuple[LogAppend, ...]
    walks: int
    timing: bool

    # init=False, this __init__: native when compiled (docs/architecture.md, "The compiled core")
    def __init__(self, appends: tuple[LogAppend, ...], walks: int, timing: bool) -> None:
        object.__setattr__(self, "appends", appends)
        object.__setattr__(self, "walks", walks)
        object.__setattr__(self, "timing", timing)


class DetectorSet:
    """All enabled detectors over one bounded identity table."""

    def __init__(self, config: DetectorConfig | None = None, *, shared: bool = False) -> None:
        c = config if config is not None else DetectorConfig()
        self.config = c
        self.shared = shared  # walks, timing and crowds live in the store's logs (see the module doc)
        self._now = 0.0  # the time of the latest observation (describe, fork)
        # Entries are renewed at most every ttl/8 and live for 9/8 ttl (renewing was TTLCache's
        # costliest operation; kept so identities are forgotten exactly as before): an idle identity
        # is forgotten between idle_ttl_s and 9/8 of it.
        self._renew_every = c.idle_ttl_s / 8.0
        self._table: IdentityTable[IdentityState] = IdentityTable(c.max_keys, c.idle_ttl_s * 1.125)
        self._distinct = (
            DistinctResources(c.distinct_window_s, c.distinct_exact_cap, c.distinct_sketch_precision,
                              c.distinct_start, c.distinct_full)
            if c.distinct_enabled else None
        )
        self._distinct_documents_only = c.distinct_scope == "document"
        self._sequence = (
            SequentialIds(c.sequence_max_pause_s, c.sequence_max_stride, c.sequence_max_gap,
                          c.sequence_max_series, c.sequence_start, c.sequence_full)
            if c.sequence_enabled else None
        )
        self._probe = (
            ProbeRate(c.probe_status_set(), c.probe_window, c.probe_min_responses, c.probe_start, c.probe_full)
            if c.probe_enabled else None
        )
        self._assets = (
            MissingAssets(
                grace_s=c.assets_grace_s, scan_bytes=c.assets_scan_bytes, max_refs=c.assets_max_refs,
                max_pending=c.assets_max_pending, known_cap=c.assets_known_cap,
                shared_pages=c.assets_shared_pages, shared_max_refs=c.assets_shared_max_refs,
                verdicts=c.assets_verdicts, min_pages=c.assets_min_pages,
                start=c.assets_start, full=c.assets_full,
                fallback_start=c.assets_fallback_start, fallback_full=c.assets_fallback_full,
                fallback_max_ratio=c.assets_fallback_max_ratio,
            )
            if c.assets_enabled else None
        )
        self._timing = (
            RegularTiming(c.timing_samples, c.timing_min_samples, c.timing_max_mean_s,
                          c.timing_cv_start, c.timing_cv_full)
            if c.timing_enabled else None
        )
        self._rush = RecordRush(c.rush_half_life_s, c.rush_start, c.rush_full) if c.rush_enabled else None
        self._cross = (
            CrossSessionWalk(window_s=c.cross_walk_window_s, keep=c.cross_walk_keep,
                             max_stride=c.sequence_max_stride, max_gap=c.cross_walk_max_gap,
                             min_sessions=c.cross_walk_min_sessions,
                             max_repeat_share=c.cross_walk_max_repeat_share,
                             min_order_share=c.cross_walk_min_order_share,
                             start=c.cross_walk_start, full=c.cross_walk_full)
            if c.cross_walk_enabled else None
        )
        # Shared logs as this replica has read them (mirror.py); the crowd indexes are also where the
        # crowd logs live without a shared store.
        self._walk_logs: LogMirrors[LoggedWalk] = LogMirrors(c.max_keys, c.sequence_max_pause_s)
        self._arrival_logs: LogMirrors[LoggedArrivals] = LogMirrors(c.max_keys, c.idle_ttl_s)
        self._crowd_logs: LogMirrors[CrowdIndex] = LogMirrors(c.cross_walk_max_logs, c.cross_walk_window_s,
                                                               c.cross_walk_max_entries, len)

    @property
    def html_scan_bytes(self) -> int:
        """How much of an HTML response `observe_response` reads (0: none, no asset detector)."""
        return self._assets.scan_bytes if self._assets is not None else 0

    @property
    def watches_crowds(self) -> bool:
        """Whether record requests should come with a `CrowdView`."""
        return self._cross is not None

    @staticmethod
    def record_ids(obs: Observation) -> list[tuple[str, int]]:
        """The (series, id) pairs of a request (none for assets); computed once per request."""
        return [] if obs.is_asset else extract_ids(obs.path, obs.query)

    def log_plan(self, key: str, obs: Observation, ids: list[tuple[str, int]],
                 crowd: CrowdView | None = None) -> LogPlan | None:
        """What this request appends to the shared logs; None without a shared store, for assets,
        and when nothing is to be logged."""
        if not self.shared or obs.is_asset:
            return None
        c = self.config
        now = obs.now
        appends: list[LogAppend] = []
        if self._sequence is not None:
            ttl = c.sequence_max_pause_s
            for series, value in ids:
                log = f"q\x1f{key}\x1f{stable_hash(series):x}"  # a path template is client input: kept short
                appends.append(LogAppend(log, walk_log.log_entry(value, now), c.shared_walk_keep, ttl,
                                         self._walk_logs.seen(log, now)))
        walks = len(appends)
        timing = self._timing is not None
        if timing:
            log, ttl = f"t\x1f{key}", c.idle_ttl_s
            appends.append(LogAppend(log, timing_log.log_entry(now, stable_hash(obs.path)), c.shared_timing_keep, ttl,
                                     self._arrival_logs.seen(log, now)))
        if self._cross is not None and crowd is not None and ids:
            series, value = ids[0]
            entry = crowd_log.log_entry(value, now, stable_hash(crowd.who))
            ttl = c.cross_walk_window_s
            for scope in crowd.scopes:
                log = crowd_log.log_name(scope, series)
                appends.append(LogAppend(log, entry, c.cross_walk_keep, ttl, self._crowd_logs.seen(log, now)))
        return LogPlan(tuple(appends), walks, timing) if appends else None

    # -- hooks ---------------------------------------------------------------------------------

    def observe_request(self, key: str, obs: Observation, ids: list[tuple[str, int]] | None = None,
                        crowd: CrowdView | None = None, plan: LogPlan | None = None,
                        logs: Logs = ()) -> Mapping[str, float]:
        """The signals of one request. `ids` are its `record_ids` (computed here if None); with a
        shared store, `plan` and `logs` are its `log_plan` and the store's answer to it."""
        now = obs.now
        self._now = now
        st = self._table.state(key, now, self._renew_every, IdentityState)  # `_identity`, inlined
        if obs.is_asset:
            if self._assets is not None:
                st.parts |= LEDGER
                self._assets.on_asset_request(st, name_hash(file_name(obs.path)), now)
            return _QUIET

        path = obs.path
        path_hash = -1  # stable_hash(path), once needed
        distinct = sequence = probe = assets = timing = cross = rush = 0.0
        if ids is None:
            ids = extract_ids(path, obs.query)
        if self._distinct is not None and (obs.is_document or not self._distinct_documents_only):
            if not st.parts & DISTINCT:
                st.begin_distinct(now)
            # A record's resource (its ids) seldom repeats: hashed without the memo.
            if obs.query:
                resource = f"{path}?{obs.query}"
                resource_hash = unmemoised_hash(resource) if ids else stable_hash(resource)
            else:
                resource_hash = path_hash = unmemoised_hash(path) if ids else stable_hash(path)
            distinct = self._distinct.observe(st, resource_hash, now)
        if self._sequence is not None and ids:
            sequence = self._shared_walks(plan, logs, now) if plan is not None else self._walk(st, ids, now)
        if self._probe is not None and st.probe is not None:
            probe = self._probe.strength(st.probe)
        if self._assets is not None:
            st.parts |= LEDGER
            assets = self._assets.on_page_request(st, obs.is_document, now)
        if self._timing is not None:
            if plan is not None and plan.timing:
                follow_timing = self._timing.follow
                timing = self._arrival_logs.apply(plan.appends[plan.walks].key, logs[plan.walks], now,
                                                  LoggedArrivals, follow_timing).strength
            else:
                if path_hash < 0:
                    path_hash = stable_hash(path)
                if not st.parts & TIMING:
                    st.begin_timing(now, path_hash)
                else:
                    timing = self._timing.observe(st, path_hash, now)
        if self._cross is not None and crowd is not None and ids:
            cross = self._crowd_strength(crowd, ids[0], now, plan, logs)
        if self._rush is not None and ids:
            count = st.rush = self._rush.count(st.rush, st.rush_at, now)
            st.rush_at = now
            rush = self._rush.strength(count)
        if not (distinct or sequence or probe or assets or timing or cross or rush):
            return _QUIET  # most requests: one read-only value instead of a dict each
        return {
            MANY_DISTINCT_RESOURCES: distinct,
            SEQUENTIAL_IDS: sequence,
            PROBE_RATE: probe,
            NO_ASSETS: assets,
            REGULAR_TIMING: timing,
            CROSS_SESSION_WALK: cross,
            RECORD_RUSH: rush,
        }

    def _walk(self, st: IdentityState, ids: list[tuple[str, int]], now: float) -> float:
        """`sequential_ids` in process. An identity's only walk is kept without a dict (~180 bytes
        less); what it measures is exactly `SequentialIds.observe` over a dict."""
        seq = self._sequence
        assert seq is not None
        walks = st.walks
        if isinstance(walks, Walk):
            if len(ids) == 1 and ids[0][0] == walks.series:
                return seq.step(walks, ids[0][1], now)
            st.walks = walks = {walks.series: walks}
        elif walks is None:
            if len(ids) == 1:
                series, value = ids[0]
                walk = st.walks = Walk(value, now, series)
                return ramp(walk.run, seq.start, seq.full)
            st.walks = walks = {}
        return seq.observe(walks, ids, now)

    def _shared_walks(self, plan: LogPlan, logs: Logs, now: float) -> float:
        """`sequential_ids` from the shared logs of the request's series (its longest walk)."""
        seq = self._sequence
        assert seq is not None
        longest = 0
        for append, read in zip(plan.appends[:plan.walks], logs, strict=False):
            walk = self._walk_logs.apply(append.key, read, now, LoggedWalk, seq.follow).walk
            if walk is not None and walk.run > longest:
                longest = walk.run
        return ramp(longest, seq.start, seq.full)

    def _crowd_strength(self, crowd: CrowdView, first: tuple[str, int], now: float, plan: LogPlan | None,
                        logs: Logs) -> float:
        """`cross_session_walk`: the strongest run the request's id extends, over its scopes."""
        cross = self._cross
        assert cross is not None
        series, value = first
        strength = 0.0
        mirrors = self._crowd_logs
        if plan is not None:
            start = plan.walks + plan.timing
            indexes = [mirrors.apply(append.key, read, now, cross.new_index, crowd_log.follow)
                       for append, read in zip(plan.appends[start:], logs[start:], strict=False)]
        else:  # in process: this replica is the only writer, so the index is the log
            who = stable_hash(crowd.who)
            tag = crowd_log.series_tag(series)
            for scope in crowd.scopes:  # `mirrors.local`, without its callables
                key = f"x\x1f{scope}{tag}"  # crowd_log.log_name(scope, series)
                mirror = mirrors.live(key, now)
                if mirror is None:
                    mirror = LogMirror(cross.new_index())
                    index = mirror.state
                    at = index.append(value, now, who)
                    mirrors.settle(key, mirror, now, index.size, True)
                else:
                    index = mirror.state
                    at = index.append(value, now, who)
                    mirrors.settle(key, mirror, now, index.size, False)
                s = cross.strength_at(index, value, now, at)
                if s > strength:
                    strength = s
            return strength
        for index in indexes:
            s = cross.strength_at(index, value, now)
            if s > strength:
                strength = s
        return strength

    def observe_response(
        self, key: str, status: int, content_type: str | None, body: bytes | None, now: float,
        *, is_asset: bool = False,
    ) -> None:
        """Feed a response. Pass `is_asset=obs.is_asset` so a page's broken images aren't probes.
        `body` (decoded) is only read for 2xx HTML and only its first `assets_scan_bytes`."""
        if is_asset:
            return
        st = self._identity(key, now)
        if self._probe is not None:
            w = st.probe
            if w is None:
                st.probe = w = ProbeWindow()
            self._probe.observe(w, status)
        if (
            self._assets is not None and body and 200 <= status < 300
            and content_type is not None and content_type.lstrip().lower().startswith(_HTML_TYPES)
        ):
            st.parts |= LEDGER
            self._assets.on_html(st, body, now)

    # -- housekeeping and metrics --------------------------------------------------------------

    def tracked_keys(self, now: float | None = None) -> int:
        """Identities currently tracked (after expiring idle ones, as of `now` or the last observation)."""
        if now is not None:
            self._now = now
        return self._table.count(self._now)

    def expire(self, now: float) -> None:
        """Drop identities idle past their TTL (also happens lazily on inserts)."""
        self._now = now
        self._table.expire(now)

    def clear(self) -> None:
        """Forget everything: all identities and the learned site-wide asset references."""
        self._table.clear()
        self._crowd_logs.clear()
        self._walk_logs.clear()
        self._arrival_logs.clear()
        if self._assets is not None:
            self._assets.clear()

    def stats(self, now: float | None = None) -> dict[str, int]:
        return {
            "identities": self.tracked_keys(now),
            "shared_asset_refs": self._assets.shared_refs() if self._assets is not None else 0,
            "crowd_logs": len(self._crowd_logs),
            "crowd_log_entries": self._crowd_logs.entries,
            "crowd_logs_expired": self._crowd_logs.expired,
            "crowd_logs_evicted": self._crowd_logs.evicted,
        }

    def fork(self, key: str) -> DetectorSet:
        """The same settings with a copy of one identity's state and of the site-wide asset
        references: observing a request for `key` on the fork does what it would do here, and
        changes nothing here (explain on a live shield)."""
        other = DetectorSet(self.config, shared=self.shared)
        other._now = now = self._now
        # Copied by the classes themselves: compiled (mypyc) ones cannot be rebuilt by copy.deepcopy.
        other._crowd_logs = self._crowd_logs.copy(CrowdIndex.copy)  # bounded (cross_walk_max_logs); explain is rare
        state = self._table.get(key, now)
        renewed = self._table.renewed(key)
        if state is not None and renewed is not None:
            other._table.put(key, state.copy(), renewed)
        if self._assets is not None and other._assets is not None:
            other._assets.copy_shared(self._assets)
        return other

    def describe(self, key: str) -> dict[str, object] | None:
        """Debug view of one identity (None if not tracked): what each detector currently measures."""
        now = self._now
        st = self._table.get(key, now)
        if st is None:
            return None
        out: dict[str, object] = {}
        if self._distinct is not None and st.parts & DISTINCT:
            out["distinct_resources"] = round(self._distinct.count(st, now), 1)
        if isinstance(st.walks, Walk):
            out["walks"] = {st.walks.series: st.walks.run}
        elif st.walks:
            out["walks"] = {series: walk.run for series, walk in st.walks.items()}
        if self._probe is not None and st.probe is not None:
            out["probe_share"] = self._probe.share(st.probe)
            out["responses"] = st.probe.count
        if self._assets is not None and st.parts & LEDGER:
            led = st
            out["documents"] = led.documents
            out["assets"] = led.assets
            out["html_pages"] = led.html_pages
            out["pending_pages"] = len(led.pages) if led.pages else 0
            out["starved_share"] = self._assets.starved_share(led)
        if self._timing is not None and st.parts & TIMING:
            out["timing_cv"] = self._timing.cv(st)
            out["timing_samples"] = st.count
        if self._rush is not None and st.rush_at:
            out["record_rush"] = round(self._rush.decayed(st.rush, st.rush_at, now), 1)
        return out

    # -- identity table ------------------------------------------------------------------------

    def _identity(self, key: str, now: float) -> IdentityState:
        self._now = now
        return self._table.state(key, now, self._renew_every, IdentityState)

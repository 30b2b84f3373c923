"""Behavioural detectors: what an identity's recent requests look like.

The engine builds one `Observation` per request, picks an identity key (IP,
subnet, client-stack fingerprint, ...) and asks a `DetectorSet` for signal
strengths in [0, 1] by stable name; policies weight them into a score.
Responses are fed back with `observe_response` (probe rate, asset references).

Pure: no mitmproxy, no clock of its own (time is the `now` passed in).
Bounded: one TTLCache of per-identity state (max_keys, idle TTL), and every
structure inside a state is capped (see docs/detectors.md for the figures).

Each detector module holds an algorithm object (parameters, no per-identity
state) and a small slotted state class; `DetectorSet` owns the single
identity table, so a request costs one cache lookup for all five detectors
and the key is stored once.

Signals are reported on the requests that carry evidence for them: asset
requests report all zeros (they only feed `no_assets`), so a policy summing
per-request evidence doesn't multiply a person's score by the asset count.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from cachetools import TTLCache

from .assets import AssetLedger, MissingAssets, file_name, name_hash
from .classify import is_asset_path, is_asset_request, is_document_request
from .config import DetectorConfig
from .distinct import DistinctResources, DistinctWindow
from .probe import ProbeRate, ProbeWindow
from .sequence import SequentialIds, Walk, extract_ids
from .strength import stable_hash
from .timing import ArrivalGaps, RegularTiming

__all__ = [
    "MANY_DISTINCT_RESOURCES",
    "NO_ASSETS",
    "PROBE_RATE",
    "REGULAR_TIMING",
    "SEQUENTIAL_IDS",
    "SIGNAL_NAMES",
    "DetectorConfig",
    "DetectorSet",
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
SIGNAL_NAMES = (MANY_DISTINCT_RESOURCES, SEQUENTIAL_IDS, PROBE_RATE, NO_ASSETS, REGULAR_TIMING)

_QUIET: Mapping[str, float] = MappingProxyType(dict.fromkeys(SIGNAL_NAMES, 0.0))
_HTML_TYPES = ("text/html", "application/xhtml+xml")


@dataclass(frozen=True, slots=True)
class Observation:
    """What the detectors need to know about one request."""

    path: str  # without the query
    query: str  # raw query string without '?', '' if none
    method: str
    is_document: bool  # a page navigation (see is_document_request)
    is_asset: bool  # CSS/JS/image/font/media (see is_asset_request)
    now: float  # epoch seconds


class IdentityState:
    """Everything the detectors remember about one identity; parts are created on first use."""

    __slots__ = ("assets", "distinct", "probe", "renewed", "timing", "walks")

    def __init__(self, now: float) -> None:
        self.renewed = now  # last time the table's idle TTL was pushed back
        self.distinct: DistinctWindow | None = None
        self.walks: dict[str, Walk] | None = None
        self.probe: ProbeWindow | None = None
        self.assets: AssetLedger | None = None
        self.timing: ArrivalGaps | None = None


class _ObservedTime:
    """TTLCache timer: the time of the observation being processed, not the wall clock."""

    __slots__ = ("t",)

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class DetectorSet:
    """All enabled detectors over one bounded identity table."""

    def __init__(self, config: DetectorConfig | None = None) -> None:
        c = config if config is not None else DetectorConfig()
        self.config = c
        self._time = _ObservedTime()
        # Renewing a TTLCache entry is its costliest operation, so entries are renewed at most every
        # ttl/8 and live for 9/8 ttl: an idle identity is forgotten between idle_ttl_s and 9/8 of it.
        self._renew_every = c.idle_ttl_s / 8.0
        self._table: TTLCache[str, IdentityState] = TTLCache(
            maxsize=c.max_keys, ttl=c.idle_ttl_s * 1.125, timer=self._time
        )
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

    # -- hooks ---------------------------------------------------------------------------------

    def observe_request(self, key: str, obs: Observation) -> Mapping[str, float]:
        now = obs.now
        st = self._identity(key, now)
        if obs.is_asset:
            if self._assets is not None:
                led = st.assets
                if led is None:
                    st.assets = led = AssetLedger()
                self._assets.on_asset_request(led, name_hash(file_name(obs.path)), now)
            return _QUIET

        path = obs.path
        distinct = sequence = probe = assets = timing = 0.0
        if self._distinct is not None and (obs.is_document or not self._distinct_documents_only):
            w = st.distinct
            if w is None:
                st.distinct = w = DistinctWindow(now)
            resource = f"{path}?{obs.query}" if obs.query else path
            distinct = self._distinct.observe(w, stable_hash(resource), now)
        if self._sequence is not None:
            ids = extract_ids(path, obs.query)
            if ids:
                walks = st.walks
                if walks is None:
                    st.walks = walks = {}
                sequence = self._sequence.observe(walks, ids, now)
        if self._probe is not None and st.probe is not None:
            probe = self._probe.strength(st.probe)
        if self._assets is not None:
            led = st.assets
            if led is None:
                st.assets = led = AssetLedger()
            assets = self._assets.on_page_request(led, obs.is_document, now)
        if self._timing is not None:
            path_hash = stable_hash(path)
            g = st.timing
            if g is None:
                st.timing = self._timing.new_state(now, path_hash)
            else:
                timing = self._timing.observe(g, path_hash, now)
        return {
            MANY_DISTINCT_RESOURCES: distinct,
            SEQUENTIAL_IDS: sequence,
            PROBE_RATE: probe,
            NO_ASSETS: assets,
            REGULAR_TIMING: timing,
        }

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
            led = st.assets
            if led is None:
                st.assets = led = AssetLedger()
            self._assets.on_html(led, body, now)

    # -- housekeeping and metrics --------------------------------------------------------------

    def tracked_keys(self, now: float | None = None) -> int:
        """Identities currently tracked (after expiring idle ones, as of `now` or the last observation)."""
        if now is not None:
            self._time.t = now
        return len(self._table)

    def expire(self, now: float) -> None:
        """Drop identities idle past their TTL (also happens lazily on inserts)."""
        self._time.t = now
        self._table.expire(now)

    def clear(self) -> None:
        """Forget everything: all identities and the learned site-wide asset references."""
        self._table.clear()
        if self._assets is not None:
            self._assets.clear()

    def stats(self, now: float | None = None) -> dict[str, int]:
        return {
            "identities": self.tracked_keys(now),
            "shared_asset_refs": self._assets.shared_refs() if self._assets is not None else 0,
        }

    def fork(self, key: str) -> DetectorSet:
        """The same settings with a copy of one identity's state and of the site-wide asset
        references: observing a request for `key` on the fork does what it would do here, and
        changes nothing here (explain on a live shield)."""
        other = DetectorSet(self.config)
        other._time.t = self._time.t
        state = self._table.get(key)
        if state is not None:
            other._table[key] = copy.deepcopy(state)
        if self._assets is not None:
            other._assets = copy.deepcopy(self._assets)
        return other

    def describe(self, key: str) -> dict[str, object] | None:
        """Debug view of one identity (None if not tracked): what each detector currently measures."""
        st = self._table.get(key)
        if st is None:
            return None
        now = self._time.t
        out: dict[str, object] = {}
        if self._distinct is not None and st.distinct is not None:
            out["distinct_resources"] = round(self._distinct.count(st.distinct, now), 1)
        if st.walks:
            out["walks"] = {series: walk.run for series, walk in st.walks.items()}
        if self._probe is not None and st.probe is not None:
            out["probe_share"] = self._probe.share(st.probe)
            out["responses"] = st.probe.count
        if self._assets is not None and st.assets is not None:
            led = st.assets
            out["documents"] = led.documents
            out["assets"] = led.assets
            out["html_pages"] = led.html_pages
            out["pending_pages"] = len(led.pages) if led.pages else 0
            out["starved_share"] = self._assets.starved_share(led)
        if self._timing is not None and st.timing is not None:
            out["timing_cv"] = self._timing.cv(st.timing)
            out["timing_samples"] = st.timing.count
        return out

    # -- identity table ------------------------------------------------------------------------

    def _identity(self, key: str, now: float) -> IdentityState:
        self._time.t = now
        table = self._table
        try:
            st = table[key]
        except KeyError:
            st = IdentityState(now)
            table[key] = st
            return st
        if now - st.renewed >= self._renew_every:
            st.renewed = now
            table[key] = st
        return st

"""Detector parameters: one flat, frozen record of plain values (policy YAML maps onto it).

Convention: every signal ramps linearly from 0 at `<name>_start` to 1 at
`<name>_full` (for timing, a *lower* CV is more suspicious, so
`timing_cv_full < timing_cv_start`). Every detector has `<name>_enabled`; a
disabled detector keeps no state and always reports 0.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DISTINCT_SCOPES = ("non_asset", "document")


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    # -- identity table (shared by all detectors) --
    max_keys: int = 100_000  # identities tracked at once; least recently seen evicted first
    idle_ttl_s: float = 900.0  # an identity idle this long is forgotten (within +1/8)

    # -- many_distinct_resources --
    distinct_enabled: bool = True
    distinct_window_s: float = 600.0  # sliding window
    distinct_scope: str = "non_asset"  # which requests count: "non_asset" (pages + API) or "document"
    distinct_exact_cap: int = 256  # exact set up to this many, then a HyperLogLog sketch
    distinct_sketch_precision: int = 8  # 2**p one-byte registers; error ~ 1.04/sqrt(2**p)
    distinct_start: float = 60.0  # distinct resources in the window where the signal starts
    distinct_full: float = 150.0  # ... and where it reaches 1

    # -- sequential_ids --
    sequence_enabled: bool = True
    sequence_max_pause_s: float = 120.0  # a walk ends after this long without a step
    sequence_max_stride: int = 1000  # largest |stride| still called a walk
    sequence_max_gap: int = 3  # a walk may skip up to this many strides at once
    sequence_max_series: int = 8  # (template, ID position) series followed per identity
    sequence_start: float = 5.0  # walk length (distinct IDs) where the signal starts
    sequence_full: float = 20.0  # ... and where it reaches 1

    # -- cross_session_walk (docs/detectors.md) --
    cross_walk_enabled: bool = True
    cross_walk_window_s: float = 600.0  # record requests older than this are forgotten
    cross_walk_keep: int = 128  # record requests remembered per scope (stack, network) and id series
    cross_walk_max_logs: int = 20_000  # (scope, series) logs kept in process; least recently used evicted
    cross_walk_max_entries: int = 131_072  # record requests held in all those logs together (~38-66 bytes each)
    cross_walk_max_gap: int = 3  # neighbours on a run are at most this many strides apart
    cross_walk_min_sessions: int = 3  # different sessions (or addresses) on the run, at least
    cross_walk_max_repeat_share: float = 0.5  # more re-fetches of the run's ids than this: a crowd, not a walk
    cross_walk_min_order_share: float = 0.8  # neighbouring ids first fetched in walk order, at least
    cross_walk_start: float = 8.0  # distinct ids on the run where the signal starts
    cross_walk_full: float = 24.0  # ... and where it reaches 1

    # -- detector state shared through a store (Redis) --
    shared_walk_keep: int = 64  # recent ids per identity and series in the shared log
    shared_timing_keep: int = 33  # recent page requests per identity in the shared log

    # -- probe_rate --
    probe_enabled: bool = True
    probe_statuses: str = "400,403,404,410"  # statuses that count as probes (from_mapping also takes a list)
    probe_window: int = 32  # last N responses (non-asset) per identity
    probe_min_responses: int = 8  # no signal before this many responses
    probe_start: float = 0.2  # probe share where the signal starts
    probe_full: float = 0.6  # ... and where it reaches 1

    # -- no_assets --
    assets_enabled: bool = True
    assets_grace_s: float = 15.0  # time a browser gets to fetch a page's assets
    assets_scan_bytes: int = 65_536  # HTML scanned for references, from the start
    assets_max_refs: int = 24  # references kept per page
    assets_max_pending: int = 8  # pages awaiting judgement per identity (oldest judged early)
    assets_known_cap: int = 64  # fetched assets remembered per identity, per generation (x2)
    assets_shared_pages: int = 3  # refs seen on this many pages are site chrome, ignored; 0 = off
    assets_shared_max_refs: int = 4096  # global table of refs -> pages using them
    assets_verdicts: int = 16  # last N judged pages per identity
    assets_min_pages: int = 3  # no signal before this many judged pages
    assets_start: float = 0.5  # starved-page share where the signal starts
    assets_full: float = 0.9  # ... and where it reaches 1
    assets_fallback_start: int = 4  # no bodies: documents (with ~no assets) where it starts; 0 = off
    assets_fallback_full: int = 12  # ... and where it reaches 1
    assets_fallback_max_ratio: float = 0.1  # no bodies: more assets per document than this = browser

    # -- record_rush --
    rush_enabled: bool = True
    rush_half_life_s: float = 30.0  # of the decayed count of an identity's record requests
    rush_start: float = 12.0  # decayed count where the signal starts (one a second: the 14th record)
    rush_full: float = 22.0  # ... and where it reaches 1 (one a second: the 30th)

    # -- regular_timing --
    timing_enabled: bool = True
    timing_samples: int = 16  # gaps kept per identity (ring buffer)
    timing_min_samples: int = 8  # no signal before this many gaps
    timing_max_mean_s: float = 5.0  # slower on average than this = no signal
    timing_cv_start: float = 0.35  # coefficient of variation where the signal starts
    timing_cv_full: float = 0.15  # ... and where it reaches 1 (more regular)

    def __post_init__(self) -> None:
        problems = _value_problems(self)
        if problems:
            raise ValueError("invalid detector config: " + "; ".join(problems))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> DetectorConfig:
        """Build from a policy's `detectors:` mapping; reports *every* problem at once."""
        problems: list[str] = []
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        statuses = values.get("probe_statuses")
        if isinstance(statuses, (list, tuple)) and all(type(s) is int for s in statuses):
            values = {**values, "probe_statuses": ",".join(str(s) for s in statuses)}  # YAML list form
        problems.extend(f"unknown field {name!r}" for name in sorted(set(values) - set(defaults)))
        for name, value in values.items():
            if name in defaults and not _type_ok(defaults[name], value):
                problems.append(f"{name}: expected {type(defaults[name]).__name__}, got {value!r}")
        if problems:
            raise ValueError("invalid detector config: " + "; ".join(problems))
        return cls(**values)

    def probe_status_set(self) -> frozenset[int]:
        return frozenset(int(s) for s in self.probe_statuses.split(",") if s.strip())


def _type_ok(default: object, value: object) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, type(default))


def _value_problems(c: DetectorConfig) -> list[str]:
    problems: list[str] = []

    def need(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    need(c.max_keys >= 1, "max_keys must be >= 1")
    need(c.idle_ttl_s > 0, "idle_ttl_s must be > 0")

    need(c.distinct_window_s > 0, "distinct_window_s must be > 0")
    need(c.distinct_scope in DISTINCT_SCOPES, f"distinct_scope must be one of {', '.join(DISTINCT_SCOPES)}")
    need(1 <= c.distinct_exact_cap <= 65_536, "distinct_exact_cap must be in 1..65536")
    need(4 <= c.distinct_sketch_precision <= 16, "distinct_sketch_precision must be in 4..16")
    need(0 <= c.distinct_start < c.distinct_full, "need 0 <= distinct_start < distinct_full")

    need(c.sequence_max_pause_s > 0, "sequence_max_pause_s must be > 0")
    need(c.sequence_max_stride >= 1, "sequence_max_stride must be >= 1")
    need(1 <= c.sequence_max_gap <= 63, "sequence_max_gap must be in 1..63")
    need(c.sequence_max_series >= 1, "sequence_max_series must be >= 1")
    need(1 <= c.sequence_start < c.sequence_full, "need 1 <= sequence_start < sequence_full")

    need(c.cross_walk_window_s > 0, "cross_walk_window_s must be > 0")
    need(8 <= c.cross_walk_keep <= 4096, "cross_walk_keep must be in 8..4096")
    need(c.cross_walk_max_logs >= 1, "cross_walk_max_logs must be >= 1")
    need(c.cross_walk_max_entries >= c.cross_walk_keep, "cross_walk_max_entries must be >= cross_walk_keep")
    need(1 <= c.cross_walk_max_gap <= 63, "cross_walk_max_gap must be in 1..63")
    need(c.cross_walk_min_sessions >= 2, "cross_walk_min_sessions must be >= 2")
    need(0 <= c.cross_walk_max_repeat_share <= 1, "cross_walk_max_repeat_share must be in 0..1")
    need(0.5 <= c.cross_walk_min_order_share <= 1, "cross_walk_min_order_share must be in 0.5..1")
    need(2 <= c.cross_walk_start < c.cross_walk_full, "need 2 <= cross_walk_start < cross_walk_full")
    need(c.cross_walk_full <= c.cross_walk_keep, "cross_walk_full must be <= cross_walk_keep")
    need(c.shared_walk_keep >= c.sequence_full and c.shared_walk_keep <= 1024,
         "shared_walk_keep must be in sequence_full..1024")
    need(c.timing_samples < c.shared_timing_keep <= 4096, "shared_timing_keep must be in timing_samples+1..4096")

    try:
        statuses = c.probe_status_set()
        need(bool(statuses) and all(100 <= s <= 599 for s in statuses),
             "probe_statuses must list HTTP statuses 100..599")
    except ValueError:
        problems.append(f"probe_statuses must be comma-separated integers, got {c.probe_statuses!r}")
    need(1 <= c.probe_window <= 1024, "probe_window must be in 1..1024")
    need(1 <= c.probe_min_responses <= c.probe_window, "probe_min_responses must be in 1..probe_window")
    need(0 <= c.probe_start < c.probe_full <= 1, "need 0 <= probe_start < probe_full <= 1")

    need(c.assets_grace_s > 0, "assets_grace_s must be > 0")
    need(c.assets_scan_bytes >= 1024, "assets_scan_bytes must be >= 1024")
    need(1 <= c.assets_max_refs <= 1024, "assets_max_refs must be in 1..1024")
    need(1 <= c.assets_max_pending <= 256, "assets_max_pending must be in 1..256")
    need(c.assets_known_cap >= 1, "assets_known_cap must be >= 1")
    need(c.assets_shared_pages >= 0, "assets_shared_pages must be >= 0 (0 = off)")
    need(c.assets_shared_max_refs >= 1, "assets_shared_max_refs must be >= 1")
    need(1 <= c.assets_verdicts <= 1024, "assets_verdicts must be in 1..1024")
    need(1 <= c.assets_min_pages <= c.assets_verdicts, "assets_min_pages must be in 1..assets_verdicts")
    need(0 <= c.assets_start < c.assets_full <= 1, "need 0 <= assets_start < assets_full <= 1")
    need(c.assets_fallback_start >= 0, "assets_fallback_start must be >= 0 (0 = off)")
    need(c.assets_fallback_start == 0 or c.assets_fallback_start < c.assets_fallback_full,
         "need assets_fallback_start < assets_fallback_full")
    need(c.assets_fallback_max_ratio >= 0, "assets_fallback_max_ratio must be >= 0")

    need(c.rush_half_life_s > 0, "rush_half_life_s must be > 0")
    need(1 <= c.rush_start < c.rush_full, "need 1 <= rush_start < rush_full")

    need(2 <= c.timing_samples <= 1024, "timing_samples must be in 2..1024")
    need(2 <= c.timing_min_samples <= c.timing_samples, "timing_min_samples must be in 2..timing_samples")
    need(c.timing_max_mean_s > 0, "timing_max_mean_s must be > 0")
    need(0 <= c.timing_cv_full < c.timing_cv_start, "need 0 <= timing_cv_full < timing_cv_start")
    return problems

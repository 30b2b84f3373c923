"""One /metrics and one /status for N workers, merged from each worker's private admin port.

Why scraping and merging rather than prometheus-client's multiprocess mode: multiprocess mode
supports neither the shield's custom collectors (mapping-backed counters, callback gauges) nor
`Info`, and it keeps mmap files per process that must be cleaned up when a worker dies. Each
worker keeps its ordinary registry; the supervisor parses their exposition with prometheus-client's
own parser and writes one exposition back with its own generator.

Merging rule, per sample (same name and labels): counters, histograms and gauges are summed (the
total over workers: decisions, open connections, tracked keys; `scrapeshield_store_degraded`
becomes the number of workers that see the store down); `*_created` and `*_timestamp_seconds`
samples take the earliest resp. latest value; `info` samples are taken from the first worker.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

_SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def _combine(name: str, kind: str, old: float, new: float) -> float:
    if name.endswith("_created"):
        return min(old, new)
    if name.endswith("_timestamp_seconds"):
        return max(old, new)
    if kind == "info":
        return old
    return old + new


def merge_metrics(expositions: Sequence[str], extra: Iterable[Metric] = ()) -> bytes:
    """Merge Prometheus text expositions (one per worker) into one, plus `extra` families."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[_SampleKey, float]] = {}
    for text in expositions:
        for family in text_string_to_metric_families(text):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
                values[family.name] = {}
            table = values[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                old = table.get(key)
                table[key] = sample.value if old is None else _combine(sample.name, family.type, old, sample.value)
    for name, family in families.items():
        for (sample_name, labels), value in values[name].items():
            family.add_sample(sample_name, dict(labels), value)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families([*families.values(), *extra]))
    return generate_latest(registry)


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def _sum_numbers(into: dict[str, Any], more: dict[str, Any]) -> None:
    for key, value in more.items():
        if isinstance(value, bool):
            into.setdefault(key, value)
        elif isinstance(value, int | float):
            into[key] = into.get(key, 0) + value
        elif isinstance(value, dict):
            _sum_numbers(into.setdefault(key, {}), value)


def merge_status(workers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One /status: the first live worker's view (policy, store, ...) with `counters` summed.

    Each entry of `workers` is `{"index", "pid", "up", "restarts", "status": <worker /status> | None}`;
    the per-worker statuses stay available under `workers`.
    """
    live = [w["status"] for w in workers if w.get("status")]
    merged: dict[str, Any] = dict(live[0]) if live else {}
    counters: dict[str, Any] = {}
    connections: dict[str, Any] = {}
    for status in live:
        _sum_numbers(counters, status.get("counters", {}))
        _sum_numbers(connections, status.get("connections", {}))
    if live:
        merged["counters"] = counters
        if connections:
            merged["connections"] = connections
    merged["workers"] = list(workers)
    return merged

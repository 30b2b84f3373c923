"""Prometheus metrics (prometheus-client), in a registry of our own so tests can make several."""
from __future__ import annotations

from collections import Counter as Counter_
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics
from prometheus_client.core import CounterMetricFamily

from .decision import Decision

# `*_created` series (when each counter was first seen) double the exposition and no dashboard uses them.
disable_created_metrics()

_LATENCY_BUCKETS = (5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2, 0.1)


class ShieldMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.decisions = Counter("scrapeshield_decisions",
                                 "Decisions by rule and action; enforced=false in monitor mode",
                                 ["rule", "action", "enforced"], registry=r)
        self.latency = Histogram("scrapeshield_evaluation_seconds", "Time to decide one request",
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.errors = Counter("scrapeshield_errors", "Requests that hit an internal or input error", ["kind"],
                              registry=r)
        self.tracked_keys = Gauge("scrapeshield_tracked_keys", "Client keys with live state in the store", registry=r)
        self.policy = Info("scrapeshield_policy", "The active policy", registry=r)
        self.policy_loaded = Gauge("scrapeshield_policy_loaded_timestamp_seconds", "When the active policy was loaded",
                                   registry=r)
        self.reloads = Counter("scrapeshield_policy_reloads", "Policy reload attempts by result", ["result"],
                               registry=r)
        self.shadow_differences = Counter("scrapeshield_shadow_differences",
                                          "Requests the shadow policy decided differently", ["live", "shadow"],
                                          registry=r)
        self.store_degraded = Gauge("scrapeshield_store_degraded", "1 while the shared store is unreachable",
                                    registry=r)
        self.store_outages = Counter("scrapeshield_store_outages", "Times the shared store became unreachable",
                                     registry=r)
        self._decision_children: dict[tuple[str, str, bool], Callable[[], None]] = {}
        # The same counts as plain numbers, for /status: (rule, action, enforced) -> decisions.
        self.decision_counts: Counter_[tuple[str, str, bool]] = Counter_()

    def count_from(self, name: str, doc: str, counts: Mapping[str, int]) -> None:
        """Export a live `{label: count}` mapping (kept by pure code) as one counter labelled `result`."""
        self.registry.register(_MappingCounter(name, doc, counts))

    def decided(self, decision: Decision, seconds: float) -> None:
        self.latency.observe(seconds)
        self._count(decision.rule, decision.action.value, decision.enforced)
        for shadow in decision.shadowed:
            self._count(shadow.rule, shadow.action.value, False)

    def _count(self, rule: str, action: str, enforced: bool) -> None:
        # Label lookup is the costly part of prometheus-client; cache the bound incrementers.
        key = (rule, action, enforced)
        inc = self._decision_children.get(key)
        if inc is None:
            if len(self._decision_children) > 10_000:  # a policy cannot have that many rules
                self._decision_children.clear()
            inc = self.decisions.labels(rule, action, "true" if enforced else "false").inc
            self._decision_children[key] = inc
        inc()
        self.decision_counts[key] += 1

    def set_policy(self, name: str, version_hash: str, source: str, loaded_at: float) -> None:
        self.policy.info({"name": name, "version": version_hash, "file": source})
        self.policy_loaded.set(loaded_at)


class _MappingCounter:
    def __init__(self, name: str, doc: str, counts: Mapping[str, int]) -> None:
        self.name, self.doc, self.counts = name, doc, counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.doc, labels=["result"])
        for label, value in sorted(self.counts.items()):
            family.add_metric([label], value)
        yield family

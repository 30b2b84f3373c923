"""What the dashboard shows beyond the Prometheus counters: the most refused client keys and how
signals and scores are distributed over recent decisions. Bounded: a fixed number of keys,
signal names and score bins, whatever the traffic.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from .context import DecisionContext
from .decision import ANSWERED, Action, Decision

SCORE_BINS = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)  # lower edges; the last bin is open


class TopKeys:
    """Approximate heavy hitters in bounded memory (the Space-Saving algorithm): a key not tracked
    replaces the least counted one and inherits its count, so a key's count is an upper bound
    and every key counted more than total/capacity times is among the tracked ones."""

    def __init__(self, capacity: int = 1000) -> None:
        self.capacity = capacity
        self.counts: dict[str, int] = {}
        self.total = 0

    def add(self, key: str) -> None:
        self.total += 1
        counts = self.counts
        n = counts.get(key)
        if n is not None:
            counts[key] = n + 1
        elif len(counts) < self.capacity:
            counts[key] = 1
        else:
            victim = min(counts, key=counts.__getitem__)  # O(capacity), only for a new key once full
            counts[key] = counts.pop(victim) + 1

    def top(self, n: int) -> list[tuple[str, int]]:
        return sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def _bin(value: float) -> int:
    for i in range(len(SCORE_BINS) - 1, -1, -1):
        if value >= SCORE_BINS[i]:
            return i
    return 0


class LiveStats:
    """Fed every decision (with the signals the request carried); read by the dashboard."""

    MAX_SIGNALS = 256  # signal names come from the policy and the code, but stay bounded anyway

    def __init__(self, top_capacity: int = 1000) -> None:
        self.refused_keys = TopKeys(top_capacity)
        self.signals: dict[str, int] = {}
        self.scores: dict[str, list[int]] = {}  # score name -> counts per SCORE_BINS bin
        self.requests = 0

    def observe(self, decision: Decision, signals: Iterable[str] = (),
                scores: Iterable[tuple[str, float]] = ()) -> None:
        self.requests += 1
        if decision.effective in ANSWERED and decision.key:
            self.refused_keys.add(decision.key)
        sig = self.signals
        for name in signals:
            if name in sig:
                sig[name] += 1
            elif len(sig) < self.MAX_SIGNALS:
                sig[name] = 1
        for name, value in scores:
            if math.isfinite(value):
                bins = self.scores.get(name)
                if bins is None:
                    if len(self.scores) >= self.MAX_SIGNALS:
                        continue
                    bins = self.scores[name] = [0] * len(SCORE_BINS)
                bins[_bin(value)] += 1

    def snapshot(self, top: int = 15) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "top_refused_keys": [{"key": k, "refused": n} for k, n in self.refused_keys.top(top)],
            "signals": dict(sorted(self.signals.items(), key=lambda kv: -kv[1])),
            "score_bins": [f"{lo:g}+" for lo in SCORE_BINS],
            "scores": self.scores,
        }


def request_signals(ctx: DecisionContext | None, decision: Decision) -> list[str]:
    """The signals a decision saw: detector signals that fired and, for a decision the log writes
    anyway (not a plain allow), the fingerprint's consistency signals -- never a fingerprint
    computed for the statistics alone."""
    if ctx is None:
        return []
    out = [name for name, strength in ctx.detector_signals.items() if strength]
    if decision.action is not Action.ALLOW:
        try:
            out.extend(ctx.fingerprint.signals)
        except Exception:  # statistics must never fail a request
            pass
    return out

"""The serving process's cyclic garbage collector: start-up frozen, every pass timed.

A full (generation 2) pass walks every GC-tracked object of the process with the whole process
stopped; a proxy answering no one meanwhile. Two things keep those passes short:

- `freeze_startup()`, once start-up is done (imports, policy compiled, mitmproxy's master and
  addons built) and before the first client is accepted: everything alive then is moved to the
  permanent generation, which no pass walks again. What start-up built lives as long as the
  process (a replaced policy is still freed by reference counting); the price is that a frozen
  object caught in a reference cycle later is never reclaimed -- nothing start-up builds is
  meant to die before the process.
- few tracked objects per connection (mitm/serving.py: a connection still sending its first
  request head is one protocol object on its transport, no stream, task or coroutine).

The thresholds are CPython's: the young generation decides how often a pass runs, not how long
a full one takes (that is the number of live tracked objects; CPython 3.12 only starts one when
the objects that survived since the last grew by a quarter), so tuning them buys nothing here.

`CollectorProbe` times every pass (`gc.callbacks`): `scrapeshield_gc_pause_seconds{generation}`,
the `gc` section of /status, and a log line for a full pass over `SLOW_PASS` seconds -- so a
latency spike can be told apart from a GC pause.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

log = logging.getLogger("scrapeshield.gc")

SLOW_PASS = 0.1  # seconds: a full pass this long is logged
_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def freeze_startup() -> int:
    """Collect once, then move every object alive now out of the collector's sight. Returns how
    many objects are frozen in all."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class CollectorProbe:
    """Times every cyclic-GC pass of the process (see the module's doc)."""

    def __init__(self, registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        pauses = Histogram("scrapeshield_gc_pause_seconds", "Time the process was stopped by one cyclic "
                           "garbage collection pass, by generation (2: a full pass)", ["generation"],
                           buckets=_BUCKETS, registry=registry if registry is not None else CollectorRegistry())
        self._pauses = tuple(pauses.labels(str(generation)) for generation in range(3))
        self._started = 0.0
        self.full_passes = 0
        self.full_pause_last = 0.0
        self.full_pause_max = 0.0
        self._slow: list[tuple[float, int]] = []  # (seconds, objects collected): logged later, not in the pass

    def install(self) -> None:
        if self._on_pass not in gc.callbacks:
            gc.callbacks.append(self._on_pass)

    def uninstall(self) -> None:
        if self._on_pass in gc.callbacks:
            gc.callbacks.remove(self._on_pass)

    def _on_pass(self, phase: str, info: dict[str, int]) -> None:
        # Runs inside the collector, in whatever thread allocated: record only, never log here.
        if phase == "start":
            self._started = self._clock()
            return
        seconds = self._clock() - self._started
        generation = info["generation"]
        self._pauses[generation].observe(seconds)
        if generation == 2:
            self.full_passes += 1
            self.full_pause_last = seconds
            self.full_pause_max = max(self.full_pause_max, seconds)
            if seconds >= SLOW_PASS and len(self._slow) < 100:
                self._slow.append((seconds, info["collected"]))

    def take_slow_passes(self) -> list[tuple[float, int]]:
        slow, self._slow = self._slow, []
        return slow

    async def log_slow_passes(self, interval: float = 1.0) -> None:
        """Log the full passes over SLOW_PASS seconds, once a second, from the event loop."""
        while True:
            await asyncio.sleep(interval)
            for seconds, collected in self.take_slow_passes():
                # no count of the tracked objects here: walking them would stall the loop again
                log.info("full garbage collection pass: %.0f ms (%d objects collected)", seconds * 1000, collected)

    def status(self) -> dict[str, Any]:
        """The `gc` section of /status: cheap reads only (the dashboard polls it every 2 s). The
        count of tracked objects is `tracked_objects()`, asked for with `/status?gc=objects`."""
        return {"gc": {
            "frozen_objects": gc.get_freeze_count(),
            "full_passes": self.full_passes,
            "full_pause_last_ms": round(self.full_pause_last * 1000, 1),
            "full_pause_max_ms": round(self.full_pause_max * 1000, 1),
            "thresholds": list(gc.get_threshold()),
        }}


def tracked_objects() -> int:
    """How many objects a full pass would walk now. This walks the collector's lists itself: ~11 ms
    per 300,000 objects with the process stopped, so only on an operator's explicit request."""
    return sum(len(gc.get_objects(generation)) for generation in range(3))

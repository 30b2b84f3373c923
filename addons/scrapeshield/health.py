"""Health that tells the truth: is the process serving (`/healthz`) and should it get traffic
(`/readyz`)?

Ready means: a policy is loaded, and the store answers -- or it does not, but the policy's fail
mode is `open`, so the shield still serves (degraded, each replica on local state). While a
fail-closed store is down every request would be refused: not ready, so a load balancer sends
traffic to a replica that can serve it.

The store is asked directly (a `ping`, bounded by the store's own timeout), not only judged by
the last request, so readiness follows an outage even when no traffic flows. Probes are cached
for `interval` seconds: a load balancer polling every replica every second costs the store one
ping per replica per interval.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol


class _Pingable(Protocol):
    async def ping(self) -> None: ...


@dataclass(frozen=True, slots=True)
class StoreHealth:
    state: str  # "ok", "degraded" (down, serving on local state) or "down" (down, refusing: fail closed)
    backend: str
    fail_mode: str  # "open" or "closed" ("-" for a local store, which cannot fail)
    error: str | None
    checked_at: float  # epoch seconds

    @property
    def serves(self) -> bool:
        return self.state != "down"

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "backend": self.backend, "fail_mode": self.fail_mode, "error": self.error,
                "checked_at": round(self.checked_at, 3)}


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    policy: str | None  # version hash of the loaded policy
    store: StoreHealth
    reasons: tuple[str, ...]  # why not ready (empty when ready)

    def to_dict(self) -> dict[str, Any]:
        return {"ready": self.ready, "policy": self.policy, "store": self.store.to_dict(),
                "reasons": list(self.reasons)}


def _primary(store: Any) -> Any:
    """The networked store behind a ResilientStore, or the store itself."""
    return getattr(store, "primary", store)


class HealthCheck:
    """Readiness from the store and the policy, probed at most once per `interval`."""

    def __init__(self, store: Any, policy_version: Callable[[], str | None], fail_mode: Callable[[], str],
                 interval: float = 1.0, timeout: float = 1.0, wall: Callable[[], float] = time.time) -> None:
        self.store = store
        self.policy_version = policy_version
        self.fail_mode = fail_mode
        self.interval = interval
        self.timeout = timeout
        self.wall = wall
        self._last: StoreHealth | None = None
        self._probe: asyncio.Task[StoreHealth] | None = None

    async def store_health(self) -> StoreHealth:
        last = self._last
        if last is not None and self.wall() - last.checked_at < self.interval:
            return last
        if self._probe is None or self._probe.done():  # concurrent callers share one probe
            self._probe = asyncio.ensure_future(self._check())
        result = await asyncio.shield(self._probe)
        self._last = result
        return result

    async def _check(self) -> StoreHealth:
        primary = _primary(self.store)
        name = str(getattr(primary, "name", type(primary).__name__))
        ping: Callable[[], Awaitable[None]] | None = getattr(primary, "ping", None)
        if ping is None:  # a local store answers as long as the process does
            return StoreHealth("ok", name, "-", None, self.wall())
        mode = self.fail_mode()
        try:
            await asyncio.wait_for(ping(), self.timeout)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return StoreHealth("down" if mode == "closed" else "degraded", name, mode, error, self.wall())
        return StoreHealth("ok", name, mode, None, self.wall())

    async def readiness(self) -> Readiness:
        version = self.policy_version()
        store = await self.store_health()
        reasons = []
        if version is None:
            reasons.append("no policy loaded")
        if not store.serves:
            reasons.append(f"store {store.backend} is down and the policy fails closed ({store.error})")
        return Readiness(not reasons, version, store, tuple(reasons))

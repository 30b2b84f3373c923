"""A shared store that survives its backend going away: local state while it is down.

`ResilientStore(primary, fallback)` wraps a networked store (Redis) and a `MemoryStore`.

Slow is not down. A call that fails is answered by the policy's fail mode (below) but does not
by itself start an *outage*; one starts when
- `outage_after` calls in a row have failed with no call answered in the meantime (a call that
  times out while others get their answers met a busy moment, not a dead server), or
- a health probe fails: one PING, sent after a failed call. After a refused or reset
  connection it is sent right away, inline (a dead server is known at once, a connection that
  just broke is not mistaken for an outage); after a timeout it runs beside the traffic, with
  twice the call timeout (at least 1 s), and counts only if no other call was answered meanwhile:
  a slow moment of a busy host is not an outage, but a hung server is found even while locally
  answered requests keep resetting the count.
An outage is logged once, counted, and from then on no call waits on the primary: each is
answered from the fallback's local state (fail open) or refused at once (fail closed). At most
once per `retry_interval` seconds of the callers' `now` (never two at once), one call is sent to
the primary as a probe; when it succeeds the recovery is logged once and calls go to the primary
again. A probe costs its one request at most the primary's timeout.

The contract with the engine, which applies the policy's `fail` mode to a `StoreError`:

- fail open (`fail_mode="open"`): `apply`, `append_logs`, `ban` and `spend_once` never raise `StoreError`; a
  failed call and every call during an outage are answered from the fallback. Each replica then
  enforces its limits on its own traffic only (N replicas let up to N times the budget through),
  its detectors see the logs of its own traffic only,
  bans made then stay on the replica that made them, and a challenge token may be spent once
  per replica.
- fail closed (`fail_mode="closed"`): a failed call, and every call during an outage (at once,
  without waiting on the primary), raises `StoreError`, so the engine blocks that request.
- `connect()` before the proxy accepts clients: when the primary cannot be reached, the outage
  starts there (logged once, saying what the fail mode does meanwhile) instead of failing start.
- The operator calls (`unban`, `bans`, `allow`, `unallow`, `allows`, `inspect`) always go to
  the primary and raise `StoreError` when it does not answer: an operator must see the failure.
- `degraded` is True during an outage. `fail_mode` may be set again on a policy reload.

State is not copied between the two: the primary keeps what it had, and the fallback's entries
from an outage expire by themselves (a TAT in the past is the same as no entry).

`degraded`, `outages`, `failed_calls` and `last_error` are for /status and metrics;
`on_change(degraded)` is called on every switch, for a gauge or an alert.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .base import Batch, BatchResult, KeyInspection, ListEntry, LogAppend, Logs, Store, StoreError, StoreTimeout
from .memory import MemoryStore

T = TypeVar("T")
_log = logging.getLogger("scrapeshield.store")


class ResilientStore:
    def __init__(self, primary: Store, fallback: MemoryStore | None = None, fail_mode: str = "open",
                 logger: logging.Logger | None = None, retry_interval: float = 1.0,
                 on_change: Callable[[bool], None] | None = None, outage_after: int = 3) -> None:
        if fail_mode not in ("open", "closed"):
            raise ValueError(f"fail mode must be 'open' or 'closed', not {fail_mode!r}")
        self.fail_mode = fail_mode
        self.name = primary.name
        self.primary = primary
        self.fallback = fallback if fallback is not None else MemoryStore()
        self.retry_interval = retry_interval
        self.outage_after = outage_after
        self.on_change = on_change
        self._log = logger or _log
        self.degraded = False
        self.outages = 0
        self.failed_calls = 0
        self.last_error: str | None = None
        self._in_a_row = 0
        self._outage_start = 0.0
        self._outage_failures = 0
        self._next_probe = 0.0
        self._probing = False
        self._health_probe: asyncio.Task[None] | None = None
        self._answered = 0  # calls the primary answered

    async def connect(self) -> None:
        try:
            await self.primary.connect()
        except StoreError as exc:
            self.failed_calls += 1
            self._begin_outage(exc, 0.0, at_start=True)

    sync_apply = None  # every answer may wait (Store.sync_apply)
    sync_append_logs = None

    async def apply(self, batch: Batch, now: float) -> BatchResult:
        return await self._call(lambda s: s.apply(batch, now), now)

    async def append_logs(self, appends: tuple[LogAppend, ...], now: float) -> Logs:
        return await self._call(lambda s: s.append_logs(appends, now), now)

    async def ban(self, key: str, until: float, now: float, reason: str = "") -> None:
        await self._call(lambda s: s.ban(key, until, now, reason), now)

    async def spend_once(self, token_id: str, expires: float, now: float) -> bool:
        return await self._call(lambda s: s.spend_once(token_id, expires, now), now)

    # Operator calls: the primary's answer or its StoreError, never local state.
    async def unban(self, key: str) -> bool:
        return await self.primary.unban(key)

    async def bans(self, now: float, limit: int = 100) -> list[ListEntry]:
        return await self.primary.bans(now, limit)

    async def allow(self, key: str, until: float, now: float, reason: str = "") -> None:
        await self.primary.allow(key, until, now, reason)

    async def unallow(self, key: str) -> bool:
        return await self.primary.unallow(key)

    async def allows(self, now: float, limit: int = 100) -> list[ListEntry]:
        return await self.primary.allows(now, limit)

    async def inspect(self, key: str, now: float) -> KeyInspection:
        return await self.primary.inspect(key, now)

    async def _call(self, op: Callable[[Store], Awaitable[T]], now: float) -> T:
        probe = False
        if self.degraded:
            if self._probing or now < self._next_probe:
                return await self._without_primary(op)
            probe = self._probing = True
        heard = self._heard_from_primary()
        try:
            result = await op(self.primary)
        except StoreError as exc:
            if probe:
                self._probing = False
            await self._failed(exc, now, heard)
            return await self._without_primary(op)
        if probe:
            self._probing = False
            self._recovered(now)
        self._answered += 1
        if self._heard_from_primary() != heard:  # a local-cache answer says nothing about Redis
            self._in_a_row = 0
        return result

    async def _without_primary(self, op: Callable[[Store], Awaitable[T]]) -> T:
        if self.fail_mode == "closed":
            what = "is unavailable" if self.degraded else "did not answer"
            raise StoreError(f"shared store {self.name} {what} (fail: closed): {self.last_error}")
        return await op(self.fallback)

    async def _failed(self, exc: StoreError, now: float, heard: int) -> None:
        self.failed_calls += 1
        self.last_error = str(exc)
        if self.degraded:
            self._outage_failures += 1
            self._next_probe = now + self.retry_interval
            return
        if self._heard_from_primary() != heard:
            return  # other calls were answered while this one waited: busy, not down
        self._in_a_row += 1
        if self._in_a_row >= self.outage_after:
            self._begin_outage(exc, now)
        elif not isinstance(exc, StoreTimeout):
            if not await self._healthy(None):
                self._begin_outage(exc, now)
        elif self._health_probe is None or self._health_probe.done():
            self._health_probe = asyncio.create_task(self._probe_beside(exc, now))

    async def _probe_beside(self, exc: StoreError, now: float) -> None:
        heard = self._heard_from_primary()
        healthy = await self._healthy(max(1.0, 2 * getattr(self.primary, "timeout", 0.5)))
        if not healthy and self._heard_from_primary() == heard:  # calls that succeeded meanwhile say "busy", not "down"
            self._begin_outage(exc, now)

    def _heard_from_primary(self) -> int:
        """Round trips the primary has had answered (a RedisStore counts them), else its answers."""
        answered = getattr(self.primary, "answered", None)
        return answered if isinstance(answered, int) else self._answered

    async def _healthy(self, timeout: float | None) -> bool:
        ping = getattr(self.primary, "ping", None)
        if ping is None:
            return False
        try:
            await ping(timeout)
        except StoreError:
            return False
        return True

    def _begin_outage(self, exc: StoreError, now: float, at_start: bool = False) -> None:
        self.last_error = str(exc)
        self._next_probe = now + self.retry_interval
        if self.degraded:
            return
        self.degraded = True
        self.outages += 1
        self._outage_start = now
        self._outage_failures = max(1, self._in_a_row)
        self._in_a_row = 0
        consequence = ("requests are refused while it is down (fail: closed)" if self.fail_mode == "closed" else
                       "limits are enforced per replica on local state until it answers again (fail: open)")
        when = " at start" if at_start else ""
        self._log.warning("shared store %s is unavailable%s (%s); %s; retrying every %gs",
                          self.name, when, exc, consequence, self.retry_interval)
        if self.on_change is not None:
            self.on_change(True)

    def _recovered(self, now: float) -> None:
        if not self.degraded:
            return
        self.degraded = False
        since = max(0.0, now - self._outage_start) if self._outage_start else 0.0
        self._log.warning("shared store %s answers again after %.1fs and %d failed calls; back to shared state",
                          self.name, since, self._outage_failures)
        if self.on_change is not None:
            self.on_change(False)

    def retain_buckets(self, bucket_ids: frozenset[str]) -> None:
        self.primary.retain_buckets(bucket_ids)
        self.fallback.retain_buckets(bucket_ids)

    def tracked_keys(self) -> int:
        return self.fallback.tracked_keys() if self.degraded else self.primary.tracked_keys()

    def status(self) -> dict[str, object]:
        return {**self.primary.status(), "degraded": self.degraded, "fail_mode": self.fail_mode,
                "outages": self.outages, "failed_calls": self.failed_calls, "last_error": self.last_error,
                "fallback": self.fallback.status()}

    async def close(self) -> None:
        if self._health_probe is not None:
            self._health_probe.cancel()
        await self.primary.close()
        await self.fallback.close()

"""A shared store that survives its backend going away: local state while it is down.

`ResilientStore(primary, fallback)` wraps a networked store (Redis) and a `MemoryStore`. Calls
go to the primary; the first `StoreError` starts an *outage*: it is logged once, counted, and
from then on no call waits on the primary: each is answered from the fallback's local state
(fail open) or refused at once (fail closed, see below). At most once per
`retry_interval` seconds of the callers' `now` (never two at once), one call is sent to the
primary again as a probe; when a probe succeeds the recovery is logged once and calls go to the
primary again. A probe costs its one request at most the primary's own timeout, so no request
ever waits longer than that.

The contract with the engine, which applies the policy's `fail` mode to a `StoreError`:

- fail open (`fail_mode="open"`): `apply`, `ban` and `spend_once` never raise `StoreError`;
  during an outage they answer from the fallback. Each replica then enforces its limits on its
  own traffic only (N replicas let up to N times the budget through), bans made during the
  outage stay on the replica that made them, and a challenge token may be spent once per replica.
- fail closed (`fail_mode="closed"`): during an outage every call raises `StoreError` at once,
  without waiting on the primary again, so the engine's `except StoreError` blocks the request
  exactly as it would for a bare store; only the probe waits (at most the primary's timeout).
- `degraded` is True during an outage: read it right after an `await` (with no other `await` in
  between nothing else changes it) to tag a decision. `fail_mode` may be set again on a policy
  reload.

State is not copied between the two: the primary keeps what it had, and the fallback's entries
from an outage expire by themselves (a TAT in the past is the same as no entry).

`degraded`, `outages`, `failed_calls` and `last_error` are for /status and metrics;
`on_change(degraded)` is called on every switch, for a gauge or an alert.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .base import Batch, BatchResult, Store, StoreError
from .memory import MemoryStore

T = TypeVar("T")
_log = logging.getLogger("scrapeshield.store")


class ResilientStore:
    def __init__(self, primary: Store, fallback: MemoryStore | None = None, fail_mode: str = "open",
                 logger: logging.Logger | None = None, retry_interval: float = 1.0,
                 on_change: Callable[[bool], None] | None = None) -> None:
        if fail_mode not in ("open", "closed"):
            raise ValueError(f"fail mode must be 'open' or 'closed', not {fail_mode!r}")
        self.fail_mode = fail_mode
        self.name = primary.name
        self.primary = primary
        self.fallback = fallback if fallback is not None else MemoryStore()
        self.retry_interval = retry_interval
        self.on_change = on_change
        self._log = logger or _log
        self.degraded = False
        self.outages = 0
        self.failed_calls = 0
        self.last_error: str | None = None
        self._outage_start = 0.0
        self._outage_failures = 0
        self._next_probe = 0.0
        self._probing = False

    @property
    def fail_closed(self) -> bool:
        """True when the engine must refuse the request it just asked about."""
        return self.degraded and self.fail_mode == "closed"

    sync_apply = None  # every answer may wait (Store.sync_apply)

    async def apply(self, batch: Batch, now: float) -> BatchResult:
        return await self._call(lambda s: s.apply(batch, now), now)

    async def ban(self, key: str, until: float, now: float) -> None:
        await self._call(lambda s: s.ban(key, until, now), now)

    async def spend_once(self, token_id: str, expires: float, now: float) -> bool:
        return await self._call(lambda s: s.spend_once(token_id, expires, now), now)

    async def _call(self, op: Callable[[Store], Awaitable[T]], now: float) -> T:
        probe = False
        if self.degraded:
            if self._probing or now < self._next_probe:
                return await self._without_primary(op)
            probe = self._probing = True
        try:
            result = await op(self.primary)
        except StoreError as exc:
            self._failed(exc, now)
            return await self._without_primary(op)
        finally:
            if probe:
                self._probing = False
        if probe:
            self._recovered(now)
        return result

    async def _without_primary(self, op: Callable[[Store], Awaitable[T]]) -> T:
        if self.fail_mode == "closed":
            raise StoreError(f"shared store {self.name} is unavailable (fail: closed): {self.last_error}")
        return await op(self.fallback)

    def _failed(self, exc: StoreError, now: float) -> None:
        self.failed_calls += 1
        self._outage_failures += 1
        self.last_error = str(exc)
        self._next_probe = now + self.retry_interval
        if self.degraded:
            return
        self.degraded = True
        self.outages += 1
        self._outage_start = now
        self._outage_failures = 1
        consequence = ("requests are refused while it is down (fail: closed)" if self.fail_mode == "closed" else
                       "limits are enforced per replica on local state until it answers again (fail: open)")
        self._log.warning("shared store %s is unavailable (%s); %s; retrying every %gs",
                          self.name, exc, consequence, self.retry_interval)
        if self.on_change is not None:
            self.on_change(True)

    def _recovered(self, now: float) -> None:
        if not self.degraded:
            return
        self.degraded = False
        self._log.warning("shared store %s answers again after %.1fs and %d failed calls; back to shared state",
                          self.name, max(0.0, now - self._outage_start), self._outage_failures)
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
        await self.primary.close()
        await self.fallback.close()

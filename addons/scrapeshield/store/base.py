"""The store interface: where buckets, bans, scores and spent challenges live.

Algorithms stay out of here (GCRA is `scrapeshield.gcra`); a store only keeps state and
applies one request's whole `Batch` atomically, so a networked backend needs one round trip
per request. Backends: `memory` (bounded, the default) and `redis`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..gcra import BucketLimit, BucketState


@dataclass(frozen=True, slots=True)
class BucketCheck:
    bucket_id: str  # stable identity of the bucket definition (rule name + parameters), short
    key: str  # the client key, e.g. "ip:203.0.113.7"
    limit: BucketLimit


@dataclass(frozen=True, slots=True)
class ScoreUpdate:
    score_id: str
    key: str
    delta: float
    half_life: float  # seconds; the stored value halves every half_life


@dataclass(frozen=True, slots=True)
class Batch:
    """Everything one request needs from the store."""

    ban_keys: tuple[str, ...] = ()
    buckets: tuple[BucketCheck, ...] = ()
    scores: tuple[ScoreUpdate, ...] = ()


@dataclass(frozen=True, slots=True)
class BatchResult:
    banned_key: str | None  # set when a ban key is in the penalty box; nothing else was applied
    banned_until: float
    refused: int  # index of the first bucket that refused the request, -1 when all conformed
    buckets: tuple[BucketState, ...]
    scores: tuple[float, ...]  # decayed values after the updates, in batch order


EMPTY_RESULT = BatchResult(None, 0.0, -1, (), ())


class StoreError(Exception):
    """The backend could not answer (unreachable, timed out); the engine applies the fail mode."""


class Store(Protocol):
    name: str

    async def apply(self, batch: Batch, now: float) -> BatchResult: ...

    @property
    def sync_apply(self) -> Callable[[Batch, float], BatchResult] | None:
        """`apply` without a coroutine, offered by a store that never waits (in-process state), so
        the engine saves one coroutine per decision; None for a store that must await (network).
        When offered, it gives exactly what `apply` would."""
        ...

    async def ban(self, key: str, until: float, now: float) -> None: ...

    async def spend_once(self, token_id: str, expires: float, now: float) -> bool:
        """Atomically mark a single-use token spent; False if it was already spent."""
        ...

    def retain_buckets(self, bucket_ids: frozenset[str]) -> None:
        """Forget bucket state of definitions no longer in the policy (after a reload)."""
        ...

    def tracked_keys(self) -> int: ...

    def status(self) -> dict[str, object]: ...

    async def close(self) -> None: ...


def decay(value: float, since: float, now: float, half_life: float) -> float:
    if value == 0.0 or now <= since or half_life <= 0:
        return value
    return value * 0.5 ** ((now - since) / half_life)

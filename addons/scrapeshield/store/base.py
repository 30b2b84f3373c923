"""The store interface: where buckets, bans, scores and spent challenges live.

Algorithms stay out of here (GCRA is `scrapeshield.gcra`); a store only keeps state and
applies one request's whole `Batch` atomically, so a networked backend needs one round trip
per request. Backends: `memory` (bounded, the default), `redis` and `redis+cluster`.

Besides the request path, a store keeps two operator lists, the penalty box (bans) and the
allow list, both bounded and each entry living until its deadline (`ListEntry`), and answers
`inspect(key)` for the control API.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..gcra import BucketLimit, BucketState, state_after


# The per-request values below are built for every bucket and score of every request: they are
# slotted but not frozen (a frozen dataclass's __init__ sets each field through object.__setattr__,
# ~0.35 us more per object). They are values all the same: nothing writes to one after it is made.
@dataclass(slots=True, init=False)
class BucketCheck:
    bucket_id: str  # stable identity of the bucket definition (rule name + parameters), short
    key: str  # the client key, e.g. "ip:203.0.113.7"
    limit: BucketLimit

    # init=False, this __init__: native when compiled (docs/architecture.md, "The compiled core")
    def __init__(self, bucket_id: str, key: str, limit: BucketLimit) -> None:
        self.bucket_id = bucket_id
        self.key = key
        self.limit = limit


@dataclass(slots=True, init=False)
class ScoreUpdate:
    score_id: str
    key: str
    delta: float
    half_life: float  # seconds; the stored value halves every half_life

    # init=False, this __init__: native when compiled (docs/architecture.md, "The compiled core")
    def __init__(self, score_id: str, key: str, delta: float, half_life: float) -> None:
        self.score_id = score_id
        self.key = key
        self.delta = delta
        self.half_life = half_life


@dataclass(slots=True, init=False)
class Batch:
    """Everything one request needs from the store."""

    ban_keys: tuple[str, ...] = ()
    buckets: tuple[BucketCheck, ...] = ()
    scores: tuple[ScoreUpdate, ...] = ()

    # init=False, this __init__: native when compiled (docs/architecture.md, "The compiled core")
    def __init__(self, ban_keys: tuple[str, ...] = (), buckets: tuple[BucketCheck, ...] = (),
                 scores: tuple[ScoreUpdate, ...] = ()) -> None:
        self.ban_keys = ban_keys
        self.buckets = buckets
        self.scores = scores


class BatchResult:
    """What the store said about one request's batch.

    `buckets` (one `BucketState` per bucket) is what a refusal or an explain trace reads; a store
    that keeps TATs may hand over the new TATs and the batch's checks instead (`of_tats`) and the
    states are computed on first read -- nearly every request is allowed and never reads them. A
    value: never changed after it is made (the computed states are a cache of a pure function of
    the TATs)."""

    __slots__ = ("_buckets", "_checks", "_now", "_tats", "allowed_key", "banned_key", "banned_until", "refused",
                 "scores")

    def __init__(self, banned_key: str | None, banned_until: float, refused: int,
                 buckets: tuple[BucketState, ...] | None, scores: tuple[float, ...], allowed_key: str | None = None,
                 tats: Sequence[float | None] = (), checks: Sequence[BucketCheck] = (), now: float = 0.0) -> None:
        self.banned_key = banned_key  # set when a ban key is in the penalty box; nothing else was applied
        self.banned_until = banned_until
        self.refused = refused  # index of the first bucket that refused the request, -1 when all conformed
        # None: the states are those of `state_after` over `tats` (see `of_tats`), computed when first read.
        self._buckets = buckets
        self.scores = scores  # decayed values after the updates, in batch order
        # The first ban key on the allow list: the engine skips enforcement for it. An allowed key is
        # never reported as banned; buckets and scores are applied as usual.
        self.allowed_key = allowed_key
        self._tats = tats
        self._checks = checks  # the batch's own: their limits, without a list of them per request
        self._now = now

    @classmethod
    def of_tats(cls, refused: int, tats: Sequence[float | None], checks: Sequence[BucketCheck], now: float,
                scores: tuple[float, ...], allowed_key: str | None = None) -> BatchResult:
        """A result whose bucket states are those of `state_after` over the buckets' TATs after the
        request (the old ones when it was refused) and their checks' limits, computed when first
        read."""
        return cls(None, 0.0, refused, None, scores, allowed_key, tats, checks, now)

    @property
    def buckets(self) -> tuple[BucketState, ...]:
        states = self._buckets
        if states is None:
            now, allowed = self._now, self.refused < 0
            states = self._buckets = tuple([state_after(t, now, c.limit, allowed)
                                            for t, c in zip(self._tats, self._checks, strict=True)])
        return states

    def _fields(self) -> tuple[object, ...]:
        return (self.banned_key, self.banned_until, self.refused, self.buckets, self.scores, self.allowed_key)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BatchResult):
            return NotImplemented
        return self._fields() == other._fields()

    def __repr__(self) -> str:
        return ("BatchResult(banned_key={!r}, banned_until={!r}, refused={!r}, buckets={!r}, scores={!r}, "
                "allowed_key={!r})".format(*self._fields()))


EMPTY_RESULT = BatchResult(None, 0.0, -1, (), ())


@dataclass(frozen=True, slots=True, init=False)
class LogAppend:
    """Append one entry to a short, expiring log and read what is new in it: detector state
    (recent record ids, arrival times) that every replica must see, kept where the buckets are.
    A caller that mirrors the log says how many appends it has read (`seen`, from its last
    `LogRead.appended`) and gets only the entries since; 0 asks for the whole log."""

    key: str
    entry: str  # short; the detectors pack numbers and tags into it
    keep: int  # the newest `keep` entries stay, older ones are dropped
    ttl: float  # seconds; a log without an append for this long is gone (the detector's memory)
    seen: int = 0

    # init=False, this __init__: native when compiled (docs/architecture.md, "The compiled core")
    def __init__(self, key: str, entry: str, keep: int, ttl: float, seen: int = 0) -> None:
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "entry", entry)
        object.__setattr__(self, "keep", keep)
        object.__setattr__(self, "ttl", ttl)
        object.__setattr__(self, "seen", seen)


@dataclass(frozen=True, slots=True)
class LogRead:
    """A log after one append: the count of appends since it began (this one included) and its
    entries after the caller's `seen`, oldest first -- the whole log (`whole`) when the caller
    saw none, has fallen further behind than the log keeps, or the log began anew."""

    appended: int
    entries: tuple[str, ...]
    whole: bool


Logs = tuple[LogRead, ...]  # per LogAppend, in order


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One entry of the penalty box or the allow list."""

    key: str
    until: float  # epoch seconds; the entry is gone after this
    reason: str
    created: float  # epoch seconds (the caller's `now` when it was set)


@dataclass(frozen=True, slots=True)
class KeyInspection:
    """What a store knows about one client key, for the control API."""

    key: str
    buckets: dict[str, BucketState]  # bucket id -> state now (only buckets with live state)
    scores: dict[str, float]  # score id -> decayed value now (only scores with a stored value)
    ban: ListEntry | None
    allow: ListEntry | None


class StoreError(Exception):
    """The backend could not answer (unreachable, timed out); the engine applies the fail mode."""


class StoreTimeout(StoreError):
    """The backend did not answer in time: slow, or down. One of these alone is not an outage."""


class Store(Protocol):
    name: str

    async def connect(self) -> None:
        """Get ready before the proxy accepts clients (connect, authenticate, load scripts).
        Raises StoreError when the backend cannot be reached."""
        ...

    async def apply(self, batch: Batch, now: float) -> BatchResult: ...

    @property
    def sync_apply(self) -> Callable[[Batch, float], BatchResult] | None:
        """`apply` without a coroutine, offered by a store that never waits (in-process state), so
        the engine saves one coroutine per decision; None for a store that must await (network).
        When offered, it gives exactly what `apply` would."""
        ...

    async def append_logs(self, appends: tuple[LogAppend, ...], now: float) -> Logs:
        """Append each entry to its log and read it (`LogRead`), in one round trip, atomic per log."""
        ...

    @property
    def sync_append_logs(self) -> Callable[[tuple[LogAppend, ...], float], Logs] | None:
        """`append_logs` without a coroutine, offered as `sync_apply` is; None for a networked store."""
        ...

    async def ban(self, key: str, until: float, now: float, reason: str = "") -> None: ...

    async def unban(self, key: str) -> bool:
        """Lift a ban; False if `key` was not banned."""
        ...

    async def bans(self, now: float, limit: int = 100) -> list[ListEntry]:
        """Live bans, soonest deadline first, at most `limit`."""
        ...

    async def allow(self, key: str, until: float, now: float, reason: str = "") -> None: ...

    async def unallow(self, key: str) -> bool: ...

    async def allows(self, now: float, limit: int = 100) -> list[ListEntry]: ...

    async def inspect(self, key: str, now: float) -> KeyInspection: ...

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
    # math.pow is C's pow, as `0.5 ** x` is for a positive base (the same bits), and a float to
    # mypy (`**` may be complex), so compiled it is a native call.
    return value * math.pow(0.5, (now - since) / half_life)

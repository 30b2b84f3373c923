"""The generic cell rate algorithm, with nginx `limit_req` arithmetic.

A bucket of rate r/s and burst b has emission interval T = 1/r and tolerance
tau = b*T. Its whole state is one number per key, the theoretical arrival time
(TAT). A request at `now` conforms when max(TAT, now) - now <= tau, and then
moves TAT on by T; a refused request changes nothing. On an idle key an instant
burst of M requests therefore accepts min(M, b + 1), and T seconds of steady
excess accept about b + 1 + r*T -- exactly what nginx's `limit_req` does.

Pure functions only: the stores (memory, Redis Lua) keep the TATs.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# Epoch seconds are floats with ~2.4e-7 s resolution and a TAT is a sum of intervals, so
# comparisons allow 1% of an interval; an absolute 1e-9 is below that resolution and made
# e.g. "5/s burst 1" accept 1 request instead of 2 at one instant.
_SLACK = 1e-2


@dataclass(frozen=True, slots=True)
class BucketLimit:
    """`count` requests per `period` seconds, with `burst` extra requests at once.

    The derived figures are computed once (the same arithmetic as ever): every bucket of every
    request reads them."""

    count: int
    period: float
    burst: int
    interval: float = field(init=False, repr=False, compare=False)  # seconds between requests
    tolerance: float = field(init=False, repr=False, compare=False)  # burst x interval
    # How far the TAT may run ahead of now for a request to conform (the stores' threshold).
    max_ahead: float = field(init=False, repr=False, compare=False)
    # Seconds after which an idle key has its whole burst back (its state can go).
    window: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        interval = self.period / self.count
        tolerance = self.burst * interval
        object.__setattr__(self, "interval", interval)
        object.__setattr__(self, "tolerance", tolerance)
        object.__setattr__(self, "max_ahead", tolerance + interval * _SLACK)
        object.__setattr__(self, "window", tolerance + interval)

    def describe(self) -> str:
        unit = next((u for u, s in _UNIT_SECONDS.items() if s == self.period), None)
        per = f"{self.count}/{unit}" if unit else f"{self.count}/{self.period:g}s"
        return f"{per} burst {self.burst}"


@dataclass(frozen=True, slots=True, init=False)
class BucketState:
    """What one bucket said about one request."""

    allowed: bool
    remaining: int  # requests still acceptable right now
    reset: float  # seconds until the bucket is full again
    retry_after: float  # seconds until a refused request would conform (0 if allowed)

    # init=False, this __init__: native when compiled (docs/architecture.md, "The compiled core")
    def __init__(self, allowed: bool, remaining: int, reset: float, retry_after: float) -> None:
        object.__setattr__(self, "allowed", allowed)
        object.__setattr__(self, "remaining", remaining)
        object.__setattr__(self, "reset", reset)
        object.__setattr__(self, "retry_after", retry_after)


def conform(tat: float | None, now: float, limit: BucketLimit) -> float | None:
    """New TAT if a request at `now` conforms, else None."""
    start = now if tat is None or tat < now else tat
    if start - now > limit.max_ahead:
        return None
    return start + limit.interval


def state_after(tat: float | None, now: float, limit: BucketLimit, allowed: bool) -> BucketState:
    """Describe a bucket whose TAT is now `tat` (after the request was applied, or not)."""
    ahead = 0.0 if tat is None or tat < now else tat - now
    interval, tolerance = limit.interval, limit.tolerance
    if ahead > tolerance + interval * (1 + _SLACK):  # cannot happen after a conforming request
        remaining = 0
    else:
        remaining = max(0, math.floor((tolerance + interval - ahead) / interval + _SLACK))
    retry_after = 0.0 if allowed else max(0.0, ahead - tolerance)
    return BucketState(allowed, remaining, ahead, retry_after)


def conform_all(
    tats: Sequence[float | None], now: float, limits: Sequence[BucketLimit]
) -> tuple[int, list[float | None]]:
    """All-or-nothing over several buckets: a request consumes from every bucket or from none.

    Returns (index of the first refusing bucket or -1, new TATs). The new TATs equal the old
    ones when the request is refused.
    """
    new: list[float | None] = []
    for i, (tat, limit) in enumerate(zip(tats, limits, strict=False)):
        nxt = conform(tat, now, limit)
        if nxt is None:
            return i, list(tats)
        new.append(nxt)
    return -1, new


def parse_rate(text: str) -> BucketLimit:
    """`10/s`, `10/s burst 20`, `1000/h`, `5/10s`. Raises ValueError with a message.

    Without `burst`, the whole count may be spent at once (burst = count - 1), which is how
    people read "1000 per hour"; write `burst 0` for nginx-style smoothing.
    """
    parts = text.split()
    if len(parts) not in (1, 3) or (len(parts) == 3 and parts[1] != "burst"):
        raise ValueError(f"rate {text!r} must look like '10/s' or '10/s burst 20'")
    count_s, _, per = parts[0].partition("/")
    if count_s[:-1].isdigit() and count_s[-1:] in ("r", "R"):  # nginx's limit_req_zone spelling
        raise ValueError(f"rate {text!r}: nginx-style rate; write {count_s[:-1]}/{per or 's'} here (no 'r')")
    if not count_s.isdigit() or int(count_s) <= 0:
        raise ValueError(f"rate {text!r}: the count must be a positive integer")
    count = int(count_s)
    unit = per[-1:] if per else ""
    mult_s = per[:-1]
    if unit not in _UNIT_SECONDS or (mult_s and not mult_s.isdigit()) or mult_s == "0":
        raise ValueError(f"rate {text!r}: the period must be s, m, h or d, optionally with a multiplier (10s)")
    period = _UNIT_SECONDS[unit] * (int(mult_s) if mult_s else 1)
    if len(parts) == 3:
        if not parts[2].isdigit():
            raise ValueError(f"rate {text!r}: burst must be a non-negative integer")
        burst = int(parts[2])
    else:
        burst = count - 1
    return BucketLimit(count, period, burst)

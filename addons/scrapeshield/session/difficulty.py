"""Adaptive proof-of-work difficulty: identities cost more the faster they are made.

A person mints one session and, at most, solves one challenge. A solver farm needs a fresh
identity every few records, so it mints sessions and solves challenges at a rate no crowd of
people on one client stack and one network reaches. The difficulty for a new challenge is

    bits = base + min(stack_cap, log2(1 + stack_rate / stack_unit)) + min(net_cap, log2(1 + net_rate / net_unit))

where `*_rate` is the decayed count of sessions minted plus challenges solved on the requester's
stack (JA4 + UA class) and on its network prefix (/24, /64), read from the store's decayed
counters. Every doubling of the rate past its unit costs the next identity one more bit, i.e.
twice the hashes: a farm pays more with every identity; the caps bound what a person who
happens to share a stack with a farm pays for their one solve (see docs/sessions.md for the
solve times at the top difficulty).
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DifficultyCurve:
    base: int = 16
    stack_unit: float = 20.0  # mints + solves per half-life on one stack before the first extra bit
    stack_cap: float = 4.0
    net_unit: float = 4.0  # ... on one network prefix
    net_cap: float = 6.0
    maximum: int = 24

    def __post_init__(self) -> None:
        if not 1 <= self.base <= self.maximum <= 32:
            raise ValueError("difficulty: need 1 <= base <= maximum <= 32")
        if self.stack_unit <= 0 or self.net_unit <= 0 or self.stack_cap < 0 or self.net_cap < 0:
            raise ValueError("difficulty: units must be positive and caps not negative")

    def bits(self, stack_rate: float, net_rate: float, floor: int = 0) -> int:
        """The difficulty for a challenge now; `floor` is what the rule asked for (never less)."""
        extra = min(self.stack_cap, math.log2(1.0 + max(0.0, stack_rate) / self.stack_unit))
        extra += min(self.net_cap, math.log2(1.0 + max(0.0, net_rate) / self.net_unit))
        return max(floor, min(self.maximum, self.base + int(extra)))

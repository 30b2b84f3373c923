"""Adaptive proof-of-work difficulty: identities cost more the faster they are made.

A person mints one session and solves at most one challenge. A solver farm needs a fresh
identity every few records, so it mints sessions and solves challenges at a rate no crowd of
people on one network reaches, and -- fetching records straight by URL -- at a rate of *cold*
sessions (whose first request is a record with no Referer) that people on one client stack do
not reach either. The difficulty of a challenge is

    bits = base + min(net_cap, net_rate / net_unit) + min(cap, stack_rate / stack_unit)

`net_rate`: decayed count of sessions minted plus challenges solved on the requester's network
prefix (/24, /64); `stack_rate`: cold sessions minted plus challenges solved on its client stack
(JA4 + UA class). Linear in the rate, so the *cost* (2**bits hashes) grows exponentially with
every identity a farm makes. `cap` is `cold_stack_cap` for a cold request and `stack_cap` for
anyone else: a person who shares a browser build with a farm pays at most `stack_cap` extra
bits, and at most `cold_stack_cap` when arriving straight on a record without a Referer. A
session without a person's history that spent its clearance's record budget is priced as cold too.

On top, `repeat_bits` for every challenge the same session solved recently: a person solves once,
a throw-away identity that keeps buying records with the same session pays more each time.
docs/sessions.md gives the solve times at each difficulty.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DifficultyCurve:
    base: int = 16
    net_unit: float = 2.0  # identities per half-life on one network that add one bit
    net_cap: float = 10.0
    stack_unit: float = 4.0  # cold sessions + solves per half-life on one stack that add one bit
    stack_cap: float = 4.0
    cold_stack_cap: float = 8.0
    repeat_bits: float = 0.0  # per challenge this session solved recently
    maximum: int = 28

    def __post_init__(self) -> None:
        if not 1 <= self.base <= self.maximum <= 32:
            raise ValueError("difficulty: need 1 <= base <= maximum <= 32")
        if min(self.stack_unit, self.net_unit) <= 0 or min(self.stack_cap, self.cold_stack_cap, self.net_cap,
                                                              self.repeat_bits) < 0:
            raise ValueError("difficulty: units must be positive and caps not negative")

    def bits(self, stack_rate: float, net_rate: float, *, cold: bool = False, solved: float = 0.0) -> int:
        """The difficulty of a challenge now; `solved`: challenges this session solved recently."""
        cap = self.cold_stack_cap if cold else self.stack_cap
        extra = min(self.net_cap, max(0.0, net_rate) / self.net_unit)
        extra += min(cap, max(0.0, stack_rate) / self.stack_unit)
        extra += self.repeat_bits * int(max(0.0, solved) + 0.5)  # decayed: one solve counts as one
        return min(self.maximum, self.base + int(extra))

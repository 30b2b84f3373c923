"""Challenge settings: the policy's `challenge:` section compiles to this (see policy/compiler.py)."""
from __future__ import annotations

from dataclasses import dataclass

from . import clearance, pow, wait
from .page import SOLVERS


@dataclass(frozen=True, slots=True)
class ChallengeConfig:
    difficulty: int = pow.DEFAULT_DIFFICULTY  # proof-of-work bits when a rule names none
    prefix: str = "/.shield/"  # reserved path prefix; the upstream never sees requests under it
    cookie_name: str = clearance.COOKIE_NAME
    cookie_ttl: int = int(clearance.DEFAULT_TTL)
    challenge_ttl: float = pow.CHALLENGE_TTL
    status: int = 403
    wait_seconds: int = wait.DEFAULT_WAIT
    v4_bits: int = 24
    v6_bits: int = 64
    solver: str = "js"  # page's hash engine: "js" (fastest) or "webcrypto" (for comparison)

    def __post_init__(self) -> None:
        if not self.prefix.startswith("/") or not self.prefix.endswith("/"):
            raise ValueError("challenge prefix must start and end with '/'")
        if not self.cookie_name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"cookie name {self.cookie_name!r} must be letters, digits, '_' or '-'")
        if not 0 <= self.v4_bits <= 32 or not 0 <= self.v6_bits <= 128:
            raise ValueError("prefix bits out of range")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}")

    @property
    def verify_path(self) -> str:
        return self.prefix + "verify"

"""What the engine says about a request, and how the shield answers it."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Action(StrEnum):
    ALLOW = "allow"
    LOG = "log"
    DELAY = "delay"
    THROTTLE = "throttle"
    CHALLENGE = "challenge"
    BLOCK = "block"
    DROP = "drop"


# Actions the shield answers itself (the upstream never sees the request): the refusals, mildest first.
ANSWERED = (Action.THROTTLE, Action.CHALLENGE, Action.BLOCK, Action.DROP)


@dataclass(frozen=True, slots=True)
class RateInfo:
    """The bucket that decided, for RateLimit / RateLimit-Policy / Retry-After headers."""

    policy_name: str
    quota: int  # requests per window
    window: float  # seconds
    burst: int
    remaining: int
    reset: float
    retry_after: float


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    rule: str  # rule name, "default", "ban", "score:<name>", "error"
    reason: str
    key: str = ""  # the client key the deciding rule used
    enforced: bool = True  # False in monitor (dry-run) mode: logged and counted only
    status: int = 0  # HTTP status for answered actions (0: the action's default)
    rate: RateInfo | None = None
    delay: float = 0.0  # seconds to hold the request (delay action)
    difficulty: int = 0  # proof-of-work bits (challenge action)
    no_js: bool = False  # wait-based challenge instead of proof of work
    score: float | None = None
    # Decisions of monitored rules that would have acted: logged and counted, not enforced.
    shadowed: tuple[Decision, ...] = field(default=())

    @property
    def effective(self) -> Action:
        """What the shield actually does."""
        return self.action if self.enforced else Action.ALLOW


ALLOW_DEFAULT = Decision(Action.ALLOW, "default", "no rule matched")

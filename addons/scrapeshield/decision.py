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


@dataclass(frozen=True, slots=True, init=False)
class RateInfo:
    """The bucket that decided, for RateLimit / RateLimit-Policy / Retry-After headers."""

    policy_name: str
    quota: int  # requests per window
    window: float  # seconds
    burst: int
    remaining: int
    reset: float
    retry_after: float

    # init=False, this __init__: native when compiled (docs/architecture.md, "The compiled core")
    def __init__(self, policy_name: str, quota: int, window: float, burst: int, remaining: int, reset: float,
                 retry_after: float) -> None:
        object.__setattr__(self, "policy_name", policy_name)
        object.__setattr__(self, "quota", quota)
        object.__setattr__(self, "window", window)
        object.__setattr__(self, "burst", burst)
        object.__setattr__(self, "remaining", remaining)
        object.__setattr__(self, "reset", reset)
        object.__setattr__(self, "retry_after", retry_after)


@dataclass(frozen=True, slots=True, init=False)
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

    # init=False, this __init__: native when compiled (docs/architecture.md, "The compiled core")
    def __init__(self, action: Action, rule: str, reason: str, key: str = "", enforced: bool = True, status: int = 0,
                 rate: RateInfo | None = None, delay: float = 0.0, difficulty: int = 0, no_js: bool = False,
                 score: float | None = None, shadowed: tuple[Decision, ...] = ()) -> None:
        object.__setattr__(self, "action", action)
        object.__setattr__(self, "rule", rule)
        object.__setattr__(self, "reason", reason)
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "enforced", enforced)
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "rate", rate)
        object.__setattr__(self, "delay", delay)
        object.__setattr__(self, "difficulty", difficulty)
        object.__setattr__(self, "no_js", no_js)
        object.__setattr__(self, "score", score)
        object.__setattr__(self, "shadowed", shadowed)

    @property
    def effective(self) -> Action:
        """What the shield actually does."""
        return self.action if self.enforced else Action.ALLOW


ALLOW_DEFAULT = Decision(Action.ALLOW, "default", "no rule matched")

"""The typed hooks through which parts of the running shield hear of each other."""
from __future__ import annotations

from typing import Any, Protocol

from ..policy.model import CompiledPolicy


class PolicyListener(Protocol):
    def policy_changed(self, policy: CompiledPolicy) -> None:
        """A new policy is live (after a successful reload); called between requests."""
        ...


class StatusSource(Protocol):
    def status(self) -> dict[str, Any]:
        """A part's section of `/status` (merged into the top-level object)."""
        ...

"""The shadow runner: a candidate policy decides every live request beside the live one, on a
store of its own, never enforced; where the two differ is counted and logged."""
from __future__ import annotations

import logging
from typing import Any

from ..clock import Clock
from ..context import DecisionContext
from ..decision import Decision
from ..engine import Engine
from ..metrics import ShieldMetrics
from ..policy.compiler import compile_file
from ..session.stage import SessionStage

log = logging.getLogger("scrapeshield")


class ShadowRunner:
    def __init__(self, policy_path: str, clock: Clock, metrics: ShieldMetrics, sessions: SessionStage) -> None:
        self.engine = Engine(compile_file(policy_path), None, clock, sessions=sessions)
        self._metrics = metrics

    async def difference(self, live_ctx: DecisionContext, live: Decision) -> dict[str, Any] | None:
        """What the shadow policy decided instead, or None when it agrees (or fails)."""
        try:
            shadow = await self.engine.decide_in(live_ctx.fork())  # a context of its own: nothing to restore
        except Exception:  # the candidate policy must never hurt live traffic
            log.exception("shadow policy failed")
            return None
        if shadow.effective is live.effective:
            return None
        self._metrics.shadow_differences.labels(live.effective.value, shadow.effective.value).inc()
        return {"rule": shadow.rule, "action": shadow.effective.value, "reason": shadow.reason}

    def status(self) -> dict[str, Any]:
        p = self.engine.policy
        return {"shadow_policy": {"file": p.source, "version": p.version_hash}}

"""What the admin listener offers operators beyond /metrics: health and readiness, /status, the
dashboard, the control API (bans, allow list, inspect) and explain.

`install(app, runtime)` adds every route to the admin aiohttp application; each concern is
one module here, and only the control API and explain need the bearer token.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from . import control, dashboard, health

if TYPE_CHECKING:
    from ..runtime import ShieldRuntime

__all__ = ["install"]


def install(app: web.Application, runtime: ShieldRuntime) -> None:
    health.install(app, runtime)
    dashboard.install(app, runtime)
    control.install(app, runtime)

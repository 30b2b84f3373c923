"""`/healthz` (the process serves), `/readyz` (it should get traffic) and `/status`."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..collector import tracked_objects
from ..health import HealthCheck

if TYPE_CHECKING:
    from ..runtime import ShieldRuntime

STARTED = time.time()  # the process, not the runtime: a re-executed addon script keeps its uptime


def health_of(runtime: ShieldRuntime) -> HealthCheck:
    return runtime.health


def install(app: web.Application, runtime: ShieldRuntime) -> None:
    async def healthz(request: web.Request) -> web.Response:
        # Liveness only: answering at all is the proof. A store outage is /readyz's business --
        # restarting a replica because Redis is down would not bring Redis back.
        return web.json_response({"ok": True, "policy": runtime.policy.version_hash})

    async def readyz(request: web.Request) -> web.Response:
        ready = await health_of(runtime).readiness()
        return web.json_response(ready.to_dict(), status=200 if ready.ready else 503)

    async def status(request: web.Request) -> web.Response:
        out = await full_status(runtime)
        if request.query.get("gc") == "objects" and "gc" in out:
            out["gc"]["tracked_objects"] = tracked_objects()  # walks every tracked object: asked for only
        return web.json_response(out)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/status", status)


async def full_status(runtime: ShieldRuntime) -> dict[str, Any]:
    out = runtime.status()
    ready = await health_of(runtime).readiness()
    now = time.time()
    out["uptime"] = round(now - STARTED, 1)
    out["started_at"] = round(STARTED, 3)
    out["ready"] = ready.ready
    out["not_ready_because"] = list(ready.reasons)
    out["store"] = {**out.get("store", {}), "health": ready.store.to_dict()}
    error = runtime.last_reload_error
    out["reload"] = {
        "last_result": "failed" if error else ("ok" if runtime.reloads_ok else "none yet"),
        "last_error": error, "ok": runtime.reloads_ok, "failed": runtime.reloads_failed,
        "policy_loaded_at": round(runtime.loaded_at, 3),
    }
    return out

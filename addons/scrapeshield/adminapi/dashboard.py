"""`/dashboard`: one self-contained page (inline CSS and JS, no external resource, a strict CSP)
that polls `/dashboard/data` every two seconds and shows what the shield is doing now.

Rates are computed in the page from the difference between two polls of the cumulative
counters, so the server keeps no time series.
"""
from __future__ import annotations

import base64
import hashlib
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .dashboard_page import PAGE as _PAGE
from .health import full_status

if TYPE_CHECKING:
    from ..runtime import ShieldRuntime

def _csp_hash(page: str, tag: str) -> str:
    body = page.split(f"<{tag}>", 1)[1].split(f"</{tag}>", 1)[0]
    return "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"


# Only the page's own inline script and style run; it may fetch from this origin and nothing else.
CSP = (f"default-src 'none'; script-src {_csp_hash(_PAGE, 'script')}; style-src {_csp_hash(_PAGE, 'style')}; "
       "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer"}


def install(app: web.Application, runtime: ShieldRuntime) -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=_PAGE, content_type="text/html", charset="utf-8", headers=_HEADERS)

    async def data(request: web.Request) -> web.Response:
        return web.json_response(await dashboard_data(runtime), headers={"Cache-Control": "no-store"})

    app.router.add_get("/dashboard", page)
    app.router.add_get("/dashboard/data", data)


async def dashboard_data(runtime: ShieldRuntime) -> dict[str, Any]:
    status = await full_status(runtime)
    decisions = [{"rule": rule, "action": action, "enforced": enforced, "count": n}
                 for (rule, action, enforced), n in runtime.metrics.decision_counts.items()]
    now = runtime.clock.now()
    bans: list[dict[str, Any]] = []
    list_bans = getattr(runtime.store, "bans", None)
    if list_bans is not None:
        try:
            bans = [{"key": e.key, "until": e.until, "reason": e.reason, "seconds_left": round(e.until - now)}
                    for e in await list_bans(now, 20)]
        except Exception as exc:
            bans = [{"error": f"{type(exc).__name__}: {exc}"}]
    return {
        "time": time.time(),
        "policy": status["policy"],
        "ready": status["ready"],
        "not_ready_because": status["not_ready_because"],
        "uptime": status["uptime"],
        "reload": status["reload"],
        "store": status["store"],
        "tracked_keys": status["counters"]["tracked_keys"],
        "engine_errors": status["counters"]["engine_errors"],
        "decisions": decisions,
        "challenges": dict(runtime.challenges.counters),
        "live": runtime.live.snapshot(),
        "bans": bans,
    }

"""The admin listener: /metrics, and what `adminapi` adds. Separate socket, loopback by default."""
from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from .runtime import ShieldRuntime

log = logging.getLogger("scrapeshield.admin")


def parse_hostport(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = default_host, text
    host = host.strip("[]") or default_host
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host, int(port)


class AdminServer:
    def __init__(self, runtime: ShieldRuntime, address: str, sock: socket.socket | None = None) -> None:
        self.runtime = runtime
        self.host, self.port = parse_hostport(address)
        self.sock = sock  # a socket already listening (a worker's private port, made by the supervisor)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        from .adminapi import install

        install(app, self.runtime)  # /healthz /readyz /status /dashboard /api/...
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site: web.BaseSite
        if self.sock is not None:
            site = web.SockSite(self._runner, self.sock)
            self.host, self.port = self.sock.getsockname()[:2]
        else:
            site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            log.error("admin server cannot listen on %s:%s: %s", self.host, self.port, exc)
            return
        log.info("admin listening on http://%s:%s (/metrics /healthz /readyz /status /dashboard)", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.runtime.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

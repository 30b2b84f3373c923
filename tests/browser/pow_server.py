"""Test scaffolding, not the proxy: a tiny aiohttp origin protected by ChallengeService directly.

`/protected...` answers 200 "landed <path>" with a clearance cookie for rule "browser-test" and
the challenge otherwise; `/.shield/...` goes to `ChallengeService.handle`. Every verify POST is
recorded (time, engine the page reports, its own solve time) for the tests and the benchmark.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from scrapeshield.challenge import ChallengeService, KeyRing
from scrapeshield.clock import SystemClock
from scrapeshield.store.memory import MemoryStore

RULE = "browser-test"


@dataclass
class Submission:
    at: float
    status: int
    engine: str
    client_ms: float
    nonce: str


@dataclass
class PowServer:
    difficulty: int = 12
    no_js: bool = False
    service: ChallengeService = field(default_factory=lambda: ChallengeService(KeyRing.generate()))
    store: MemoryStore = field(default_factory=MemoryStore)
    clock: SystemClock = field(default_factory=SystemClock)
    submissions: list[Submission] = field(default_factory=list)
    challenged_at: list[float] = field(default_factory=list)
    _runner: Any = None

    async def start(self, hosts: tuple[str, ...], port: int = 0) -> int:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        for host in hosts:
            site = web.TCPSite(self._runner, host, port)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return port

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        svc = self.service
        binding = svc.binding(request.remote or "", request.headers.get("User-Agent", ""))
        now = self.clock.now()
        if svc.is_reserved(request.path):
            body = await request.read()
            resp = await svc.handle(request.method, request.path, request.query_string, body, binding,
                                    request.secure, now, self.store.spend_once, request.headers.get("Cookie"))
            if request.method == "POST":
                form = await request.post()
                self.submissions.append(Submission(time.perf_counter(), resp.status, str(form.get("engine", "")),
                                                   float(str(form.get("ms") or 0)), str(form.get("nonce", ""))))
            return _to_aiohttp(resp)
        if request.path == "/plain":  # no challenge, no CSP: lets a test ask the origin what it supports
            return web.Response(text="<!doctype html><title>plain</title>", content_type="text/html")
        if request.path == "/elsewhere":
            return web.Response(text="elsewhere reached")
        if not request.path.startswith("/protected"):
            return web.Response(status=404, text="no such test page")
        if svc.check_clearance(request.headers.get("Cookie"), binding, RULE, now):
            go = request.query.get("redirect")
            if go:  # an upstream that sends the cleared browser on to another origin
                raise web.HTTPFound(go)
            return web.Response(text=f"landed {request.path_qs}")
        self.challenged_at.append(time.perf_counter())
        return _to_aiohttp(svc.challenge_response(RULE, self.difficulty, request.path_qs, binding,
                                                  request.headers.get("Accept"), self.no_js, now))


def _to_aiohttp(resp: Any) -> web.Response:
    out = web.Response(status=resp.status, body=resp.body)
    for name, value in resp.headers:
        if name.lower() != "content-length":
            out.headers.add(name, value)
    return out

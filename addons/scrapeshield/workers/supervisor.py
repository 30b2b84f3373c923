"""`scrapeshield run --workers N`: one supervisor process, N worker processes, one port.

The supervisor makes every socket before it starts a worker -- the N listening sockets of one
SO_REUSEPORT group with the placement program (reuseport.py), and one private loopback admin
socket per worker -- and hands worker i its two sockets by file descriptor. It keeps its own
copies open, so a dead worker's socket, accept queue and client placement survive until the
worker is started again. It then:

- restarts a worker that exits (with a back-off if it keeps dying at start), and kills (then
  restarts) one that is hung: its admin port, served by the same event loop as its clients,
  has not answered for `hang_timeout` seconds;
- forwards SIGHUP (policy reload) to every worker, and on SIGTERM/SIGINT stops accepting and
  asks every worker to drain (in-flight requests finish) before it exits;
- serves the one admin port: `/metrics` and `/status` merged from the workers' private admin
  ports (aggregate.py), `/healthz` while at least one worker serves.

Each worker is an ordinary `scrapeshield run` (one process, one event loop) told to use the
inherited sockets; it imports mitmproxy, the supervisor does not.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily

from .aggregate import merge_metrics, merge_status
from .reuseport import DEFAULT_BACKLOG, close_all, listen_socket, worker_group

log = logging.getLogger("scrapeshield.supervisor")

START_TIMEOUT = 60.0  # seconds for a worker to answer its /healthz
RESTART_BACKOFF = (0.1, 0.5, 1.0, 2.0, 5.0)  # after consecutive deaths within STABLE_SECONDS of a start
STABLE_SECONDS = 10.0
SCRAPE_TIMEOUT = 2.0


def parse_workers(text: str) -> int:
    """`N` (1..256) or `auto` (the CPUs this process may run on); ValueError with one clear line."""
    if text.strip().lower() == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    try:
        count = int(text)
    except ValueError:
        raise ValueError(f"--workers must be a whole number from 1 to 256 or 'auto', not {text!r}") from None
    if not 1 <= count <= 256:
        raise ValueError(f"--workers must be a whole number from 1 to 256 or 'auto', not {text!r}")
    return count


_SUPERVISOR_FLAGS = ("--workers", "--listen", "--admin", "--worker-hang-timeout")


def worker_argv(argv: list[str]) -> list[str]:
    """The `run` arguments a worker gets: the operator's, without those the supervisor owns."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in _SUPERVISOR_FLAGS:
            skip = True
            continue
        if arg.startswith(tuple(f + "=" for f in _SUPERVISOR_FLAGS)):
            continue
        out.append(arg)
    if out and out[0] == "run":
        out.pop(0)
    return out


@dataclass(frozen=True)
class WorkerPlan:
    count: int
    host: str
    port: int
    admin: tuple[str, int] | None  # the one admin address; None: no admin port
    run_argv: tuple[str, ...]  # `scrapeshield run` arguments for a worker, without listen/admin/workers
    backlog: int = DEFAULT_BACKLOG
    drain_timeout: float = 10.0
    env: tuple[tuple[str, str], ...] = ()  # added to the workers' environment (e.g. one shared ephemeral key)
    hang_timeout: float = 10.0  # seconds without an answer on its admin port before a worker counts as hung; 0: never


@dataclass
class Worker:
    index: int
    listen: socket.socket
    admin: socket.socket
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    restarts: int = 0
    quick_deaths: int = 0
    ready: bool = False
    answered_at: float = 0.0  # monotonic time of its last /healthz answer
    hangs: int = 0
    exits: list[int] = field(default_factory=list)

    @property
    def admin_url(self) -> str:
        host, port = self.admin.getsockname()[:2]
        return f"http://{host}:{port}"

    @property
    def up(self) -> bool:
        return self.process is not None and self.process.returncode is None


def _json_or_none(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return None


class Supervisor:
    def __init__(self, plan: WorkerPlan) -> None:
        self.plan = plan
        self.workers: list[Worker] = []
        self._stopping = asyncio.Event()
        self._watchers: list[asyncio.Task[None]] = []
        self._admin: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    async def run(self) -> int:
        plan = self.plan
        try:
            group = worker_group(plan.host, plan.port, plan.count, plan.backlog)
        except OSError as exc:
            print(f"scrapeshield: cannot start: cannot listen on {plan.host}:{plan.port}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 2
        self.workers = [Worker(i, sock, listen_socket("127.0.0.1", 0)) for i, sock in enumerate(group)]
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.forward, signal.SIGHUP)
        try:
            for worker in self.workers:
                await self._spawn(worker)
            if not await self._all_ready():
                return 1
            if plan.admin is not None and not await self._start_admin(*plan.admin):
                return 2
            self._watchers = [loop.create_task(self._watch(w)) for w in self.workers]
            if plan.hang_timeout > 0:
                self._watchers.append(loop.create_task(self._watch_for_hangs(plan.hang_timeout)))
            log.info("%d workers serving %s:%s (pids %s)", plan.count, plan.host, group[0].getsockname()[1],
                     " ".join(str(w.process.pid) for w in self.workers if w.process))
            await self._stopping.wait()
            return 0
        finally:
            await self._shutdown()

    # -- workers ----------------------------------------------------------------------------------
    async def _spawn(self, worker: Worker) -> None:
        listen_fd, admin_fd = worker.listen.fileno(), worker.admin.fileno()
        argv = [sys.executable, "-m", "scrapeshield", "run", *self.plan.run_argv,
                "--worker-index", str(worker.index), "--listen-fd", str(listen_fd), "--admin-fd", str(admin_fd)]
        worker.process = await asyncio.create_subprocess_exec(*argv, pass_fds=(listen_fd, admin_fd),
                                                              stdin=asyncio.subprocess.DEVNULL,
                                                              env={**os.environ, **dict(self.plan.env)})
        worker.started_at = time.monotonic()
        worker.ready = False

    async def _all_ready(self) -> bool:
        results = await asyncio.gather(*(self._await_ready(w) for w in self.workers))
        if all(results):
            return True
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is not None:
                print(f"scrapeshield: worker {worker.index} exited with code {worker.process.returncode} at start",
                      file=sys.stderr)
        return False

    async def _await_ready(self, worker: Worker) -> bool:
        assert self._http is not None and worker.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and not self._stopping.is_set():
            if worker.process.returncode is not None:
                return False
            try:
                async with self._http.get(worker.admin_url + "/healthz") as resp:
                    if resp.status == 200:
                        worker.ready = True
                        worker.answered_at = time.monotonic()
                        return True
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.05)
        return False

    async def _watch(self, worker: Worker) -> None:
        while not self._stopping.is_set():
            assert worker.process is not None
            code = await worker.process.wait()
            worker.exits.append(code)
            if self._stopping.is_set():
                return
            lived = time.monotonic() - worker.started_at
            worker.quick_deaths = worker.quick_deaths + 1 if lived < STABLE_SECONDS else 0
            delay = RESTART_BACKOFF[min(worker.quick_deaths, len(RESTART_BACKOFF) - 1)]
            log.warning("worker %d (pid %d) exited with code %d after %.1fs; restarting in %.1fs",
                        worker.index, worker.process.pid, code, lived, delay)
            await asyncio.sleep(delay)
            if self._stopping.is_set():
                return
            worker.restarts += 1
            await self._spawn(worker)
            if await self._await_ready(worker):
                log.info("worker %d restarted (pid %d)", worker.index, worker.process.pid)

    async def _watch_for_hangs(self, hang_timeout: float) -> None:
        """Kill a worker that stopped answering; `_watch` then restarts it like any dead worker.

        A busy worker still answers /healthz (it is a few microseconds of the same loop), so only
        a loop that does not come back -- a deadlock, a runaway computation, a SIGSTOP -- crosses
        the timeout. Probes run every quarter of it, each bounded by it."""
        interval = max(0.25, hang_timeout / 4)
        probe_timeout = aiohttp.ClientTimeout(total=min(hang_timeout, SCRAPE_TIMEOUT))
        while not self._stopping.is_set():
            await asyncio.sleep(interval)
            live = [w for w in self.workers if w.ready and w.up]
            await asyncio.gather(*(self._probe(w, probe_timeout, hang_timeout) for w in live))

    async def _probe(self, worker: Worker, timeout: aiohttp.ClientTimeout, hang_timeout: float) -> None:
        """One liveness probe; a worker is hung when this probe fails too and its last answer is
        older than `hang_timeout` (a slow probe of another worker never makes this one look late)."""
        assert self._http is not None and worker.process is not None
        try:
            async with self._http.get(worker.admin_url + "/healthz", timeout=timeout) as resp:
                if resp.status == 200:
                    worker.answered_at = time.monotonic()
                    return
        except (aiohttp.ClientError, TimeoutError):
            pass
        silent = time.monotonic() - worker.answered_at
        if silent > hang_timeout and worker.ready and worker.up:
            log.warning("worker %d (pid %d) has not answered for %.1fs; killing it as hung",
                        worker.index, worker.process.pid, silent)
            worker.hangs += 1
            worker.ready = False  # once: `_watch` sees the exit and restarts it
            with contextlib.suppress(ProcessLookupError):
                worker.process.kill()

    def forward(self, sig: int) -> None:
        for worker in self.workers:
            if worker.up and worker.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(sig)
        log.info("forwarded %s to %d workers", signal.Signals(sig).name, sum(w.up for w in self.workers))

    async def _shutdown(self) -> None:
        self._stopping.set()
        if self._admin is not None:
            await self._admin.cleanup()
        # Our copies of the listening sockets go first: once the workers close theirs, the port is closed.
        close_all([w.listen for w in self.workers])
        self.forward(signal.SIGTERM)
        live = [w.process for w in self.workers if w.process is not None and w.process.returncode is None]
        if live:
            await asyncio.wait([asyncio.ensure_future(p.wait()) for p in live], timeout=self.plan.drain_timeout + 5.0)
            for process in live:
                if process.returncode is None:
                    log.warning("worker pid %d did not stop in time; killing it", process.pid)
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
        for task in self._watchers:
            task.cancel()
        close_all([w.admin for w in self.workers])
        if self._http is not None:
            await self._http.close()

    # -- the one admin port -----------------------------------------------------------------------
    async def _start_admin(self, host: str, port: int) -> bool:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/status", self._status)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_route("*", "/{tail:.*}", self._to_every_worker)
        self._admin = web.AppRunner(app, access_log=None)
        await self._admin.setup()
        try:
            await web.TCPSite(self._admin, host, port).start()
        except OSError as exc:
            print(f"scrapeshield: cannot start: admin server cannot listen on {host}:{port}: {exc.strerror or exc}",
                  file=sys.stderr)
            return False
        log.info("admin listening on http://%s:%s (/metrics /healthz /status, merged over workers)", host, port)
        return True

    async def _scrape(self, worker: Worker, path: str) -> Any:
        if not worker.up or self._http is None:
            return None
        try:
            async with self._http.get(worker.admin_url + path) as resp:
                if resp.status != 200:
                    return None
                return await (resp.json() if path != "/metrics" else resp.text())
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    async def _metrics(self, request: web.Request) -> web.Response:
        texts = await asyncio.gather(*(self._scrape(w, "/metrics") for w in self.workers))
        up = GaugeMetricFamily("scrapeshield_workers", "Worker processes by state", labels=["state"])
        up.add_metric(["configured"], len(self.workers))
        up.add_metric(["up"], sum(t is not None for t in texts))
        restarts = CounterMetricFamily("scrapeshield_worker_restarts", "Worker processes restarted after an exit")
        restarts.add_metric([], sum(w.restarts for w in self.workers))
        hangs = CounterMetricFamily("scrapeshield_worker_hangs",
                                    "Worker processes killed because they stopped answering")
        hangs.add_metric([], sum(w.hangs for w in self.workers))
        body = merge_metrics([t for t in texts if t is not None], (up, restarts, hangs))
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _status(self, request: web.Request) -> web.Response:
        path = "/status?gc=objects" if request.query.get("gc") == "objects" else "/status"
        statuses = await asyncio.gather(*(self._scrape(w, path) for w in self.workers))
        return web.json_response(merge_status([
            {"index": w.index, "pid": w.process.pid if w.process else None, "up": status is not None,
             "restarts": w.restarts, "hangs": w.hangs, "status": status}
            for w, status in zip(self.workers, statuses, strict=True)
        ]))

    async def _readyz(self, request: web.Request) -> web.Response:
        answers = await asyncio.gather(*(self._forward(w, "GET", "/readyz", {}, b"") for w in self.workers))
        ready = [a is not None and a[0] == 200 for a in answers]
        body = {"ready": all(ready), "workers": len(self.workers), "workers_ready": sum(ready),
                "per_worker": [_json_or_none(a[2]) if a is not None else None for a in answers]}
        return web.json_response(body, status=200 if all(ready) else 503)

    async def _to_every_worker(self, request: web.Request) -> web.Response:
        """The rest of the admin API (control API, dashboard): each worker keeps its own state, so a
        request goes to every worker; one answer comes back if all agree, else 502 with each."""
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type", "accept")}
        answers = await asyncio.gather(*(self._forward(w, request.method, request.path_qs, headers, body)
                                         for w in self.workers))
        live = [a for a in answers if a is not None]
        if not live:
            return web.json_response({"error": "no worker answered"}, status=503)
        if len({status for status, _, _ in live}) == 1:
            status, content_type, payload = live[0]
            return web.Response(status=status, body=payload, content_type=content_type.split(";")[0] or None)
        return web.json_response({"error": "workers answered differently", "per_worker": [
            None if a is None else {"status": a[0], "body": a[2].decode("utf-8", "replace")[:2000]} for a in answers
        ]}, status=502)

    async def _forward(self, worker: Worker, method: str, path: str, headers: dict[str, str],
                       body: bytes) -> tuple[int, str, bytes] | None:
        if not worker.up or self._http is None:
            return None
        try:
            async with self._http.request(method, worker.admin_url + path, headers=headers, data=body or None) as resp:
                return resp.status, resp.headers.get("Content-Type", ""), await resp.read()
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def _healthz(self, request: web.Request) -> web.Response:
        checks = await asyncio.gather(*(self._scrape(w, "/healthz") for w in self.workers))
        live = [c for c in checks if c is not None]
        body = {"ok": bool(live), "workers": len(self.workers), "workers_up": len(live),
                "policy": live[0].get("policy") if live else None}
        return web.json_response(body, status=200 if live else 503)

"""The mitmproxy master that `scrapeshield run` serves with: a reverse proxy on our own socket
(mitm/serving.py), our addons, and a graceful stop on SIGTERM/SIGINT."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from mitmproxy import options
from mitmproxy.addons import core, errorcheck, next_layer, proxyserver, save, tlsconfig
from mitmproxy.master import Master

from .. import accel
from ..admin import AdminServer
from ..collector import CollectorProbe, freeze_startup
from ..connlimits import ConnectionLimits
from ..runtime import ShieldRuntime
from ..workers.reuseport import listen_socket
from . import errorpages
from .addon import ShieldAddon
from .serving import RefusedBodies, ShieldServing

log = logging.getLogger("scrapeshield")


@dataclass(frozen=True, slots=True)
class ProxySettings:
    upstream: str  # origin URL
    listen_host: str
    listen_port: int
    confdir: str  # where the self-signed CA lives
    limits: ConnectionLimits
    save: str = ""  # write every flow to this file (for replay)
    cert: str | None = None  # TLS certificate (PEM) for the listen port
    key: str | None = None  # its private key, if not in the certificate file
    listen_fd: int | None = None  # a worker: the supervisor's listening socket
    admin_fd: int | None = None  # a worker: the supervisor scrapes this private admin socket


async def serve(runtime: ShieldRuntime, settings: ProxySettings) -> int:
    """Serve until SIGTERM/SIGINT, then let in-flight requests finish. Returns the exit status."""
    s = settings
    try:  # our socket, not mitmproxy's: backlog, reuseport group, per-connection limits (mitm/serving.py)
        sock = socket.socket(fileno=s.listen_fd) if s.listen_fd is not None else \
            listen_socket(s.listen_host, s.listen_port, s.limits.backlog)
    except OSError as exc:
        print(f"scrapeshield: cannot start: cannot listen on {s.listen_host}:{s.listen_port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    sock.setblocking(False)
    host, port = sock.getsockname()[:2]
    errorpages.install()
    serving = ShieldServing(sock, s.limits, runtime.metrics.registry, runtime.is_reserved)
    runtime.status_sources.append(serving)
    probe = CollectorProbe(runtime.metrics.registry)  # every GC pass timed: /status "gc", /metrics
    probe.install()
    runtime.status_sources.append(probe)
    os.makedirs(s.confdir, exist_ok=True)
    opts = options.Options()
    master = Master(opts)
    master.addons.add(core.Core(), proxyserver.Proxyserver(), next_layer.NextLayer(), tlsconfig.TlsConfig(),
                      errorcheck.ErrorCheck(repeat_errors_on_stderr=True))
    if s.save:
        master.addons.add(save.Save())
    master.addons.add(serving, ShieldAddon(runtime), RefusedBodies(serving), StartAccepting(serving, probe))
    update: dict[str, object] = {
        "mode": [f"reverse:{s.upstream}"], "listen_host": host, "listen_port": port, "connection_strategy": "lazy",
        "keep_host_header": True, "confdir": s.confdir,
        "server": False, "stream_large_bodies": str(s.limits.stream_threshold),  # mitm/serving.py listens
    }
    if s.save:
        update["save_stream_file"] = s.save
    if s.cert:
        update["certs"] = [f"*={_combined_pem(s.cert, s.key, s.confdir)}"]
    opts.update(**update)

    await runtime.store.connect()  # connect, authenticate, load scripts: before the port accepts clients
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    async def graceful_stop() -> None:
        await serving.drain()  # in-flight requests finish
        master.shutdown()

    def stop() -> None:
        if not stopping:
            stopping.append(loop.create_task(graceful_stop()))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    admin = None
    if s.admin_fd is not None:  # a worker: the supervisor scrapes this private port
        admin = AdminServer(runtime, "127.0.0.1:0", sock=socket.socket(fileno=s.admin_fd))
        await admin.start()
    log.info("scrapeshield listening on %s:%s -> %s (policy %s, version %s)", host, port, s.upstream,
             runtime.config.policy_path, runtime.policy.version_hash)
    log.log(logging.WARNING if accel.STATUS.problem else logging.INFO, "%s", accel.STATUS.describe())
    try:
        await master.run()
    finally:
        if admin is not None:
            await admin.stop()
    return 0


class StartAccepting:
    """The last addon: once every other one is running, start-up is over. Everything alive now is
    frozen out of the garbage collector's sight (collector.py), then clients are accepted -- in
    each worker too, as each runs this same `serve`."""

    def __init__(self, serving: ShieldServing, probe: CollectorProbe) -> None:
        self.serving, self.probe = serving, probe
        self._gc_log: asyncio.Task[None] | None = None

    async def running(self) -> None:
        if self._gc_log is not None:
            return
        frozen = freeze_startup()
        log.info("start-up done: %d objects frozen out of the garbage collector", frozen)
        self._gc_log = asyncio.create_task(self.probe.log_slow_passes())
        await self.serving.accept()

    def done(self) -> None:
        if self._gc_log is not None:
            self._gc_log.cancel()
        self.probe.uninstall()


def _combined_pem(cert: str, key: str | None, confdir: str) -> str:
    """mitmproxy wants key and certificate in one PEM file."""
    if not key:
        return cert
    path = os.path.join(confdir, "listen-cert.pem")
    with open(path, "w", encoding="ascii") as out:
        out.write(Path(key).read_text() + "\n" + Path(cert).read_text())
    os.chmod(path, 0o600)
    return path

"""A real `redis-server` for tests and benchmarks: loopback only, no persistence, stopped by pid.

    with RedisServer() as server:          # a free port on 127.0.0.1, a temporary directory
        store = RedisStore.from_url(server.url)
        server.stop(); server.start()      # the same port again: a restart for fault tests
        server.pause(); server.resume()    # SIGSTOP / SIGCONT: a server that hangs

`RedisServerMissing` is raised, with the fix in its message, when there is no `redis-server`
binary; `start_or_fail()` turns that into a test failure: a test that needs Redis must fail
then, never skip.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

READY_TIMEOUT = 10.0
STOP_GRACE_SECONDS = 5.0


class RedisServerMissing(RuntimeError):
    pass


def redis_server_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise RedisServerMissing(
            "redis-server is not installed, and the Redis store tests need a real one: "
            "run scripts/system-packages (apt-get install redis-server)")
    return path


def start_or_fail(**kwargs: Any) -> RedisServer:
    """Start a RedisServer, or fail the calling test (never skip it) when redis-server is missing."""
    try:
        return RedisServer(**kwargs).start()
    except RedisServerMissing as exc:
        import pytest

        pytest.fail(str(exc), pytrace=False)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process. `port` stays the same across stop()/start()."""

    def __init__(self, workdir: Path | str | None = None, port: int | None = None, unix_socket: bool = False) -> None:
        self.binary = redis_server_binary()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="scrapeshield-redis-")
            workdir = self._tmp.name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._fixed_port = port is not None
        self.port = port or _free_port()
        self.unix_path = self.workdir / "redis.sock" if unix_socket else None
        self.log_path = self.workdir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        if self.unix_path is None:
            raise ValueError("start the server with unix_socket=True for a unix:// URL")
        return f"unix://{self.unix_path}?db=0"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> Self:
        """Start and wait until it answers PING. A port taken meanwhile is retried with another."""
        for _attempt in range(5):
            if self._launch():
                return self
            if self._fixed_port:
                break
            self.port = _free_port()
        raise RuntimeError(f"redis-server did not start on port {self.port}; log:\n{self._log_tail()}")

    def _launch(self) -> bool:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.workdir), "--logfile", str(self.log_path), "--daemonize", "no",
                "--protected-mode", "no"]
        if self.unix_path is not None:
            args += ["--unixsocket", str(self.unix_path), "--unixsocketperm", "700"]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                return False
            if _ping(self.port):
                return True
            time.sleep(0.02)
        self.stop()
        return False

    def stop(self) -> None:
        """SIGTERM by pid (SIGKILL after a grace period); a paused server is resumed first."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGCONT)
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

    def kill(self) -> None:
        """SIGKILL by pid: the server vanishes without closing anything."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing answers -- the hang case."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no log)"

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

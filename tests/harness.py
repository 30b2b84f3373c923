"""Real processes for end-to-end tests: the demo origin and `scrapeshield run`.

Both run as subprocesses with this venv's python and `PYTHONPATH=<repo>/addons`, log
to files in a temporary directory, are ready when an HTTP endpoint answers, and are
stopped by pid (SIGTERM, then SIGKILL). Clients bound to another loopback address
(127.0.0.2, ...) let one machine play many client IPs.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import pytest
import requests
from requests.adapters import HTTPAdapter

REPO = Path(__file__).resolve().parents[1]
ADDONS = REPO / "addons"
PYTHON = sys.executable

STOP_GRACE_SECONDS = 5.0
# A Chrome 126 browser's request headers, for HTTP clients that play one (tests/e2e).
CHROME_HEADERS = {
    "User-Agent": ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                   "Chrome/126.0.0.0 Safari/537.36"),
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    "Accept-Language": "en-GB,en;q=0.9",
    "sec-ch-ua": '"Chromium";v="126", "Google Chrome";v="126", "Not.A/Brand";v="24"',
    "sec-ch-ua-mobile": "?0",
    "sec-ch-ua-platform": '"Windows"',
}
_PORT_IN_USE_MARKERS = ("address already in use", "errno 98", "eaddrinuse")


# --- small helpers ------------------------------------------------------------------------

def require_executable(program: str) -> str:
    """A program the tests drive for real (chromium, node, curl, redis-server): its absence is a
    failure -- `scripts/system-packages` installs it -- never a skip."""
    found = program if os.path.isabs(program) and os.access(program, os.X_OK) else shutil.which(program)
    if not found:
        pytest.fail(f"{program} is missing; scripts/system-packages installs it", pytrace=False)
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the OS picks it; a race is possible but rare)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_http(
    url: str,
    timeout: float = 10.0,
    *,
    status: int | None = 200,
    process: subprocess.Popen[bytes] | None = None,
) -> httpx.Response:
    """Poll `url` until it answers (with `status`, unless None) and return that response.

    Raises TimeoutError after `timeout` seconds, or RuntimeError at once if `process`
    exits meanwhile -- there is no point waiting for a server that has died.
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx.Client(trust_env=False, timeout=2.0, verify=False) as client:
        while True:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"process exited with code {process.returncode} before {url} answered")
            try:
                response = client.get(url)
                if status is None or response.status_code == status:
                    return response
                last = f"status {response.status_code}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{url} not ready after {timeout:.1f}s (last: {last})")
            time.sleep(0.05)


def bind_client(ip: str, **kwargs: Any) -> httpx.Client:
    """An httpx client whose connections come from source address `ip` (e.g. "127.0.0.2").

    Ignores proxy environment variables; extra kwargs (base_url, timeout, headers, ...)
    go to httpx.Client.
    """
    kwargs.setdefault("timeout", 10.0)
    return httpx.Client(transport=httpx.HTTPTransport(local_address=ip), trust_env=False, **kwargs)


def bind_async_client(ip: str, **kwargs: Any) -> httpx.AsyncClient:
    """The asyncio twin of `bind_client`."""
    kwargs.setdefault("timeout", 10.0)
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=ip), trust_env=False, **kwargs)


class SourceAddressAdapter(HTTPAdapter):
    """A requests adapter whose connections come from a fixed source address."""

    def __init__(self, source_ip: str, **kwargs: Any) -> None:
        self.source_address = (source_ip, 0)  # set first: HTTPAdapter.__init__ builds the pool
        super().__init__(**kwargs)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        pool_kwargs["source_address"] = self.source_address
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)


def bind_session(ip: str) -> requests.Session:
    """A requests session whose connections come from source address `ip`."""
    session = requests.Session()
    session.trust_env = False
    adapter = SourceAddressAdapter(ip)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def origin_stats(origin_url: str) -> dict[str, Any]:
    """What the demo origin has seen (`/__origin/stats`)."""
    response = httpx.get(f"{origin_url}/__origin/stats", trust_env=False, timeout=5.0)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def reset_origin_stats(origin_url: str) -> None:
    httpx.post(f"{origin_url}/__origin/reset", trust_env=False, timeout=5.0).raise_for_status()


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for our subprocesses: the package importable, output unbuffered."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ADDONS), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


# --- processes ------------------------------------------------------------------------------

class ProcessStartError(RuntimeError):
    """A server process exited or never became ready; the message carries its log."""


class ServerProcess:
    """A server subprocess with file logs, a readiness URL, and stop-by-pid.

    Subclasses say how to build the command line (`_argv`), where readiness is
    (`_ready_url`), and how to pick new ports when a chosen one was taken (`_repick_ports`).
    """

    name = "server"
    startup_timeout = 15.0
    start_attempts = 3

    def __init__(self, workdir: Path | str | None = None, env: dict[str, str] | None = None) -> None:
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="scrapeshield-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.extra_env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.stdout_path = self.workdir / f"{self.name}.stdout.log"
        self.stderr_path = self.workdir / f"{self.name}.stderr.log"
        self._ports_picked_here = True

    # to override
    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _ready_url(self) -> str:
        raise NotImplementedError

    def _repick_ports(self) -> None:
        raise NotImplementedError

    # lifecycle
    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def argv(self) -> list[str]:
        return self._argv()

    def start(self) -> Self:
        for attempt in range(1, self.start_attempts + 1):
            try:
                self._start_once()
                return self
            except ProcessStartError:
                retry = (
                    self._ports_picked_here
                    and attempt < self.start_attempts
                    and any(m in self.log_text().lower() for m in _PORT_IN_USE_MARKERS)
                )
                if not retry:
                    raise
                self._repick_ports()
        raise AssertionError("unreachable")

    def _start_once(self) -> None:
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"{self.name} already running (pid {self.process.pid})")
        argv = self._argv()
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=REPO, env=subprocess_env(self.extra_env)
            )
        try:
            wait_http(self._ready_url(), self.startup_timeout, process=self.process)
        except (TimeoutError, RuntimeError) as exc:
            self.stop()
            raise ProcessStartError(
                f"{self.name} did not become ready: {exc}\ncommand: {' '.join(argv)}\n{self.log_text()}"
            ) from None

    def stop(self) -> int | None:
        """SIGTERM the pid, SIGKILL it if it lingers; returns the exit code (None if never started)."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            try:
                os.kill(process.pid, signal.SIGTERM)
                process.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(STOP_GRACE_SECONDS)
            except ProcessLookupError:
                process.wait(STOP_GRACE_SECONDS)
        return process.returncode

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        parts = []
        for label, path in (("stdout", self.stdout_path), ("stderr", self.stderr_path)):
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"--- {self.name} {label} ({path}) ---\n{text}")
        return "\n".join(parts)

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class OriginProcess(ServerProcess):
    """`python -m demo.shop --port N`, ready when `/__origin/stats` answers."""

    name = "origin"

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        workdir: Path | str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(workdir, env)
        self.host = host
        self._ports_picked_here = port is None
        self.port = port if port is not None else free_port(host)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _argv(self) -> list[str]:
        return [PYTHON, "-m", "demo.shop", "--host", self.host, "--port", str(self.port)]

    def _ready_url(self) -> str:
        return f"{self.url}/__origin/stats"

    def _repick_ports(self) -> None:
        self.port = free_port(self.host)


class ShieldProcess(ServerProcess):
    """A real `python -m scrapeshield run ...`, ready when `GET <admin>/healthz` is 200.

    `policy` is a policy file; alternatively `policy_text` is written to one in the
    workdir. Ports not given are picked free. `extra_args` are appended verbatim.
    """

    name = "shield"
    startup_timeout = 30.0

    def __init__(
        self,
        upstream: str | None,
        policy: Path | str | None = None,
        *,
        policy_text: str | None = None,
        store: str | None = None,
        shadow_policy: Path | str | None = None,
        save: Path | str | None = None,
        decision_log: Path | str | None = None,
        extra_args: Sequence[str] = (),
        host: str = "127.0.0.1",
        listen_port: int | None = None,
        admin_port: int | None = None,
        workdir: Path | str | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float | None = None,
    ) -> None:
        super().__init__(workdir, env)
        if (policy is None) == (policy_text is None):
            raise ValueError("give exactly one of policy (a file) or policy_text")
        if policy_text is not None:
            policy = self.workdir / "policy.yaml"
            policy.write_text(policy_text)
        assert policy is not None
        self.upstream = upstream
        self.policy = Path(policy)
        self.store = store
        self.shadow_policy = shadow_policy
        self.save = save
        self.decision_log = decision_log
        self.extra_args = list(extra_args)
        self.host = host
        self._ports_picked_here = listen_port is None and admin_port is None
        self.port = listen_port if listen_port is not None else free_port(host)
        self.admin_port = admin_port if admin_port is not None else free_port(host)
        if startup_timeout is not None:
            self.startup_timeout = startup_timeout

    @property
    def proxy_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def https_url(self) -> str:
        """The listen port spoken to over TLS (mitmproxy's reverse mode detects a ClientHello)."""
        return f"https://{self.host}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.host}:{self.admin_port}"

    def _argv(self) -> list[str]:
        # Without an upstream: `python -m demo`, the demo shop with the shield in front (what scripts/run does).
        argv = [PYTHON, "-m", "demo"] if self.upstream is None else [PYTHON, "-m", "scrapeshield", "run"]
        if self.upstream is not None:
            argv += ["--upstream", self.upstream]
        argv += [
            "--listen", f"{self.host}:{self.port}",
            "--admin", f"{self.host}:{self.admin_port}",
            "--policy", str(self.policy),
        ]
        for flag, value in (
            ("--store", self.store),
            ("--shadow-policy", self.shadow_policy),
            ("--save", self.save),
            ("--decision-log", self.decision_log),
        ):
            if value is not None:
                argv += [flag, str(value)]
        return argv + self.extra_args

    def _ready_url(self) -> str:
        return f"{self.admin_url}/healthz"

    def _repick_ports(self) -> None:
        self.port = free_port(self.host)
        self.admin_port = free_port(self.host)

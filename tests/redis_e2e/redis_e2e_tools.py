"""Helpers for the Redis end-to-end tests: real redis-server, real `scrapeshield run` replicas.

Redis is started by the tests on a free loopback port (never mocked); when `redis-server` is
missing the tests FAIL (`start_or_fail`), they are never skipped. Replicas are started in
parallel (each takes a few seconds to import mitmproxy), and every test speaks from its own
loopback source address, so no test spends another's budget.
"""
from __future__ import annotations

import concurrent.futures
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx
from prometheus_client.parser import text_string_to_metric_families

from harness import ShieldProcess, bind_client
from redis_server import RedisServer
from scrapeshield.gcra import BucketLimit, conform, parse_rate

STORE_TIMEOUT = 0.25  # --store-timeout; the production default (0.05 s) is spuriously hit on a loaded 2-core CI box
REQUEST_BOUND = 2.0  # seconds: no request through a shield may take longer, whatever Redis does

LIMIT_TEXT = "1/m burst 9"  # 10 at once, then one a minute: no refill within a test, however slow the machine
LIMIT = parse_rate(LIMIT_TEXT)

# Both files use this policy (with `fail:` filled in). Rule paths live under the demo origin's
# /echo/, so whatever a shield lets through gets a 200.
POLICY = """\
version: 1
name: redis-e2e
fail: {fail}
rules:
  - name: ban-me
    match: {{path: [/echo/ban-me/*]}}
    action: block
    ban: 5m
  - name: limited
    match: {{path: [/echo/limited/*]}}
    key: ip
    limits: ["{limit}"]
  - name: limit-then-ban
    match: {{path: [/echo/limit-ban/*]}}
    key: ip
    limits: ["1/m burst 2"]
    ban: 5m
  - name: busy
    match: {{path: [/echo/busy/*]}}
    key: ip
    limits: ["1000/s burst 1000"]
"""


def policy(fail: str = "open") -> str:
    return POLICY.format(fail=fail, limit=LIMIT_TEXT)


def start_replicas(specs: Sequence[dict[str, Any]]) -> list[ShieldProcess]:
    """Start one `scrapeshield run` per spec (ShieldProcess kwargs, `upstream` included) in parallel."""
    shields = [ShieldProcess(**spec) for spec in specs]
    with concurrent.futures.ThreadPoolExecutor(len(shields)) as pool:
        futures = [pool.submit(s.start) for s in shields]
        errors = [f.exception() for f in futures]
    if any(errors):
        stop_replicas(shields)
        raise next(e for e in errors if e is not None)
    return shields


def stop_replicas(shields: Sequence[ShieldProcess]) -> None:
    """Stop them all by pid, in parallel (each may take a moment to shut down)."""
    with concurrent.futures.ThreadPoolExecutor(max(1, len(shields))) as pool:
        list(pool.map(lambda s: s.stop(), shields))


def replica_spec(upstream: str, workdir: Path, store: str, fail: str = "open",
                 extra_args: Sequence[str] = ()) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    return {"upstream": upstream, "policy_text": policy(fail), "store": store, "workdir": workdir,
                "decision_log": workdir / "decisions.jsonl",
                "extra_args": ["--store-timeout", str(STORE_TIMEOUT), *extra_args]}


# --- what the shields say ------------------------------------------------------------------------

def status(shield: ShieldProcess) -> dict[str, Any]:
    response = httpx.get(f"{shield.admin_url}/status", trust_env=False, timeout=5.0)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def metric(shield: ShieldProcess, name: str) -> float:
    text = httpx.get(f"{shield.admin_url}/metrics", trust_env=False, timeout=5.0).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not in {shield.admin_url}/metrics")


_LOG_LINE = re.compile(r"^\S+ \S+ (?P<level>[A-Z]+) (?P<logger>[\w.]+): (?P<message>.*)$")


def log_lines(shield: ShieldProcess, containing: str, since: int = 0) -> list[str]:
    """Lines of the shield's stderr written by a logger (not the decision log) after byte `since`
    that contain `containing`."""
    text = shield.stderr_path.read_bytes()[since:].decode(errors="replace")
    return [line for line in text.splitlines()
            if (m := _LOG_LINE.match(line)) and containing in m.group("message")]


def stderr_size(shield: ShieldProcess) -> int:
    return shield.stderr_path.stat().st_size


OUTAGE_LOG = "shared store redis is unavailable"
RECOVERY_LOG = "shared store redis answers again"


# --- clients ----------------------------------------------------------------------------------------

@dataclass
class Sent:
    start: float  # time.monotonic() when the request was sent
    seconds: float
    status: int
    action: str | None  # Shield-Action
    replica: int
    path: str


@dataclass
class Trace:
    sent: list[Sent] = field(default_factory=list)

    @property
    def statuses(self) -> list[int]:
        return [s.status for s in self.sent]

    @property
    def allowed(self) -> int:
        return sum(s.status == 200 for s in self.sent)


def run_sequence(shields: Sequence[ShieldProcess], source_ip: str, path: str, n: int) -> Trace:
    """`n` GETs of `path` from `source_ip`, round robin over `shields` (one keep-alive client each)."""
    out = Trace()
    clients = [bind_client(source_ip, base_url=s.proxy_url, timeout=10.0) for s in shields]
    try:
        for i in range(n):
            replica = i % len(shields)
            t0 = time.monotonic()
            response = clients[replica].get(path)
            out.sent.append(Sent(t0, time.monotonic() - t0, response.status_code,
                                 response.headers.get("Shield-Action"), replica, path))
    finally:
        for client in clients:
            client.close()
    return out


def gcra_expectation(starts: Sequence[float], limit: BucketLimit = LIMIT) -> int:
    """How many of requests sent at `starts` (seconds) one GCRA bucket accepts: what one shared
    limit must let through, whichever replica each request went to."""
    tat: float | None = None
    allowed = 0
    for now in starts:
        new = conform(tat, now, limit)
        if new is not None:
            tat, allowed = new, allowed + 1
    return allowed


def redis_keys(server: RedisServer, pattern: str) -> list[str]:
    import redis

    client = redis.Redis.from_url(server.url, socket_timeout=5.0, decode_responses=True)
    try:
        return sorted(client.scan_iter(match=pattern, count=1000))
    finally:
        client.close()


# --- a client that never stops ----------------------------------------------------------------------

class SteadyClient:
    """Sends GETs one after another, round robin over `shields`, from `source_ip`, until stopped.
    Every answer is recorded with when it was sent and how long it took; a request that gets no
    answer at all within 10 s is recorded as status 0 (and fails the latency bound)."""

    def __init__(self, shields: list[ShieldProcess], source_ip: str, path: str = "/echo/busy/x") -> None:
        self.shields, self.source_ip, self.path = shields, source_ip, path
        self.sent: list[Sent] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        clients = [bind_client(self.source_ip, base_url=s.proxy_url, timeout=10.0) for s in self.shields]
        i = 0
        try:
            while not self._stop.is_set():
                replica = i % len(clients)
                i += 1
                t0 = time.monotonic()
                try:
                    response = clients[replica].get(self.path)
                    status_code, action = response.status_code, response.headers.get("Shield-Action")
                except httpx.HTTPError:
                    status_code, action = 0, None
                self.sent.append(Sent(t0, time.monotonic() - t0, status_code, action, replica, self.path))
        finally:
            for client in clients:
                client.close()

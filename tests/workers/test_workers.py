"""End to end: `scrapeshield run --workers 2` -- one port, two processes, one client per worker.

Real supervisor and worker processes on loopback; clients speak from chosen loopback addresses
(127.0.N.x: the /24 decides the worker, see workers/reuseport.py) and open a new connection per
request, so the kernel places every request afresh.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import PYTHON, REPO, ShieldProcess, subprocess_env
from scrapeshield.workers.reuseport import worker_for

pytestmark = pytest.mark.e2e

POLICY = """\
version: 1
name: e2e-workers
rules:
  - name: per-ip
    match: {path: [/echo/per-ip/*]}
    key: ip
    limits: ["1/m burst 4"]
  - name: placement
    match: {path: [/echo/placement/*]}
    key: ip
    limits: ["100000/s burst 100000"]
"""
PER_IP_BURST = 4
ALLOWED = "default/allow"  # a request no rule refuses is counted as the default decision

# Two /24s per worker: (127.0.N.0 >> 8) % 2 == N % 2.
WORKER_ADDRESSES = {0: ["127.0.2.2", "127.0.4.9"], 1: ["127.0.1.2", "127.0.3.7"]}


def fresh_get(url: str, source_ip: str, timeout: float = 10.0) -> httpx.Response:
    """One request on a connection of its own from `source_ip`."""
    transport = httpx.HTTPTransport(local_address=source_ip)
    with httpx.Client(transport=transport, trust_env=False, timeout=timeout) as client:
        return client.get(url, headers={"Connection": "close"})


def status(shield: ShieldProcess) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(f"{shield.admin_url}/status", trust_env=False, timeout=5).json()
    return result


def wait_workers_up(shield: ShieldProcess, restarts: int = 0, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        current = status(shield)
        workers = current["workers"]
        if all(w["up"] for w in workers) and sum(w["restarts"] for w in workers) >= restarts:
            return current
        if time.monotonic() > deadline:
            raise TimeoutError(f"workers not up: {workers}")
        time.sleep(0.1)


def decisions_of(worker: dict[str, Any], key: str) -> int:
    return int(worker["status"]["counters"]["decisions"].get(key, 0))


@pytest.fixture(scope="module")
def shield(demo_origin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShieldProcess]:
    workdir = tmp_path_factory.mktemp("workers")
    with ShieldProcess(demo_origin, policy_text=POLICY, workdir=workdir, extra_args=["--workers", "2"]) as running:
        wait_workers_up(running)
        yield running


# --- start-up ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", "257", ""])
def test_invalid_workers_value_is_refused_at_start_with_one_line(value: str, tmp_path: Path) -> None:
    argv = [PYTHON, "-m", "scrapeshield", "run", "--upstream", "http://127.0.0.1:9", "--workers", value,
            "--policy", str(REPO / "policies" / "default.yaml")]
    result = subprocess.run(argv, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("scrapeshield: cannot start: --workers must be a whole number from 1 to 256 or 'auto'")


# --- placement and limits ------------------------------------------------------------------------

def test_a_burst_from_one_address_gets_burst_plus_one_not_workers_times_that(shield: ShieldProcess) -> None:
    statuses = [fresh_get(f"{shield.proxy_url}/echo/per-ip/x", "127.0.5.5").status_code for _ in range(12)]
    assert statuses.count(200) == PER_IP_BURST + 1
    assert statuses[: PER_IP_BURST + 1] == [200] * (PER_IP_BURST + 1)


def test_addresses_of_different_24s_are_spread_over_both_workers(shield: ShieldProcess) -> None:
    before = [decisions_of(w, ALLOWED) for w in status(shield)["workers"]]
    sent = {0: 0, 1: 0}
    for worker, addresses in WORKER_ADDRESSES.items():
        for address in addresses:
            assert worker_for(address, 2) == worker
            for _ in range(3):
                assert fresh_get(f"{shield.proxy_url}/echo/placement/x", address).status_code == 200
                sent[worker] += 1
    workers = status(shield)["workers"]
    assert [decisions_of(w, ALLOWED) - before[w["index"]] for w in workers] == [sent[0], sent[1]]


def test_metrics_and_status_on_the_one_admin_port_are_the_sum_over_workers(shield: ShieldProcess) -> None:
    for address in (WORKER_ADDRESSES[0][0], WORKER_ADDRESSES[1][0]):
        assert fresh_get(f"{shield.proxy_url}/echo/placement/sum", address).status_code == 200
    current = status(shield)
    per_worker = [decisions_of(w, ALLOWED) for w in current["workers"]]
    assert all(count > 0 for count in per_worker)
    assert current["counters"]["decisions"][ALLOWED] == sum(per_worker)
    text = httpx.get(f"{shield.admin_url}/metrics", trust_env=False, timeout=5).text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    key = ("scrapeshield_decisions_total", (("action", "allow"), ("enforced", "true"), ("rule", "default")))
    assert samples[key] == sum(per_worker)
    assert samples[("scrapeshield_workers", (("state", "up"),))] == 2
    assert samples[("scrapeshield_worker_restarts_total", ())] == 0
    health = httpx.get(f"{shield.admin_url}/healthz", trust_env=False, timeout=5).json()
    assert health["workers_up"] == 2
    ready = httpx.get(f"{shield.admin_url}/readyz", trust_env=False, timeout=5)
    assert ready.status_code == 200 and ready.json()["workers_ready"] == 2


def test_the_control_api_reaches_every_worker(demo_origin: str, tmp_path: Path) -> None:
    token = tmp_path / "admin-token"
    token.write_text("s3cret-token-for-the-workers-test\n")
    token.chmod(0o600)
    with ShieldProcess(demo_origin, policy_text=POLICY, workdir=tmp_path,
                       extra_args=["--workers", "2", "--admin-token-file", str(token)]) as shield:
        wait_workers_up(shield)
        auth = {"Authorization": "Bearer s3cret-token-for-the-workers-test"}
        banned = [WORKER_ADDRESSES[0][1], WORKER_ADDRESSES[1][1]]
        for address in banned:
            response = httpx.post(f"{shield.admin_url}/api/bans", json={"key": address, "duration": "60s"},
                                  headers=auth, trust_env=False, timeout=5)
            assert response.status_code in (200, 201), response.text
        for address in banned:
            assert fresh_get(f"{shield.proxy_url}/echo/placement/banned", address).status_code == 403
        assert fresh_get(f"{shield.proxy_url}/echo/placement/ok", WORKER_ADDRESSES[0][0]).status_code == 200


# --- faults and signals --------------------------------------------------------------------------

def test_a_worker_killed_under_load_is_restarted_and_the_other_keeps_serving(
        demo_origin: str, tmp_path: Path) -> None:
    with ShieldProcess(demo_origin, policy_text=POLICY, workdir=tmp_path, extra_args=["--workers", "2"]) as shield:
        before = wait_workers_up(shield)
        victim = before["workers"][1]["pid"]
        results: dict[int, list[int]] = {0: [], 1: []}
        stop = threading.Event()

        def load(worker: int, address: str) -> None:
            while not stop.is_set():
                try:
                    # a queued connection waits for the restarted worker: a slow start on a busy host
                    # must not count as a lost request
                    code = fresh_get(f"{shield.proxy_url}/echo/placement/load", address, timeout=60).status_code
                except httpx.HTTPError:
                    code = 0
                results[worker].append(code)

        threads = [threading.Thread(target=load, args=(w, a)) for w, addrs in WORKER_ADDRESSES.items() for a in addrs]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        after = wait_workers_up(shield, restarts=1)
        time.sleep(0.5)
        stop.set()
        for thread in threads:
            thread.join(15)

        assert after["workers"][1]["pid"] != victim
        assert after["workers"][1]["restarts"] == 1 and after["workers"][0]["restarts"] == 0
        assert results[0] and set(results[0]) == {200}, "the surviving worker's clients lost requests"
        # Only the requests in flight on the killed worker at that instant may fail (one per client);
        # connections that arrived meanwhile waited in its socket's queue for the new worker.
        failed = [code for code in results[1] if code != 200]
        assert len(failed) <= len(WORKER_ADDRESSES[1]), results[1]
        assert results[1][-1] == 200


def test_a_hung_worker_is_killed_and_restarted(demo_origin: str, tmp_path: Path) -> None:
    """SIGSTOP stands in for a worker whose event loop never comes back (a deadlock, a runaway
    computation): its admin port stops answering, the supervisor kills it and starts a new one,
    and the clients it had get answers again without anyone restarting the shield."""
    with ShieldProcess(demo_origin, policy_text=POLICY, workdir=tmp_path,
                       extra_args=["--workers", "2", "--worker-hang-timeout", "2"]) as shield:
        before = wait_workers_up(shield)
        victim = before["workers"][1]["pid"]
        os.kill(victim, signal.SIGSTOP)
        try:
            after = wait_workers_up(shield, restarts=1, timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGCONT)
        assert after["workers"][1]["pid"] != victim and after["workers"][1]["hangs"] == 1
        others = [{k: v for k, v in w.items() if k != "status"} for w in after["workers"]]
        assert after["workers"][0]["restarts"] == 0 and after["workers"][0]["hangs"] == 0, others
        for address in WORKER_ADDRESSES[1]:
            assert fresh_get(f"{shield.proxy_url}/echo/placement/after", address).status_code == 200
        assert "has not answered for" in shield.log_text()
        metrics = httpx.get(f"{shield.admin_url}/metrics", trust_env=False, timeout=5).text
        assert "scrapeshield_worker_hangs_total 1.0" in metrics


class _SlowOrigin(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(1.5)
        body = b"slow and complete\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def slow_origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowOrigin)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_sighup_reaches_every_worker(demo_origin: str, tmp_path: Path) -> None:
    with ShieldProcess(demo_origin, policy_text=POLICY, workdir=tmp_path,
                       extra_args=["--workers", "2", "--reload-interval", "0"]) as shield:
        before = wait_workers_up(shield)
        old = {w["status"]["policy"]["version"] for w in before["workers"]}
        shield.policy.write_text(POLICY.replace("e2e-workers", "e2e-workers-reloaded"))
        assert shield.pid is not None
        os.kill(shield.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while True:
            workers = status(shield)["workers"]
            versions = {w["status"]["policy"]["version"] for w in workers if w["status"]}
            if len(workers) == 2 and all(w["status"]["counters"]["reloads_ok"] == 1 for w in workers):
                break
            assert time.monotonic() < deadline, workers
            time.sleep(0.1)
        assert len(versions) == 1 and versions != old
        assert {w["status"]["policy"]["name"] for w in workers} == {"e2e-workers-reloaded"}


def test_sigterm_lets_in_flight_requests_finish_on_every_worker(slow_origin: str, tmp_path: Path) -> None:
    with ShieldProcess(slow_origin, policy_text=POLICY, workdir=tmp_path, extra_args=["--workers", "2"]) as shield:
        wait_workers_up(shield)
        answers: dict[str, Any] = {}

        def get(address: str) -> None:
            try:
                answers[address] = fresh_get(f"{shield.proxy_url}/slow", address)
            except httpx.HTTPError as exc:
                answers[address] = exc

        addresses = [WORKER_ADDRESSES[0][0], WORKER_ADDRESSES[1][0]]
        threads = [threading.Thread(target=get, args=(a,)) for a in addresses]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # both requests are at the origin now
        assert shield.process is not None
        shield.process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(10)
        assert shield.process.wait(15) == 0
        for address in addresses:
            answer = answers[address]
            assert isinstance(answer, httpx.Response), answer
            assert answer.status_code == 200 and answer.text == "slow and complete\n"
        with pytest.raises(httpx.ConnectError):
            fresh_get(f"{shield.proxy_url}/echo/placement/late", addresses[0], timeout=2)


SHARED_POLICY = """\
version: 1
name: e2e-workers-shared
rules:
  - name: per-host
    match: {path: [/echo/shared/*]}
    key: host
    limits: ["1/m burst 3"]
"""


def test_a_key_spanning_addresses_is_shared_by_the_workers_through_the_store(
        demo_origin: str, tmp_path: Path) -> None:
    from redis_server import start_or_fail

    redis = start_or_fail()
    try:
        with ShieldProcess(demo_origin, policy_text=SHARED_POLICY, workdir=tmp_path, store=redis.url,
                           extra_args=["--workers", "2", "--store-timeout", "1"]) as shield:
            wait_workers_up(shield)
            sources = [WORKER_ADDRESSES[n % 2][0] for n in range(10)]  # alternating workers
            statuses = [fresh_get(f"{shield.proxy_url}/echo/shared/x", s).status_code for s in sources]
    finally:
        redis.close()
    assert statuses.count(200) == 3 + 1  # burst + 1 over both workers, not per worker

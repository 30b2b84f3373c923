"""Redis at proxy speed, against real `scrapeshield run` replicas and a real redis-server, with the
DEFAULT `--store-timeout`: two fresh replicas share one limit from their first request; a burst of
concurrent requests from many addresses on a healthy Redis is never refused under `fail: closed`;
a replica that cannot reach Redis at start says so once, follows the fail mode, and recovers.
"""
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis_e2e_tools import (
    OUTAGE_LOG,
    RECOVERY_LOG,
    gcra_expectation,
    log_lines,
    policy,
    run_sequence,
    start_replicas,
    status,
    stop_replicas,
)

from harness import ShieldProcess
from redis_server import RedisServer, _free_port, start_or_fail

pytestmark = pytest.mark.e2e

BURST = 500  # concurrent requests (the benchmark goes to 1,000)
ADDRESSES = 125


def default_timeout_spec(upstream: str, workdir: Path, store: str, fail: str) -> dict[str, object]:
    workdir.mkdir(parents=True, exist_ok=True)
    return {"upstream": upstream, "policy_text": policy(fail), "store": store, "workdir": workdir,
            "decision_log": workdir / "decisions.jsonl", "extra_args": ["--log-level", "info"]}


@pytest.fixture(scope="module")
def fresh_pair(redis_tcp_unix: RedisServer, demo_origin: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ShieldProcess, ShieldProcess]]:
    root = tmp_path_factory.mktemp("speed")
    a, b = start_replicas([default_timeout_spec(demo_origin, root / n, redis_tcp_unix.url, "closed") for n in "ab"])
    try:
        yield a, b
    finally:
        stop_replicas([a, b])


def test_two_fresh_replicas_share_one_limit_from_the_first_request(
        fresh_pair: tuple[ShieldProcess, ShieldProcess]) -> None:
    # given two replicas that have served nothing yet, on the default store timeout
    # when one client alternates between them from the very first request
    trace = run_sequence(list(fresh_pair), "127.0.3.1", "/echo/limited/p", 30)
    # then together they let through exactly what one shared bucket allows
    assert trace.allowed == gcra_expectation([s.start for s in trace.sent])
    assert all(status(s)["store"]["outages"] == 0 for s in fresh_pair)


async def burst(shields: list[ShieldProcess], n: int, addresses: int) -> list[int]:
    clients = [httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=f"127.0.4.{i + 1}"),
                                 base_url=shields[i % len(shields)].proxy_url, timeout=60.0, trust_env=False,
                                 limits=httpx.Limits(max_connections=None))
               for i in range(addresses)]
    try:
        answers = await asyncio.gather(*(clients[i % addresses].get(f"/echo/busy/{i}") for i in range(n)))
        return [r.status_code for r in answers]
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


def test_a_burst_on_a_healthy_redis_is_never_refused_when_failing_closed(
        fresh_pair: tuple[ShieldProcess, ShieldProcess]) -> None:
    # given two fail-closed replicas on a healthy Redis
    # when 500 requests from 125 addresses arrive at once
    statuses = asyncio.run(burst(list(fresh_pair), BURST, ADDRESSES))
    # then every one is served, and no replica saw a failed store call
    assert statuses.count(200) == BURST, {s: statuses.count(s) for s in set(statuses)}
    for shield in fresh_pair:
        store = status(shield)["store"]
        assert (store["outages"], store["failed_calls"], store["errors"]) == (0, 0, 0)


def test_a_replica_that_cannot_reach_redis_at_start_says_so_once_and_recovers(
        demo_origin: str, tmp_path: Path) -> None:
    # given a replica started (fail: closed) while nothing listens on its Redis port
    port = _free_port()
    [shield] = start_replicas([default_timeout_spec(demo_origin, tmp_path / "r", f"redis://127.0.0.1:{port}/0",
                                                    "closed")])
    server: RedisServer | None = None
    try:
        # then it started, said so once, and refuses requests meanwhile (fail: closed)
        trace = run_sequence([shield], "127.0.3.2", "/echo/busy/x", 5)
        assert all(s != 200 for s in trace.statuses)
        lines = log_lines(shield, OUTAGE_LOG)
        assert len(lines) == 1 and "at start" in lines[0] and "fail: closed" in lines[0]
        # when Redis comes up on that port
        server = start_or_fail(port=port, workdir=tmp_path / "redis")
        # then within a couple of probes it serves again, and says that once too
        for _ in range(40):
            if run_sequence([shield], "127.0.3.2", "/echo/busy/y", 1).statuses == [200]:
                break
            asyncio.run(asyncio.sleep(0.1))
        assert run_sequence([shield], "127.0.3.2", "/echo/busy/z", 3).statuses == [200, 200, 200]
        assert len(log_lines(shield, RECOVERY_LOG)) == 1
        assert len(log_lines(shield, OUTAGE_LOG)) == 1
    finally:
        stop_replicas([shield])
        if server is not None:
            server.close()


def test_an_invalid_cluster_url_is_refused_at_start_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(policy("open"))
    done = subprocess.run([sys.executable, "-m", "scrapeshield", "run", "--upstream", "http://127.0.0.1:9",
                           "--store", "redis+cluster://10.0.0.1,x:1",
                           "--policy", str(policy_file), "--admin", "", "--listen", "127.0.0.1:0"],
                          capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2] / "addons")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "scrapeshield: cannot start: --store: store URL 'redis+cluster://10.0.0.1,x:1': '10.0.0.1' is not host:port "
        "(expected redis+cluster://host:port,host:port,...)"]

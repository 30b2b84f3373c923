"""End to end: the Redis master under running shields dies, and a replica takes over.

Two deployments the store URL supports, each with real processes:

- a Redis Cluster of 3 masters and 3 replicas (`redis+cluster://`, `cluster-node-timeout` 1 s):
  the master serving the shields' hash slot is killed (SIGKILL) and the cluster promotes its
  replica;
- a primary and its replica watched by Redis Sentinel (`redis+sentinel://`, `down-after` 1 s):
  the primary is killed and the sentinel promotes the replica.

Under each, two `scrapeshield run` replicas share the store: O with `fail: open`, C with `fail:
closed`, and a client sends requests to both without pause. While the master is gone O serves
every request (on local state) and C refuses them (403, `Shield-Action: block`); each logs the
outage once and its recovery once. Once the replica is promoted, both find it by themselves --
no restart, no new process -- and serve from the shared store again: C accepts requests, and a
limit spent through O is the limit C sees.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from redis.crc import key_slot
from redis_e2e_tools import (
    LIMIT,
    REQUEST_BOUND,
    SteadyClient,
    log_lines,
    replica_spec,
    run_sequence,
    start_replicas,
    status,
    stop_replicas,
)

from harness import ShieldProcess
from redis_server import RedisServer, SentinelServer, start_cluster_or_fail, start_or_fail, start_replica_or_fail

pytestmark = pytest.mark.e2e

OUTAGE_LOG = "is unavailable"  # "shared store redis-cluster is unavailable (...)"
RECOVERY_LOG = "answers again after"
DETECT_SECONDS = 3.0  # a refused connection is known at once; plus scheduling slack
FAILOVER_SECONDS = 20.0  # node timeout / down-after (1 s), election, promotion, plus a loaded machine


def shields_on(store_url: str, root: Path, demo_origin: str) -> tuple[ShieldProcess, ShieldProcess]:
    o, c = start_replicas([replica_spec(demo_origin, root / "open", store_url, fail="open"),
                           replica_spec(demo_origin, root / "closed", store_url, fail="closed")])
    return o, c


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> float:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} not within {seconds:g}s"
        time.sleep(0.05)
    return time.monotonic()


def degraded(shield: ShieldProcess) -> bool:
    return bool(status(shield)["store"]["degraded"])


def fail_over(o: ShieldProcess, c: ShieldProcess, kill: Callable[[], None], promoted: Callable[[], bool],
              source_ip: str) -> None:
    """Kill the master under traffic to both shields; check the fail modes, the logs and the recovery."""
    since = {s: s.stderr_path.stat().st_size for s in (o, c)}
    assert run_sequence([o, c], source_ip, "/echo/busy/x", 4).statuses == [200] * 4
    with SteadyClient([o], "127.0.3.10") as to_open, SteadyClient([c], "127.0.3.11") as to_closed:
        time.sleep(0.3)  # normal traffic first
        began = time.monotonic()
        kill()
        wait_for(lambda: degraded(o) and degraded(c), DETECT_SECONDS, "both shields in an outage")
        down = time.monotonic()
        wait_for(promoted, FAILOVER_SECONDS, "a replica promoted")
        wait_for(lambda: not degraded(o) and not degraded(c), FAILOVER_SECONDS, "both shields recovered")
        recovered = time.monotonic()
        time.sleep(0.3)  # and normal traffic again

    # fail: open served every request, fail: closed refused them while the master was gone
    assert to_open.sent and all(s.status == 200 for s in to_open.sent), sorted({s.status for s in to_open.sent})
    refused = [s for s in to_closed.sent if s.start > down and s.start + s.seconds < recovered - 1.0]
    # (a request sent in the last second may have found the new master before /status said so)
    assert refused and all((s.status, s.action) == (403, "block") for s in refused), \
        [(round(s.start - began, 2), s.status) for s in refused]
    assert all(s.status == 200 for s in to_closed.sent if s.start + s.seconds < began), "refused before the kill"
    after = [s for s in to_closed.sent if s.start > recovered]
    assert after and all(s.status == 200 for s in after), [s.status for s in after]
    slow = [s for s in to_open.sent + to_closed.sent if s.seconds >= REQUEST_BOUND]
    assert not slow, f"requests over {REQUEST_BOUND}s: {slow}"
    for shield in (o, c):
        assert shield.process is not None and shield.process.poll() is None  # the same process throughout
        logged = shield.stderr_path.read_bytes()[since[shield]:].decode(errors="replace")
        assert "Traceback" not in logged and " ERROR " not in logged, logged[-3000:]
        assert len(log_lines(shield, OUTAGE_LOG, since[shield])) == 1, logged[-3000:]
        assert len(log_lines(shield, RECOVERY_LOG, since[shield])) == 1, logged[-3000:]
        assert status(shield)["store"]["outages"] >= 1

    # Shared again, on the promoted replica: a budget spent through O is spent for C too.
    trace = run_sequence([o, c], source_ip, "/echo/limited/p", LIMIT.burst + 4)
    assert trace.allowed == LIMIT.burst + 1, trace.statuses


@pytest.fixture
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("failover")


def test_cluster_master_killed_replica_promoted(demo_origin: str, root: Path) -> None:
    cluster = start_cluster_or_fail(replicas_per_master=1, workdir=root / "cluster")
    try:
        o, c = shields_on(cluster.url, root, demo_origin)
        try:
            slot = key_slot(b"{ss}")  # every key of the shields carries this hash tag
            master = cluster.owner(slot)
            replica = cluster.replica_of(master)
            assert [s["store"]["backend"] for s in (status(o), status(c))] == ["redis-cluster"] * 2

            def promoted() -> bool:
                try:
                    return cluster.owner(slot) is replica
                except Exception:  # a node asked mid-election
                    return False

            fail_over(o, c, master.kill, promoted, "127.0.3.1")
        finally:
            stop_replicas([o, c])
    finally:
        cluster.close()


def test_sentinel_primary_killed_replica_promoted(demo_origin: str, root: Path) -> None:
    primary = start_or_fail(workdir=root / "primary", extra_args=("--repl-diskless-sync-delay", "0"))
    servers: list[RedisServer | SentinelServer] = [primary]
    try:
        replica = start_replica_or_fail(primary, workdir=root / "replica")
        servers.append(replica)
        sentinel = SentinelServer(primary, root / "sentinel").start()
        servers.append(sentinel)
        sentinel.wait_replicas(1)
        o, c = shields_on(sentinel.url, root, demo_origin)
        try:
            assert [s["store"]["backend"] for s in (status(o), status(c))] == ["redis-sentinel"] * 2
            fail_over(o, c, primary.kill, lambda: sentinel.primary_port() == replica.port, "127.0.3.2")
        finally:
            stop_replicas([o, c])
    finally:
        for server in reversed(servers):
            server.close()

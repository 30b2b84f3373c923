"""End to end: replicas of `scrapeshield run` on one real Redis share limits and bans.

One redis-server (loopback TCP port and a unix socket) and three replicas, each on its own
ports: A and B reach Redis over TCP (`redis://127.0.0.1:PORT/0`), C over the unix socket
(`unix:///.../redis.sock?db=0`). A client that spreads its requests over the replicas must get
ONE budget -- on memory:// each replica would grant it a whole budget of its own.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_e2e_tools import (
    LIMIT,
    LIMIT_TEXT,
    gcra_expectation,
    redis_keys,
    replica_spec,
    run_sequence,
    start_replicas,
    status,
    stop_replicas,
)

from harness import ShieldProcess, bind_client
from redis_server import RedisServer

pytestmark = pytest.mark.e2e

N_REQUESTS = 60


@pytest.fixture(scope="module")
def replicas(redis_tcp_unix: RedisServer, demo_origin: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ShieldProcess, ShieldProcess, ShieldProcess]]:
    root = tmp_path_factory.mktemp("shared")
    a, b, c = start_replicas([
        replica_spec(demo_origin, root / "a", redis_tcp_unix.url),
        replica_spec(demo_origin, root / "b", redis_tcp_unix.url),
        replica_spec(demo_origin, root / "c", redis_tcp_unix.unix_url),
    ])
    try:
        yield a, b, c
    finally:
        stop_replicas([a, b, c])


def decision_lines(shield: ShieldProcess) -> list[dict[str, object]]:
    path = Path(str(shield.decision_log))
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- one limit, whichever replica a request goes to -----------------------------------------------

def test_a_client_alternating_between_two_replicas_meets_one_shared_limit(
        replicas: tuple[ShieldProcess, ShieldProcess, ShieldProcess], redis_tcp_unix: RedisServer) -> None:
    a, b, _ = replicas
    single = run_sequence([a], "127.0.1.1", "/echo/limited/p", N_REQUESTS)
    pair = run_sequence([a, b], "127.0.1.2", "/echo/limited/p", N_REQUESTS)

    expected_single = gcra_expectation([s.start for s in single.sent])
    expected_pair = gcra_expectation([s.start for s in pair.sent])
    # "1/m burst 9" grants its burst + 1 = 10 at once, and nothing more within a minute.
    assert expected_single == expected_pair == LIMIT.burst + 1, f"{LIMIT_TEXT}: the sequences took too long"
    assert single.allowed == expected_single, single.statuses
    assert pair.allowed == expected_pair == single.allowed, pair.statuses  # on memory:// it would be 2 x 10
    assert pair.statuses == [200] * pair.allowed + [429] * (N_REQUESTS - pair.allowed)
    # Both replicas granted part of the budget, and both refused once it was spent.
    assert {s.replica for s in pair.sent if s.status == 200} == {0, 1}
    assert {s.replica for s in pair.sent if s.status == 429} == {0, 1}
    assert all(s.action == "throttle" for s in pair.sent if s.status == 429)

    # The budget lives in Redis, under the client's key.
    keys = redis_keys(redis_tcp_unix, "ss:b:*")
    assert any(k.endswith("127.0.1.2") for k in keys), keys
    for shield in (a, b):
        store = status(shield)["store"]
        assert store["backend"] == "redis" and store["degraded"] is False and store["errors"] == 0
        assert store["round_trips"] > 0


def test_a_unix_socket_replica_shares_the_limit_with_tcp_replicas(
        replicas: tuple[ShieldProcess, ShieldProcess, ShieldProcess]) -> None:
    a, b, c = replicas
    assert str(status(c)["store"]["url"]).startswith("unix:")

    unix_only = run_sequence([c], "127.0.1.3", "/echo/limited/p", N_REQUESTS)
    mixed = run_sequence([a, c, b], "127.0.1.4", "/echo/limited/p", N_REQUESTS)

    expected = gcra_expectation([s.start for s in unix_only.sent])
    assert expected == gcra_expectation([s.start for s in mixed.sent]) == LIMIT.burst + 1
    assert unix_only.allowed == expected, unix_only.statuses
    assert mixed.allowed == expected, mixed.statuses  # one budget over three replicas, two transports
    assert {s.replica for s in mixed.sent if s.status == 200} == {0, 1, 2}
    assert status(c)["store"]["errors"] == 0


# --- bans ---------------------------------------------------------------------------------------------

def test_a_ban_set_through_one_replica_is_honoured_by_the_others(
        replicas: tuple[ShieldProcess, ShieldProcess, ShieldProcess], redis_tcp_unix: RedisServer) -> None:
    a, b, c = replicas
    with bind_client("127.0.1.10", base_url=a.proxy_url) as client:
        first = client.get("/echo/ban-me/x")
    assert first.status_code == 403 and first.headers["Shield-Action"] == "block"
    key = next(d["key"] for d in decision_lines(a) if d["client"] == "127.0.1.10")  # e.g. "ip=127.0.1.10"
    assert redis_keys(redis_tcp_unix, "ss:ban:*") == [f"ss:ban:{key}"]

    for other in (b, c):  # never saw this client before: only Redis can tell them
        with bind_client("127.0.1.10", base_url=other.proxy_url) as client:
            banned = client.get("/echo/busy/x")
        assert banned.status_code == 403 and banned.headers["Shield-Action"] == "block"
        with bind_client("127.0.1.11", base_url=other.proxy_url) as client:
            assert client.get("/echo/busy/x").status_code == 200  # another client passes
        lines = [d for d in decision_lines(other) if d["client"] == "127.0.1.10"]
        assert [(d["rule"], d["action"], d["key"]) for d in lines] == [("ban", "block", key)]


def test_a_ban_from_an_exceeded_limit_on_one_replica_holds_on_another(
        replicas: tuple[ShieldProcess, ShieldProcess, ShieldProcess]) -> None:
    a, b, _ = replicas
    spent = run_sequence([a], "127.0.1.12", "/echo/limit-ban/x", 4)  # "1/m burst 2", then ban: 5m
    assert spent.statuses == [200, 200, 200, 429]

    with bind_client("127.0.1.12", base_url=b.proxy_url) as client:
        elsewhere = client.get("/echo/busy/x")  # another rule, another replica: still banned
    assert elsewhere.status_code == 403 and elsewhere.headers["Shield-Action"] == "block"
    assert [d["rule"] for d in decision_lines(b) if d["client"] == "127.0.1.12"] == ["ban"]

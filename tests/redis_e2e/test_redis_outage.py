"""End to end: Redis goes away (SIGKILL) or hangs (SIGSTOP) under replicas that keep serving.

One redis-server, two replicas with `fail: open` (A, B) and one with `fail: closed` (C), all
with `--store-timeout 0.25`. In every test a client sends requests without pause while Redis is
killed and restarted on the same port, or stopped and continued. Whatever Redis does:

- no request takes longer than REQUEST_BOUND (2 s) and none gets a 5xx; the shields stay up;
- `fail: open` replicas pass the requests on their local state (limits per replica), `fail:
  closed` ones refuse them (403, `Shield-Action: block`);
- each outage is logged once and its recovery once, counted in /metrics
  (`scrapeshield_store_outages_total` +1, `scrapeshield_store_degraded` 1 then 0) and visible in
  /status while it lasts;
- afterwards the replicas share their limits through Redis again.

Redis runs without persistence (`--save ""`); the kill test takes one `SAVE` snapshot just
before the kill, so the restarted server has the old state too and a limit spent before the
outage is still spent after it.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import redis
from redis_e2e_tools import (
    LIMIT,
    OUTAGE_LOG,
    RECOVERY_LOG,
    REQUEST_BOUND,
    STORE_TIMEOUT,
    Sent,
    SteadyClient,
    gcra_expectation,
    log_lines,
    metric,
    redis_keys,
    replica_spec,
    run_sequence,
    start_replicas,
    status,
    stderr_size,
    stop_replicas,
)

from harness import ShieldProcess, bind_client
from redis_server import RedisServer, start_or_fail

pytestmark = pytest.mark.e2e

OUTAGE_SECONDS = 4.0  # how long Redis stays away: more than detection (DETECT_SECONDS) + the 1 s between probes
# A hung server is declared down by a health probe of max(1 s, 2 x timeout) after the first timeout,
# or by three timeouts in a row with nothing answered meanwhile.
DETECT_SECONDS = 3.0  # plus scheduling slack on a loaded machine
RECOVERY_TIMEOUT = 6.0


@dataclass
class Shields:
    redis: RedisServer
    a: ShieldProcess  # fail: open
    b: ShieldProcess  # fail: open
    c: ShieldProcess  # fail: closed


@pytest.fixture(scope="module")
def shields(demo_origin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shields]:
    root = tmp_path_factory.mktemp("outage")
    server = start_or_fail(workdir=root / "redis")
    try:
        a, b, c = start_replicas([
            replica_spec(demo_origin, root / "a", server.url, fail="open"),
            replica_spec(demo_origin, root / "b", server.url, fail="open"),
            replica_spec(demo_origin, root / "c", server.url, fail="closed"),
        ])
    except BaseException:
        server.close()
        raise
    try:
        yield Shields(server, a, b, c)
    finally:
        stop_replicas([a, b, c])
        server.close()


@dataclass
class Outage:
    """What happened around one outage; monotonic times."""

    began: float = 0.0  # Redis killed / stopped
    ended: float = 0.0  # Redis restarted / continued
    recovered: float = 0.0  # every replica reported `degraded: false` again
    during: dict[str, dict] = field(default_factory=dict)  # replica name -> /status "store" during the outage
    degraded_gauge: dict[str, float] = field(default_factory=dict)


def go_through_outage(replicas: dict[str, ShieldProcess], client: SteadyClient, begin: Callable[[], None],
                      end: Callable[[], None], while_down: Callable[[], None] | None = None) -> Outage:
    out = Outage()
    time.sleep(0.4)  # normal traffic first
    out.began = time.monotonic()
    begin()
    for name, shield in replicas.items():  # the client's next requests find out, each replica on its own
        deadline = out.began + DETECT_SECONDS
        while not (store := status(shield)["store"])["degraded"] and time.monotonic() < deadline:
            time.sleep(0.05)
        out.during[name] = store
        out.degraded_gauge[name] = metric(shield, "scrapeshield_store_degraded")
    if while_down is not None:
        while_down()
    time.sleep(max(0.0, out.began + OUTAGE_SECONDS - time.monotonic()))
    out.ended = time.monotonic()
    end()
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while any(status(s)["store"]["degraded"] for s in replicas.values()):
        assert time.monotonic() < deadline, f"no recovery within {RECOVERY_TIMEOUT}s of the restart"
        time.sleep(0.1)
    out.recovered = time.monotonic()
    time.sleep(0.3)  # and normal traffic again
    return out


@dataclass
class Before:
    stderr: dict[str, int]
    outages: dict[str, float]


def before(replicas: dict[str, ShieldProcess]) -> Before:
    return Before({n: stderr_size(s) for n, s in replicas.items()},
                  {n: metric(s, "scrapeshield_store_outages_total") for n, s in replicas.items()})


def check_common(replicas: dict[str, ShieldProcess], client: SteadyClient, out: Outage, was: Before,
                 fail_mode: str) -> None:
    """What must hold for every outage, whatever the fail mode."""
    sent = client.sent
    assert len(sent) >= 20, f"the client sent only {len(sent)} requests"
    slow = [s for s in sent if s.seconds >= REQUEST_BOUND]
    assert not slow, f"requests over {REQUEST_BOUND}s: {slow}"
    assert all(s.status in (200, 403) for s in sent), sorted({s.status for s in sent})  # no 5xx, no 0
    for name, shield in replicas.items():
        assert shield.process is not None and shield.process.poll() is None, f"{name} exited"
        logged = shield.stderr_path.read_bytes()[was.stderr[name]:].decode(errors="replace")
        assert "Traceback" not in logged and " ERROR " not in logged, logged[-3000:]
        during = out.during[name]
        assert during["degraded"] is True and during["fail_mode"] == fail_mode, during
        assert during["outages"] >= 1 and during["last_error"], during
        assert out.degraded_gauge[name] == 1.0
        # Logged once (not once per request), and the recovery once.
        assert len(log_lines(shield, OUTAGE_LOG, was.stderr[name])) == 1, shield.stderr_path.read_text()[-3000:]
        assert len(log_lines(shield, RECOVERY_LOG, was.stderr[name])) == 1, shield.stderr_path.read_text()[-3000:]
        assert metric(shield, "scrapeshield_store_outages_total") == was.outages[name] + 1
        assert metric(shield, "scrapeshield_store_degraded") == 0.0
        after = status(shield)["store"]
        assert after["degraded"] is False and after["outages"] == during["outages"]
    # Requests went on throughout: some while Redis was away, some after the recovery.
    assert len([s for s in sent if out.began < s.start and s.start + s.seconds < out.ended]) >= 5
    assert [s for s in sent if s.start > out.recovered], "no request after the recovery"


def down_window(client: SteadyClient, out: Outage) -> list[Sent]:
    """Requests sent after the first one that found Redis gone, and answered before it was back."""
    return [s for s in client.sent if out.began + 0.05 < s.start and s.start + s.seconds < out.ended]


def shared_again(a: ShieldProcess, b: ShieldProcess, server: RedisServer, source_ip: str) -> None:
    """After the recovery, a client alternating between A and B meets one limit, kept in Redis."""
    trace = run_sequence([a, b], source_ip, "/echo/limited/p", 30)
    assert trace.allowed == gcra_expectation([s.start for s in trace.sent]) == LIMIT.burst + 1, trace.statuses
    assert any(k.endswith(source_ip) for k in redis_keys(server, "ss:b:*"))


# --- fail: open ------------------------------------------------------------------------------------------

def test_fail_open_redis_killed_and_restarted(shields: Shields) -> None:
    server, a, b = shields.redis, shields.a, shields.b
    replicas = {"a": a, "b": b}
    port = server.port
    # A client spends its whole budget through A before the outage.
    spent = run_sequence([a], "127.0.2.1", "/echo/limited/p", LIMIT.burst + 2)
    assert spent.statuses == [200] * (LIMIT.burst + 1) + [429]
    was = before(replicas)
    local: list[int] = []

    def kill() -> None:
        redis.Redis.from_url(server.url, socket_timeout=5.0).save()  # persistence: a snapshot just before
        server.kill()

    def restart() -> None:
        server.start()
        assert server.port == port

    def while_down() -> None:
        # Local state: each replica now enforces the limit on its own, so a client alternating
        # between the two gets a budget from each.
        local.append(run_sequence([a, b], "127.0.2.2", "/echo/limited/p", 30).allowed)

    with SteadyClient([a, b], "127.0.2.3") as client:
        out = go_through_outage(replicas, client, kill, restart, while_down)

    check_common(replicas, client, out, was, "open")
    assert all(s.status == 200 for s in client.sent), [s.status for s in client.sent]  # fail open: all passed
    assert status(a)["counters"]["engine_errors"] == status(b)["counters"]["engine_errors"] == 0
    assert local == [2 * (LIMIT.burst + 1)]
    shared_again(a, b, server, "127.0.2.4")
    # The old state is back too (from the snapshot): B never saw this client, only Redis knows it.
    with bind_client("127.0.2.1", base_url=b.proxy_url) as c:
        refused = c.get("/echo/limited/p")
    assert refused.status_code == 429 and refused.headers["Shield-Action"] == "throttle"


def test_fail_open_redis_hung_then_continued(shields: Shields) -> None:
    server, a, b = shields.redis, shields.a, shields.b
    replicas = {"a": a, "b": b}
    was = before(replicas)
    with SteadyClient([a, b], "127.0.2.5") as client:
        out = go_through_outage(replicas, client, server.pause, server.resume)

    check_common(replicas, client, out, was, "open")
    assert all(s.status == 200 for s in client.sent), [s.status for s in client.sent]
    # A hung Redis costs a request at most the store timeout (the first one, and each probe).
    assert max(s.seconds for s in down_window(client, out)) < STORE_TIMEOUT + 0.75
    assert "no answer within" in str(out.during["a"]["last_error"])
    shared_again(a, b, server, "127.0.2.6")


# --- fail: closed -------------------------------------------------------------------------------------

def check_closed(client: SteadyClient, out: Outage) -> None:
    down = down_window(client, out)
    assert down and all(s.status == 403 and s.action == "block" for s in down), [(s.status, s.action) for s in down]
    early = [(round(s.start - out.began, 3), s.seconds, s.status) for s in client.sent
             if s.start + s.seconds < out.began and s.status != 200]
    assert not early, f"refused before the outage: {early}"
    assert all(s.status == 200 for s in client.sent if s.start > out.recovered), "refused after the recovery"


def test_fail_closed_redis_killed_and_restarted(shields: Shields) -> None:
    server, c = shields.redis, shields.c
    port = server.port
    was = before({"c": c})
    with SteadyClient([c], "127.0.2.7") as client:
        out = go_through_outage({"c": c}, client, server.kill,
                                lambda: (server.start(), None)[1])
    assert server.port == port
    check_common({"c": c}, client, out, was, "closed")
    check_closed(client, out)


def test_fail_closed_redis_hung_then_continued(shields: Shields) -> None:
    server, c = shields.redis, shields.c
    was = before({"c": c})
    with SteadyClient([c], "127.0.2.8") as client:
        out = go_through_outage({"c": c}, client, server.pause, server.resume)
    check_common({"c": c}, client, out, was, "closed")
    check_closed(client, out)
    assert max(s.seconds for s in down_window(client, out)) < STORE_TIMEOUT + 0.75

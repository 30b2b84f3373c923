"""Store throughput: decisions per second of `apply`, memory against a real Redis.

    PYTHONPATH=addons .venv/bin/python bench/bench_store.py [--seconds 3] [--concurrency 50]

Starts its own redis-server (loopback, no persistence). Each request is a realistic batch: two
ban keys, four buckets (two rules of two limits each, like policies/default.yaml) and one score,
for a client drawn from 10,000 addresses, so most requests are allowed. A second workload has
every request come from 100 already banned clients, where the local cache answers.

Prints per case: decisions/s and latency percentiles (wall clock: they depend on what else the
machine runs), this process's CPU time per decision and Redis' own time per decision (from INFO
commandstats) -- the two costs that set the capacity of a core -- and Redis round trips per
decision. The cluster cases run on a real 3-master Redis Cluster (`tests/redis_server.py`); its
Redis time is not counted (the column reads the single server).
"""
from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for path in (REPO / "addons", REPO / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import redis

from redis_server import RedisClusterServers, RedisServer
from scrapeshield.gcra import parse_rate
from scrapeshield.store.base import Batch, BucketCheck, ScoreUpdate, Store
from scrapeshield.store.memory import MemoryStore
from scrapeshield.store.redis import RedisStore

LIMITS = [("overall-1", parse_rate("20/s burst 100")), ("overall-2", parse_rate("3000/h")),
          ("records-1", parse_rate("2/s burst 10")), ("records-2", parse_rate("60/10m"))]


def allowed_batches(n: int, seed: int = 7) -> list[Batch]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ip = f"ip:10.{rng.randrange(40)}.{rng.randrange(250)}.{rng.randrange(1, 11)}"
        subnet = "subnet:" + ip[3:].rsplit(".", 1)[0] + ".0/24"
        out.append(Batch((ip, subnet), tuple(BucketCheck(bid, ip, lim) for bid, lim in LIMITS),
                         (ScoreUpdate("suspicion", ip, 0.5, 300.0),)))
    return out


def banned_batches(n: int) -> list[Batch]:
    return [Batch((f"ip:192.0.2.{i % 100}",), tuple(BucketCheck(bid, f"ip:192.0.2.{i % 100}", lim)
                                                    for bid, lim in LIMITS)) for i in range(n)]


async def measure(store: Store, batches: list[Batch], seconds: float, concurrency: int,
                  clock: Callable[[], float]) -> tuple[float, list[float], int, float]:
    """Run `concurrency` tasks for `seconds`; return (decisions/s, latencies, decisions, CPU s)."""
    latencies: list[float] = []
    count = 0
    deadline = time.perf_counter() + seconds

    async def worker(offset: int) -> None:
        nonlocal count
        i = offset
        while time.perf_counter() < deadline:
            batch = batches[i % len(batches)]
            i += concurrency
            t = time.perf_counter()
            await store.apply(batch, clock())
            latencies.append(time.perf_counter() - t)
            count += 1

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return count / (time.perf_counter() - start), latencies, count, time.process_time() - cpu


def redis_busy_usec(url: str) -> float:
    """Microseconds Redis has spent executing commands so far (INFO commandstats)."""
    with redis.Redis.from_url(url) as client:
        return float(sum(v["usec"] for v in client.info("commandstats").values()))


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1e6 if len(values) >= 100 else float("nan")


async def run(args: argparse.Namespace) -> None:
    allowed, banned = allowed_batches(20_000), banned_batches(20_000)
    print(f"python {sys.version.split()[0]}, {args.seconds:g} s per case; batch = 2 ban keys, 4 buckets, 1 score")
    print(f"{'case':<44} {'decisions/s':>11} {'p50 us':>7} {'p99 us':>7} {'cpu us':>7} {'redis us':>8} {'trips':>6}")
    with RedisServer() as server, RedisClusterServers() as cluster:
        cases: list[tuple[str, Callable[[], Awaitable[Store]], list[Batch], int]] = []
        for conc in (1, args.concurrency):
            cases.append((f"memory, allowed traffic, {conc} task(s)", _memory, allowed, conc))
            cases.append((f"redis, allowed traffic, {conc} task(s)", _redis(server, 10_000), allowed, conc))
            cases.append((f"redis cluster (3 masters), allowed, {conc} task(s)", _cluster(cluster), allowed, conc))
        for conc in (1, args.concurrency):
            cases.append((f"redis, banned clients, no local cache, {conc}", _redis(server, 0), banned, conc))
            cases.append((f"redis, banned clients, local cache, {conc}", _redis(server, 10_000), banned, conc))
        for name, make, batches, conc in cases:
            store = await make()
            if batches is banned:
                for i in range(100):
                    await store.ban(f"ip:192.0.2.{i}", time.time() + 3600, time.time())
            await store.connect()
            trips0, busy0 = getattr(store, "round_trips", 0), redis_busy_usec(server.url)
            rate, lat, n, cpu = await measure(store, batches, args.seconds, conc, time.time)
            trips = (getattr(store, "round_trips", 0) - trips0) / max(n, 1)
            busy = (redis_busy_usec(server.url) - busy0) / max(n, 1)
            print(f"{name:<44} {rate:>11,.0f} {pct(lat, 50):>7.0f} {pct(lat, 99):>7.0f} {cpu / n * 1e6:>7.1f} "
                  f"{busy:>8.1f} {trips:>6.3f}")
            await store.close()


async def _memory() -> Store:
    return MemoryStore()


def _redis(server: RedisServer, cache: int) -> Callable[[], Awaitable[Store]]:
    async def make() -> Store:
        return RedisStore.from_url(server.url, timeout=1.0, local_cache_max=cache,
                                   key_prefix=f"bench{random.randrange(1 << 30)}:")
    return make


def _cluster(cluster: RedisClusterServers) -> Callable[[], Awaitable[Store]]:
    async def make() -> Store:
        return RedisStore.from_cluster_url(cluster.url, timeout=1.0, local_cache_max=10_000,
                                           key_prefix=f"bench{random.randrange(1 << 30)}:")
    return make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=50)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

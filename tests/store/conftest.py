"""Store fixtures: every backend behind one `store` fixture, and a real redis-server.

Redis is never mocked, and its absence is a failure, not a skip: a Redis backend that was not
tested must not look like one that passed.
"""
from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from redis_server import RedisClusterServers, RedisServer, start_cluster_or_fail, start_or_fail
from scrapeshield.clock import FakeClock
from scrapeshield.store.base import Store
from scrapeshield.store.memory import MemoryStore
from scrapeshield.store.redis import RedisStore
from scrapeshield.store.resilient import ResilientStore

# Tests move a fake clock while Redis expires keys by its own: a long slack keeps keys alive
# however slowly a test runs, so fake time alone decides what each test sees.
TEST_EXPIRY_SLACK = 600.0
TEST_TIMEOUT = 2.0  # generous on a loaded CI machine; the fault tests use the real default (0.05 s)

RedisStoreFactory = Callable[..., RedisStore]
_prefixes = itertools.count()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the session; tests keep apart by key prefix."""
    server = start_or_fail()
    yield server
    server.close()


@pytest.fixture
async def redis_store_factory(redis_server: RedisServer) -> AsyncIterator[RedisStoreFactory]:
    """`redis_store_factory(**RedisStore.from_url options)`: stores on the session server, each
    with its own key prefix, all closed when the test ends."""
    made: list[RedisStore] = []

    def make(**options: object) -> RedisStore:
        options.setdefault("timeout", TEST_TIMEOUT)
        options.setdefault("expiry_slack", TEST_EXPIRY_SLACK)
        options.setdefault("key_prefix", f"t{next(_prefixes)}:")
        made.append(RedisStore.from_url(redis_server.url, **options))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for store in made:
        await store.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """One real 3-master Redis Cluster for the session; tests keep apart by key prefix (each
    prefix is its own hash tag, so tests land on different slots and masters)."""
    cluster = start_cluster_or_fail()
    yield cluster
    cluster.close()


@pytest.fixture
async def cluster_store_factory(redis_cluster: RedisClusterServers) -> AsyncIterator[RedisStoreFactory]:
    made: list[RedisStore] = []

    def make(**options: object) -> RedisStore:
        options.setdefault("timeout", TEST_TIMEOUT)
        options.setdefault("expiry_slack", TEST_EXPIRY_SLACK)
        options.setdefault("key_prefix", f"c{next(_prefixes)}:")
        made.append(RedisStore.from_cluster_url(redis_cluster.url, **options))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for store in made:
        await store.close()


BACKENDS = ["memory", "redis", "redis-no-local-cache", "resilient-redis", "redis-cluster"]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest) -> Store:
    """Each backend in turn. `redis` has the local cache on; the other Redis one has it off, so
    every answer comes from the Lua script; `resilient-redis` is Redis behind a ResilientStore
    (fail closed), as `scrapeshield run` uses it."""
    if request.param == "memory":
        return MemoryStore()
    if request.param == "redis-cluster":
        cluster: RedisStoreFactory = request.getfixturevalue("cluster_store_factory")
        return cluster(local_cache_max=0)
    make: RedisStoreFactory = request.getfixturevalue("redis_store_factory")
    redis = make(local_cache_max=0 if request.param == "redis-no-local-cache" else 10_000)
    if request.param == "resilient-redis":
        return ResilientStore(redis, MemoryStore(), "closed")
    return redis


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)

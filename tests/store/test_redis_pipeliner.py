"""The Redis store's hot-path connection (`CommandPipeliner`): replies reach their own callers
whatever happens around them, against a real redis-server (one per test here: some are paused)."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from redis_server import RedisServer, start_or_fail
from scrapeshield.store.redis import CommandPipeliner, RedisStore


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = start_or_fail(workdir=tmp_path / "redis")
    yield server
    server.close()


@pytest.fixture
async def store(server: RedisServer) -> AsyncIterator[RedisStore]:
    store = RedisStore.from_url(server.url, timeout=0.25)  # replies owed for 1 s: the connection is given up
    await store.connect()
    yield store
    await store.close()


def lane(store: RedisStore) -> CommandPipeliner:
    assert store._pipeliner is not None
    return store._pipeliner


async def test_concurrent_callers_each_get_their_own_reply(store: RedisStore) -> None:
    p = lane(store)
    await asyncio.gather(*(p.submit("SET", f"k{i}", f"v{i}") for i in range(50)))
    await p.submit("SET", "text", "not a hash")
    calls = [p.submit("GET", f"k{i % 50}") if i % 7 else p.submit("HGET", "text", "field") for i in range(200)]
    replies = await asyncio.gather(*calls, return_exceptions=True)
    for i, reply in enumerate(replies):
        if i % 7:
            assert reply == f"v{i % 50}".encode(), (i, reply)
        else:  # an error reply fails its own command only
            assert isinstance(reply, ResponseError) and "WRONGTYPE" in str(reply), (i, reply)
    assert p.commands >= 251 and p.pipelines < p.commands  # concurrent calls went out together


async def test_a_caller_that_gave_up_does_not_shift_the_replies(store: RedisStore) -> None:
    p = lane(store)
    await p.submit("SET", "a", "1")
    await p.submit("SET", "b", "2")
    gave_up = p.submit("GET", "a")
    gave_up.cancel()  # its reply is still read, and dropped
    assert await p.submit("GET", "b") == b"2"
    assert await p.submit("GET", "a") == b"1"


async def test_a_hung_server_fails_what_is_owed_and_the_next_call_reconnects(store: RedisStore,
                                                                           server: RedisServer) -> None:
    p = lane(store)
    assert await p.submit("SET", "x", "1") == b"OK"  # raw replies: no client-side response callbacks
    server.pause()
    try:
        owed = [p.submit("GET", "x") for _ in range(3)]
        results = await asyncio.gather(*owed, return_exceptions=True)
        assert all(isinstance(r, RedisTimeoutError) for r in results), results
    finally:
        server.resume()
    assert await p.submit("GET", "x") == b"1"  # a new connection, and replies in step again
    assert await p.submit("INCR", "n") == 1


async def test_dropped_connections_leave_no_task_behind(store: RedisStore, server: RedisServer) -> None:
    p = lane(store)
    for _ in range(3):
        assert await p.submit("PING") == b"PONG"
        server.pause()
        try:
            with pytest.raises(RedisTimeoutError):
                await p.submit("PING")
        finally:
            server.resume()
    assert await p.submit("PING") == b"PONG"
    await asyncio.sleep(0.05)  # the released connections' tasks finish
    assert len(p._tasks) == 1  # the reader of the one connection in use

"""Commands packed by hiredis (`store/redis.py` `HiredisPacking`) are the bytes redis-py's own
asyncio packer writes, and the stores built from URLs use it against a real redis-server."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection

from redis_server import RedisServer
from scrapeshield.gcra import BucketLimit
from scrapeshield.store.base import Batch, BucketCheck, ScoreUpdate
from scrapeshield.store.redis import HiredisPacking, RedisStore

NAMES = st.sampled_from(["EVALSHA", "SCRIPT LOAD", "CLIENT SETINFO", "PING", b"GET", b"CONFIG GET"])
ARGS = st.one_of(st.text(max_size=20), st.binary(max_size=20), st.integers(-(2 ** 63), 2 ** 63 - 1),
                 st.floats(allow_nan=False, allow_infinity=False), st.floats(min_value=-1e-3, max_value=1e-3))
COMMANDS = st.lists(st.tuples(NAMES, st.lists(ARGS, max_size=12)).map(lambda c: (c[0], *c[1])),
                    min_size=1, max_size=5)


class _Packed(HiredisPacking, Connection):
    pass


@settings(max_examples=300)
@given(COMMANDS)
def test_hiredis_writes_the_bytes_redis_py_writes(commands: list[tuple[object, ...]]) -> None:
    theirs, ours = Connection(), _Packed()
    assert b"".join(ours.pack_commands(commands)) == b"".join(theirs.pack_commands(commands))
    for command in commands:
        assert b"".join(ours.pack_command(*command)) == b"".join(theirs.pack_command(*command))


def test_every_url_scheme_packs_with_hiredis(tmp_path: object) -> None:
    for url, base in (("redis://127.0.0.1:1/0", Connection), ("rediss://127.0.0.1:1/0", SSLConnection),
                      ("unix:///tmp/nothing.sock?db=0", UnixDomainSocketConnection)):
        store = RedisStore.from_url(url)
        cls = store._client.connection_pool.connection_class
        assert issubclass(cls, HiredisPacking) and issubclass(cls, base), (url, cls)


async def test_a_batch_goes_through_hiredis_packing_to_a_real_server(redis_server: RedisServer) -> None:
    store = RedisStore.from_url(redis_server.url, key_prefix="pack:", expiry_slack=600.0)
    try:
        await store.connect()  # SCRIPT LOAD (a two-word command) and PING
        batch = Batch(("ip:1",), (BucketCheck("b1", "ip:1", BucketLimit(1, 1.0, 0)),),
                      (ScoreUpdate("harvest", "client:é", 2.5, 600.0),))
        first = await store.apply(batch, 1000.0)
        second = await store.apply(batch, 1000.0)
        assert first.refused < 0 and second.refused == 0  # the bucket's one token, then refused
        assert first.scores == (2.5,) and second.scores == (5.0,)
        assert store._client.connection_pool.connection_class.__name__.startswith("Hiredis")
        status = store.status()  # one after the other: a pipeline each
        assert (status["pipelines"], status["pipelined_commands"]) == (2, 2)
    finally:
        await store.close()

"""Fixtures for the Redis end-to-end tests (helpers: `redis_e2e_tools`)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from redis_server import RedisServer, start_or_fail


@pytest.fixture(scope="module")
def redis_tcp_unix() -> Iterator[RedisServer]:
    """One redis-server for the module, listening on a free loopback port AND a unix socket."""
    server = start_or_fail(unix_socket=True)
    yield server
    server.close()

"""Fixtures for the operator-facing tests: a redis-server of their own (stopped and started by some)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from redis_server import RedisServer, start_or_fail


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = start_or_fail()
    yield server
    server.close()

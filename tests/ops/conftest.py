"""Fixtures for the operator-facing tests: shields with the control API on, a Redis to share."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from redis_server import RedisServer, start_or_fail

TOKEN = "test-admin-token-0123456789"


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = start_or_fail()
    yield server
    server.close()

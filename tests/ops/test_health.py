"""/healthz, /readyz and /status on a real shield: readiness follows the store and the fail mode."""
from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from harness import ShieldProcess
from redis_server import RedisServer

pytestmark = pytest.mark.e2e

POLICY = """\
version: 1
name: health
fail: {mode}
rules:
  - name: records
    match: {{path: ["/api/*"]}}
    limits: ["100/m"]
"""


def get(shield: ShieldProcess, path: str) -> httpx.Response:
    return httpx.get(f"{shield.admin_url}{path}", trust_env=False, timeout=5.0)


def wait_ready(shield: ShieldProcess, want: bool, timeout: float = 8.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = get(shield, "/readyz")
        body: dict[str, Any] = response.json()
        if body["ready"] is want:
            assert response.status_code == (200 if want else 503)
            return body
        assert time.monotonic() < deadline, f"/readyz stayed {body} (wanted ready={want})"
        time.sleep(0.2)


def test_a_memory_store_shield_is_live_and_ready(shield_factory: Any) -> None:
    shield = shield_factory(policy_text=POLICY.format(mode="open"))
    assert get(shield, "/healthz").json()["ok"] is True
    ready = get(shield, "/readyz")
    assert ready.status_code == 200
    assert ready.json()["store"]["state"] == "ok"


def test_readiness_goes_false_while_a_fail_closed_redis_is_down_and_comes_back(
        shield_factory: Any, redis_server: RedisServer) -> None:
    # given a shield on Redis whose policy fails closed
    shield = shield_factory(policy_text=POLICY.format(mode="closed"), store=redis_server.url,
                            extra_args=["--store-timeout", "0.25"])
    wait_ready(shield, True)
    # when Redis stops
    redis_server.stop()
    try:
        # then the shield is alive but not ready, and says why
        body = wait_ready(shield, False)
        assert body["store"]["state"] == "down" and body["store"]["fail_mode"] == "closed"
        assert "fails closed" in body["reasons"][0]
        assert get(shield, "/healthz").status_code == 200
        status = get(shield, "/status").json()
        assert status["ready"] is False and status["store"]["health"]["state"] == "down"
    finally:
        # when Redis is back, so is readiness
        redis_server.start()
    wait_ready(shield, True)


def test_a_fail_open_shield_stays_ready_but_degraded_while_redis_is_down(
        shield_factory: Any, redis_server: RedisServer) -> None:
    shield = shield_factory(policy_text=POLICY.format(mode="open"), store=redis_server.url,
                            extra_args=["--store-timeout", "0.25"])
    wait_ready(shield, True)
    redis_server.stop()
    try:
        deadline = time.monotonic() + 8
        while (body := get(shield, "/readyz").json())["store"]["state"] != "degraded":
            assert time.monotonic() < deadline, body
            time.sleep(0.2)
        assert body["ready"] is True
    finally:
        redis_server.start()


def test_status_says_uptime_store_and_the_last_reload_with_its_error(shield_factory: Any) -> None:
    shield = shield_factory(policy_text=POLICY.format(mode="open"))
    shield.policy.write_text("version: 1\nrules: [{name: x, action: nonsense}]\n")
    deadline = time.monotonic() + 8
    while (status := get(shield, "/status").json())["reload"]["last_result"] != "failed":
        assert time.monotonic() < deadline, status["reload"]
        time.sleep(0.2)
    assert "nonsense" in status["reload"]["last_error"]
    assert status["uptime"] > 0 and status["store"]["health"]["state"] == "ok"
    assert get(shield, "/readyz").status_code == 200  # the last good policy still serves

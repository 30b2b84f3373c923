"""Logs for machines on a real shield: the request id (decision log, upstream X-Request-Id, a
client cannot choose it), the decision log reopened on SIGUSR1, the application log as JSON."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from harness import bind_client

pytestmark = pytest.mark.e2e

POLICY = """\
version: 1
trusted_proxies: [127.0.0.9/32]
rules:
  - name: deny-admin
    match: {{path: ["/admin/*"]}}
    action: block
"""


def upstream_ids(echo: dict[str, Any]) -> list[str]:
    return [v for k, v in echo["headers"] if k.lower() == "x-request-id"]


def test_every_request_gets_an_id_upstream_and_a_client_cannot_choose_it(shield_factory: Any,
                                                                        tmp_path: Path) -> None:
    shield = shield_factory(policy_text=POLICY.format(), decision_log=tmp_path / "decisions.log")
    with bind_client("127.0.0.2", base_url=shield.proxy_url) as client:
        first = upstream_ids(client.get("/echo").json())
        forged = upstream_ids(client.get("/echo", headers={"X-Request-Id": "chosen-by-client"}).json())
        refused = client.get("/admin/x", headers={"X-Request-Id": "chosen-by-client"})
    assert len(first) == 1 and len(first[0]) == 24
    assert len(forged) == 1 and forged[0] != "chosen-by-client"
    [line] = [json.loads(ln) for ln in (tmp_path / "decisions.log").read_text().splitlines()]
    assert refused.status_code == 403
    assert line["request_id"] == refused.headers["X-Request-Id"] != "chosen-by-client"
    assert line["time"].endswith("Z") and line["status"] == 403 and line["rule"] == "deny-admin"


def test_a_trusted_proxys_request_id_is_kept(shield_factory: Any) -> None:
    shield = shield_factory(policy_text=POLICY.format())
    with bind_client("127.0.0.9", base_url=shield.proxy_url) as proxy:
        ids = upstream_ids(proxy.get("/echo", headers={"X-Request-Id": "lb-7f3a", "X-Forwarded-For": "198.51.100.4"}
                                     ).json())
    assert ids == ["lb-7f3a"]


def test_sigusr1_reopens_the_decision_log_after_logrotate_moved_it(shield_factory: Any, tmp_path: Path) -> None:
    log = tmp_path / "decisions.log"
    shield = shield_factory(policy_text=POLICY.format(), decision_log=log)
    with bind_client("127.0.0.2", base_url=shield.proxy_url) as client:
        client.get("/admin/1")
        rotated = log.rename(tmp_path / "decisions.log.1")  # logrotate's `create` moves the file...
        os.kill(shield.pid, signal.SIGUSR1)  # ...then tells the process
        deadline = time.monotonic() + 5
        while not log.exists():
            assert time.monotonic() < deadline, "the decision log was not reopened"
            time.sleep(0.05)
        client.get("/admin/2")
    assert [json.loads(ln)["path"] for ln in rotated.read_text().splitlines()] == ["/admin/1"]
    assert [json.loads(ln)["path"] for ln in log.read_text().splitlines()] == ["/admin/2"]


def test_the_application_log_can_be_json_lines(shield_factory: Any) -> None:
    shield = shield_factory(policy_text=POLICY.format(), extra_args=["--log-format", "json"])
    lines = [ln for ln in shield.stderr_path.read_text().splitlines() if ln.strip()]
    records = [json.loads(ln) for ln in lines]  # every line: one JSON object
    assert any(r["logger"] == "scrapeshield" and "listening" in r["message"] for r in records)
    assert all(r["time"].endswith("Z") and r["level"] in ("debug", "info", "warning", "error") for r in records)

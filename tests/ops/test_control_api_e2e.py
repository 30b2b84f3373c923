"""The control API and its CLI against real shields: two replicas on one redis-server share every
ban and allow-list entry, the decision log records each change, and the API needs its token."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from ops_tools import TOKEN

from harness import PYTHON, ShieldProcess, bind_client, subprocess_env
from redis_server import RedisServer

pytestmark = pytest.mark.e2e

POLICY = """\
version: 1
name: control
rules:
  - name: deny-admin
    match: {path: ["/admin/*"]}
    action: block
  - name: records
    match: {path: ["/api/*"]}
    limits: ["100/m"]
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "scrapeshield", *args], capture_output=True, text=True,
                          env=subprocess_env(), timeout=30, check=False)


def status_from(shield: ShieldProcess, ip: str, path: str = "/") -> int:
    """The status `ip` gets; 200 from the origin, or the shield's refusal. (The demo origin has no
    /admin/: a request the shield lets through there gets the origin's 404.)"""
    with bind_client(ip, base_url=shield.proxy_url) as client:
        return client.get(path).status_code


def eventually(check: Any, timeout: float = 8.0) -> None:
    """The replica that did not make a change may hold a cached ban for a few seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


@pytest.fixture
def replicas(shield_factory: Any, redis_server: RedisServer,
             tmp_path: Path) -> tuple[ShieldProcess, ShieldProcess, Path]:
    """Two replicas on one redis-server, control API on (token from a file), each its decision log."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    shields = tuple(shield_factory(policy_text=POLICY, store=redis_server.url,
                                   decision_log=tmp_path / f"decisions{i}.log",
                                   extra_args=["--admin-token-file", str(token_file)]) for i in range(2))
    return shields[0], shields[1], token_file


def admin(shield: ShieldProcess) -> str:
    return f"127.0.0.1:{shield.admin_port}"


def test_a_ban_from_the_cli_holds_on_both_replicas_until_it_is_lifted(replicas: Any, tmp_path: Path) -> None:
    a, b, token = replicas
    assert status_from(a, "127.0.0.5") == 200 and status_from(b, "127.0.0.5") == 200
    # when an operator bans the address through replica A
    done = cli("ban", "127.0.0.5", "--for", "10m", "--reason", "e2e scraper", "--admin", admin(a),
               "--token-file", str(token))
    assert done.returncode == 0, done.stderr
    assert "banned ip=127.0.0.5" in done.stdout
    # then its next request is refused on both replicas, and nobody else's is
    assert status_from(a, "127.0.0.5") == 403
    assert status_from(b, "127.0.0.5") == 403
    assert status_from(b, "127.0.0.6") == 200
    # and every replica lists and inspects it
    listed = cli("bans", "--admin", admin(b), "--token-file", str(token), "--json")
    assert [(e["key"], e["reason"]) for e in json.loads(listed.stdout)["bans"]] == [("ip=127.0.0.5", "e2e scraper")]
    inspected = json.loads(cli("inspect", "ip=127.0.0.5", "--admin", admin(b), "--token-file", str(token),
                               "--json").stdout)
    assert inspected["ban"]["reason"] == "e2e scraper" and inspected["allow"] is None
    # when it is lifted through replica B, both serve it again
    lifted = cli("unban", "ip=127.0.0.5", "--admin", admin(b), "--token-file", str(token))
    assert lifted.returncode == 0, lifted.stderr
    eventually(lambda: status_from(a, "127.0.0.5") == 200 and status_from(b, "127.0.0.5") == 200)
    # and each change is in the decision log of the replica that made it
    events_a = [json.loads(ln) for ln in (tmp_path / "decisions0.log").read_text().splitlines() if '"event"' in ln]
    events_b = [json.loads(ln) for ln in (tmp_path / "decisions1.log").read_text().splitlines() if '"event"' in ln]
    assert [(e["event"], e["key"], e["reason"]) for e in events_a] == [("ban", "ip=127.0.0.5", "e2e scraper")]
    assert [(e["event"], e["key"], e["removed"]) for e in events_b] == [("unban", "ip=127.0.0.5", True)]


def test_an_allow_list_entry_lets_a_client_past_a_block_rule_on_both_replicas(replicas: Any) -> None:
    a, b, token = replicas
    assert status_from(a, "127.0.0.7", "/admin/x") == 403
    done = cli("allow", "127.0.0.7", "--for", "1h", "--reason", "pen test", "--admin", admin(b),
               "--token-file", str(token))
    assert done.returncode == 0, done.stderr
    assert status_from(a, "127.0.0.7", "/admin/x") == 404  # passed on: the origin's own answer
    assert status_from(b, "127.0.0.7", "/admin/x") == 404
    assert status_from(a, "127.0.0.8", "/admin/x") == 403
    assert cli("unallow", "ip=127.0.0.7", "--admin", admin(a), "--token-file", str(token)).returncode == 0
    eventually(lambda: status_from(b, "127.0.0.7", "/admin/x") == 403)


def test_the_api_wants_the_token_and_is_off_without_one(replicas: Any, shield_factory: Any, tmp_path: Path) -> None:
    a, _, _ = replicas
    wrong = httpx.get(f"{a.admin_url}/api/bans", headers={"Authorization": "Bearer nope"}, trust_env=False)
    assert wrong.status_code == 401
    assert httpx.post(f"{a.admin_url}/api/bans", json={"key": "1.2.3.4"}, trust_env=False).status_code == 401
    bad = httpx.post(f"{a.admin_url}/api/bans", json={"key": "not an address"},
                     headers={"Authorization": f"Bearer {TOKEN}"}, trust_env=False)
    assert bad.status_code == 400 and "neither an address" in bad.json()["error"]
    off = shield_factory(policy_text=POLICY, workdir=tmp_path / "off")
    answer = httpx.get(f"{off.admin_url}/api/bans", headers={"Authorization": f"Bearer {TOKEN}"}, trust_env=False)
    assert answer.status_code == 404 and "--admin-token-file" in answer.json()["error"]
    refused = cli("bans", "--admin", admin(off), "--token-file", str(tmp_path / "token"))
    assert refused.returncode == 2 and "control API is off" in refused.stderr

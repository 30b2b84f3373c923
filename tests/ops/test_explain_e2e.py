"""Explain agrees with the live shield: `scrapeshield explain` (offline, on fresh state) with a
client's first request, and POST /api/explain (live state, read-only) with the next request."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from ops_tools import TOKEN

from harness import PYTHON, ShieldProcess, bind_client, subprocess_env

pytestmark = pytest.mark.e2e

POLICY = """\
version: 1
name: explained
rules:
  - name: deny-admin
    match: {path: ["/admin/*"], method: [POST]}
    action: block
  - name: pages
    match: {path: ["/products*"]}
    limits: ["3/m burst 2"]
    exceed: throttle
"""
UA = "explain-e2e/1.0"


def live(shield: ShieldProcess, ip: str, path: str, method: str = "GET") -> tuple[str, str]:
    """(effective action, rule) of the live shield's decision: the action from its answer, the rule
    from its decision log (which has a line for every refusal, naming the request by its id)."""
    with bind_client(ip, base_url=shield.proxy_url, headers={"User-Agent": UA}) as client:
        r = client.request(method, path)
    action = r.headers.get("Shield-Action", "allow")
    if action == "allow":
        return action, ""
    rid = r.headers["X-Request-Id"]
    assert shield.decision_log is not None
    lines = [json.loads(ln) for ln in Path(shield.decision_log).read_text().splitlines()]
    [line] = [ln for ln in lines if ln.get("request_id") == rid]
    return action, line["rule"]


def explain_live(shield: ShieldProcess, ip: str, path: str, method: str = "GET") -> dict[str, Any]:
    answer = httpx.post(f"{shield.admin_url}/api/explain", trust_env=False, timeout=10,
                        headers={"Authorization": f"Bearer {TOKEN}"},
                        json={"method": method, "url": f"{shield.proxy_url}{path}", "client": ip,
                              "headers": [["User-Agent", UA]]})
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def explain_offline(policy: Path, ip: str, path: str, method: str = "GET") -> dict[str, Any]:
    done = subprocess.run([PYTHON, "-m", "scrapeshield", "explain", f"http://shop.example{path}", "-X", method,
                           "-H", f"User-Agent: {UA}", "--client", ip, "--policy", str(policy), "--format", "json"],
                          capture_output=True, text=True, env=subprocess_env(), timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture
def shield(shield_factory: Any, tmp_path: Path) -> ShieldProcess:
    shield: ShieldProcess = shield_factory(policy_text=POLICY, env={"SCRAPESHIELD_ADMIN_TOKEN": TOKEN},
                                           decision_log=tmp_path / "decisions.log")
    return shield


@pytest.mark.parametrize(("method", "path"), [("GET", "/"), ("POST", "/admin/x"), ("GET", "/products")])
def test_offline_explain_agrees_with_a_clients_first_request(shield: ShieldProcess, method: str, path: str) -> None:
    ip = {"/": "127.0.0.21", "/admin/x": "127.0.0.22", "/products": "127.0.0.23"}[path]
    said = explain_offline(shield.policy, ip, path, method)["decision"]
    assert (said["effective"], said["rule"] if said["effective"] != "allow" else "") == live(shield, ip, path, method)


def test_live_explain_agrees_with_the_next_request_and_spends_nothing(shield: ShieldProcess) -> None:
    ip = "127.0.0.31"
    for _ in range(3):  # the whole burst (2 + 1) is spent...
        said = explain_live(shield, ip, "/products")
        assert said["decision"]["effective"] == "allow"
        assert live(shield, ip, "/products") == ("allow", "")
    # ...so the next one is throttled, as explain says first -- however often it is asked
    for _ in range(3):
        said = explain_live(shield, ip, "/products")
        assert (said["decision"]["effective"], said["decision"]["rule"]) == ("throttle", "pages")
    assert live(shield, ip, "/products") == ("throttle", "pages")
    [bucket] = said["buckets"]
    assert (bucket["rule"], bucket["allowed"], bucket["remaining"]) == ("pages", False, 0)
    assert [r["rule"] for r in said["rules"]] == ["deny-admin", "pages"]
    assert said["rules"][0]["outcome"] != "matched" and said["rules"][1]["outcome"] == "matched"


def test_live_explain_of_an_unspent_client_leaves_its_whole_burst(shield: ShieldProcess) -> None:
    ip = "127.0.0.32"
    for _ in range(5):
        explain_live(shield, ip, "/products")
    assert [live(shield, ip, "/products")[0] for _ in range(4)] == ["allow", "allow", "allow", "throttle"]

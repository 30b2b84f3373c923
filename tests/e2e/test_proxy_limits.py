"""End to end: what the rules do to real traffic, through a real `scrapeshield run`.

One shield serves the module: every rule sits under its own path, and every test speaks from
its own loopback address (or address/rule pair), so no test spends another's budget or bans it.
Rule paths live under the origin's `/echo/`, so whatever the shield lets through gets a 200.
"""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import ShieldProcess, bind_client, origin_stats

pytestmark = pytest.mark.e2e

POLICY = """\
version: 1
name: e2e-limits
trusted_proxies: [127.0.0.1/32]
rules:
  - name: blocked
    match: {path: [/echo/blocked/*]}
    action: block
  - name: dropped
    match: {path: [/echo/dropped/*]}
    action: drop
  - name: banning
    match: {path: [/echo/ban-me/*]}
    action: block
    ban: 2s
  - name: watched
    match: {path: [/echo/watched/*]}
    action: block
    monitor: true
  - name: throttled
    match: {path: [/echo/throttled/*]}
    limits: ["1/m burst 2"]
    exceed: throttle
  - name: delayed
    match: {path: [/echo/delayed/*]}
    limits: ["1/s burst 0"]
    exceed: delay
    delay_max: 5s
  - name: per-ip
    match: {path: [/echo/per-ip/*]}
    key: ip
    limits: ["1/m burst 1"]
  - name: per-subnet
    match: {path: [/echo/per-subnet/*]}
    key: prefix
    limits: ["1/m burst 4"]
  - name: per-client
    match: {path: [/echo/per-client/*]}
    key: ip
    limits: ["1/m burst 0"]
"""

THROTTLED_BURST = 3  # "1/m burst 2" lets an idle client send burst + 1 at once
MANY_SOURCES = [f"127.0.0.{n}" for n in range(2, 13)]  # eleven clients, one /24


@pytest.fixture(scope="module")
def shield(demo_origin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShieldProcess]:
    workdir = tmp_path_factory.mktemp("limits")
    with ShieldProcess(demo_origin, policy_text=POLICY, workdir=workdir,
                       decision_log=workdir / "decisions.jsonl") as running:
        yield running


def over_the_limit(shield: ShieldProcess, source_ip: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """Spend the `throttled` burst from `source_ip`, then return the first refused answer."""
    with bind_client(source_ip, base_url=shield.proxy_url) as client:
        allowed = [client.get("/echo/throttled/page").status_code for _ in range(THROTTLED_BURST)]
        refused = client.get("/echo/throttled/page", headers=headers)
    assert allowed == [200] * THROTTLED_BURST
    return refused


def decisions_total(shield: ShieldProcess, rule: str, action: str, enforced: str) -> float:
    text = httpx.get(f"{shield.admin_url}/metrics", trust_env=False).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "scrapeshield_decisions_total" and sample.labels == {
                    "rule": rule, "action": action, "enforced": enforced}:
                return sample.value
    return 0.0


def decision_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- throttle ---------------------------------------------------------------------------------------

def test_over_the_limit_is_throttled_with_429_and_rate_limit_headers(shield: ShieldProcess) -> None:
    refused = over_the_limit(shield, "127.0.0.21")

    assert refused.status_code == 429
    assert refused.headers["Shield-Action"] == "throttle"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit-Policy"] == '"throttled/0";q=1;w=60;burst=2'
    assert refused.headers["RateLimit"].startswith('"throttled/0";r=0;t=')


def test_throttle_body_is_json_when_the_client_accepts_json(shield: ShieldProcess) -> None:
    refused = over_the_limit(shield, "127.0.0.22", headers={"Accept": "application/json"})

    assert refused.status_code == 429
    assert refused.headers["Content-Type"] == "application/json"
    body = refused.json()
    assert body["action"] == "throttle"
    assert body["retry_after"] == int(refused.headers["Retry-After"])


def test_throttle_body_is_html_otherwise(shield: ShieldProcess) -> None:
    refused = over_the_limit(shield, "127.0.0.23", headers={"Accept": "text/html,*/*;q=0.8"})

    assert refused.status_code == 429
    assert refused.headers["Content-Type"].startswith("text/html")
    assert "<title>Too many requests</title>" in refused.text


# --- who shares a budget -------------------------------------------------------------------------------

def test_each_source_ip_has_its_own_per_ip_budget(shield: ShieldProcess) -> None:
    """"1/m burst 1" per ip: every one of the eleven clients gets two, then is throttled."""
    answers = {}
    for ip in MANY_SOURCES:
        with bind_client(ip, base_url=shield.proxy_url) as client:
            answers[ip] = [client.get("/echo/per-ip/x").status_code for _ in range(3)]

    assert answers == {ip: [200, 200, 429] for ip in MANY_SOURCES}


def test_prefix_keyed_rule_makes_one_subnet_share_one_budget(shield: ShieldProcess) -> None:
    """"1/m burst 4" per /24: five requests in all, whichever of the eleven clients sends them."""
    statuses = []
    for ip in MANY_SOURCES:
        with bind_client(ip, base_url=shield.proxy_url) as client:
            statuses.append(client.get("/echo/per-subnet/x").status_code)

    assert statuses == [200] * 5 + [429] * 6


def test_forwarded_for_from_a_trusted_proxy_is_the_client_key(shield: ShieldProcess) -> None:
    with bind_client("127.0.0.1", base_url=shield.proxy_url) as proxy:
        def get(client_ip: str) -> int:
            return proxy.get("/echo/per-client/x", headers={"X-Forwarded-For": client_ip}).status_code

        first, again = get("203.0.113.9"), get("203.0.113.9")
        other = get("203.0.113.10")

    assert (first, again) == (200, 429)
    assert other == 200  # a different client behind the same proxy has a budget of its own


def test_forwarded_for_from_an_untrusted_peer_is_ignored(shield: ShieldProcess) -> None:
    with bind_client("127.0.0.5", base_url=shield.proxy_url) as peer:
        def get(claimed_ip: str) -> int:
            return peer.get("/echo/per-client/x", headers={"X-Forwarded-For": claimed_ip}).status_code

        first, second = get("198.51.100.1"), get("198.51.100.2")

    assert (first, second) == (200, 429)  # both counted against 127.0.0.5


# --- direct actions ----------------------------------------------------------------------------------

def test_block_rule_answers_403_and_the_origin_never_sees_the_request(shield: ShieldProcess, demo_origin: str) -> None:
    path = f"/echo/blocked/{uuid.uuid4().hex}"

    with bind_client("127.0.0.51", base_url=shield.proxy_url) as client:
        response = client.get(path)

    assert response.status_code == 403
    assert response.headers["Shield-Action"] == "block"
    assert path not in origin_stats(demo_origin)["paths"]


def test_drop_rule_closes_the_connection_without_an_answer(shield: ShieldProcess, demo_origin: str) -> None:
    path = f"/echo/dropped/{uuid.uuid4().hex}"

    with bind_client("127.0.0.52", base_url=shield.proxy_url) as client, pytest.raises(httpx.TransportError):
        client.get(path)

    assert path not in origin_stats(demo_origin)["paths"]


def test_delay_holds_the_request_then_passes_it(shield: ShieldProcess) -> None:
    """"1/s burst 0": a second request at once is held until one second after the first, then passes."""
    with bind_client("127.0.0.31", base_url=shield.proxy_url) as client:
        started = time.monotonic()
        first = client.get("/echo/delayed/x")
        held = client.get("/echo/delayed/x")
        elapsed = time.monotonic() - started

    assert (first.status_code, held.status_code) == (200, 200)
    assert elapsed >= 0.95


def test_ban_refuses_every_path_until_it_expires(shield: ShieldProcess) -> None:
    with bind_client("127.0.0.41", base_url=shield.proxy_url) as client:
        trigger = client.get("/echo/ban-me/now")
        banned_at = time.monotonic()
        during = client.get("/products/1")
        time.sleep(max(0.0, banned_at + 2.5 - time.monotonic()))
        after = client.get("/products/1")

    assert trigger.status_code == 403
    assert (during.status_code, during.headers.get("Shield-Action")) == (403, "block")
    assert after.status_code == 200


# --- monitor mode --------------------------------------------------------------------------------

def test_monitored_rule_lets_the_request_through_but_counts_and_logs_it(shield: ShieldProcess) -> None:
    before = decisions_total(shield, "watched", "block", "false")

    with bind_client("127.0.0.61", base_url=shield.proxy_url) as client:
        response = client.get("/echo/watched/x")

    assert response.status_code == 200
    assert decisions_total(shield, "watched", "block", "false") == before + 1
    assert decisions_total(shield, "watched", "block", "true") == 0
    logged = [line for line in decision_lines(Path(shield.decision_log)) if line["client"] == "127.0.0.61"]
    assert [(line["rule"], line["action"], line["enforced"]) for line in logged] == [("watched", "block", False)]


MONITOR_POLICY = """\
version: 1
name: e2e-monitor
monitor: true
rules:
  - name: blocked
    match: {path: [/echo/blocked/*]}
    action: block
  - name: tight
    match: {path: [/echo/tight/*]}
    limits: ["1/m burst 0"]
"""


def test_global_monitor_mode_enforces_nothing_but_counts_and_logs(
        shield_factory: Callable[..., ShieldProcess], tmp_path: Path) -> None:
    log_file = tmp_path / "monitor-decisions.jsonl"
    monitored = shield_factory(policy_text=MONITOR_POLICY, decision_log=log_file)

    with bind_client("127.0.0.62", base_url=monitored.proxy_url) as client:
        statuses = [client.get(p).status_code for p in ("/echo/blocked/x", "/echo/tight/x", "/echo/tight/x")]

    assert statuses == [200, 200, 200]
    assert decisions_total(monitored, "blocked", "block", "false") == 1
    assert decisions_total(monitored, "tight", "throttle", "false") == 1
    lines = decision_lines(log_file)
    assert [(line["rule"], line["action"], line["enforced"]) for line in lines] == [
        ("blocked", "block", False), ("tight", "throttle", False)]

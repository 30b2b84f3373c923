"""Fingerprint conditions, key parts and score signals, end to end through a running shield.

One shield serves the module; every rule sits under its own `/echo/...` path so no test spends
another's budget. 127.0.0.1 is a trusted proxy, so one test can speak "from" a Googlebot
address via X-Forwarded-For; requests without that header are judged by their peer address.
"""
from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fp_clients import (
    CHROME_UA,
    GOOGLEBOT_UA,
    Answer,
    RunningShield,
    chromium_page,
    via_aiohttp,
    via_curl,
    via_curl_cffi,
    via_httpx,
    via_requests,
)

from harness import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]

STACK_LIMIT = 10
GOOGLEBOT_ADDRESS = "66.249.66.1"  # inside 66.249.66.0/27 of policies/goodbots/googlebot.json

POLICY = f"""\
version: 1
name: fingerprint-e2e-policy
trusted_proxies: [127.0.0.1/32]
goodbots: {REPO / "policies" / "goodbots"}
rules:
  - name: all
    action: log
  - name: libraries
    match: {{path: [/echo/guarded/*], ua_class: [library]}}
    action: block
  - name: disguised-browsers
    match:
      path: [/echo/guarded/*]
      signal: [ua_tls_mismatch, chromium_without_client_hints]
    action: block
  - name: verified-bots
    match: {{path: [/echo/bots/*], good_bot: true}}
    action: allow
  - name: crawlers
    match: {{path: [/echo/bots/*], ua_class: [crawler]}}
    action: block
  - name: per-stack
    match: {{path: [/echo/stack/*]}}
    key: [ja4, httpsig, ua_class]
    limits: ["{STACK_LIMIT}/m"]
  - name: per-stack-other
    match: {{path: [/echo/stack-other/*]}}
    key: [ja4, httpsig, ua_class]
    limits: ["{STACK_LIMIT}/m"]
scores:
  - name: crawler-claims
    key: [ip, "header:user-agent"]
    weights: {{unverified_crawler: 10, good_bot: -10}}
    thresholds:
      - {{at: 5, action: log}}
"""

LIBRARIES: dict[str, Callable[[str], Answer]] = {
    "requests": via_requests, "httpx": via_httpx, "aiohttp": via_aiohttp, "curl": via_curl,
}
ROTATED_SOURCES = [f"127.0.0.{n}" for n in range(2, 31)]  # 29 addresses, one client stack


# --- match: ua_class / signal ----------------------------------------------------------------------

@pytest.mark.parametrize("client", LIBRARIES.values(), ids=LIBRARIES.keys())
def test_library_clients_are_blocked_by_ua_class(shield: RunningShield, client: Callable[[str], Answer]) -> None:
    path = f"/echo/guarded/{client.__name__}"

    answer = client(shield.url + path)

    assert answer.status == 403
    (line,) = shield.log.wait(path, rule="libraries")
    assert (line["action"], line["fp"]["ua_class"]) == ("block", "library")


def test_headless_chromium_passes_the_library_rule(shield: RunningShield, browser) -> None:
    with chromium_page(browser) as page:
        response = page.goto(f"{shield.url}/echo/guarded/chromium")

    assert response is not None and response.status == 200
    assert [e["rule"] for e in shield.log.entries() if e["path"] == "/echo/guarded/chromium"] == ["all"]


def test_library_with_a_chrome_user_agent_is_blocked_as_a_disguised_browser(shield: RunningShield) -> None:
    answer = via_requests(f"{shield.url}/echo/guarded/requests-chrome-ua", headers={"User-Agent": CHROME_UA})

    assert answer.status == 403
    shield.log.wait("/echo/guarded/requests-chrome-ua", rule="disguised-browsers")


def test_curl_cffi_chrome_passes_both_fingerprint_rules(shield: RunningShield) -> None:
    # The impersonation is complete at the fingerprint layer: nothing here can stop it.
    answer = via_curl_cffi(f"{shield.url}/echo/guarded/cffi-chrome", "chrome")

    assert answer.status == 200


# --- key: [ja4, httpsig, ua_class] -------------------------------------------------------------------

def _rotate(shield: RunningShield, prefix: str) -> list[int]:
    """One httpx stack, a fresh connection from each of 29 source addresses."""
    return [via_httpx(f"{shield.url}{prefix}/{ip}", source=ip).status for ip in ROTATED_SOURCES]


def test_one_stack_rotating_source_addresses_spends_one_shared_budget(shield: RunningShield) -> None:
    statuses = _rotate(shield, "/echo/stack")

    assert statuses == [200] * STACK_LIMIT + [429] * (len(ROTATED_SOURCES) - STACK_LIMIT)
    throttled = [e for e in shield.log.entries() if e["rule"] == "per-stack"]
    assert len({e["client"] for e in throttled}) == len(ROTATED_SOURCES) - STACK_LIMIT
    (key,) = {e["key"] for e in throttled}
    assert key.startswith("ja4=") and "|ua_class=library" in key and "127.0.0." not in key


def test_a_different_client_stack_keeps_its_own_budget(shield: RunningShield) -> None:
    # given: the httpx stack has spent this rule's budget from rotating addresses
    assert _rotate(shield, "/echo/stack-other")[-1] == 429

    # when: other stacks come from the same addresses
    others = [
        via_requests(f"{shield.url}/echo/stack-other/requests", source=ROTATED_SOURCES[0]).status,
        via_httpx(f"{shield.url}/echo/stack-other/httpx-h2", source=ROTATED_SOURCES[0], http2=True).status,
        via_curl_cffi(f"{shield.url}/echo/stack-other/cffi-chrome", "chrome").status,
    ]

    # then: each has a budget of its own
    assert others == [200, 200, 200]


# --- good bots ---------------------------------------------------------------------------------------

def test_googlebot_user_agent_from_loopback_is_not_a_verified_good_bot(shield: RunningShield) -> None:
    answer = via_requests(f"{shield.url}/echo/bots/loopback", headers={"User-Agent": GOOGLEBOT_UA})

    assert answer.status == 403  # `good_bot: true -> allow` did not fire; the crawler rule did
    (line,) = shield.log.wait("/echo/bots/loopback", rule="crawlers")
    assert (line["client"], line["fp"]["ua_class"], line["fp"]["ua_family"]) == ("127.0.0.1", "crawler", "googlebot")


def test_googlebot_user_agent_from_a_google_range_is_verified(shield: RunningShield) -> None:
    # 127.0.0.1 is a trusted proxy: the client is the address it forwards for.
    answer = via_requests(f"{shield.url}/echo/bots/google-range",
                          headers={"User-Agent": GOOGLEBOT_UA, "X-Forwarded-For": GOOGLEBOT_ADDRESS})

    assert answer.status == 200
    assert [(e["rule"], e["client"]) for e in shield.log.entries() if e["path"] == "/echo/bots/google-range"] == [
        ("all", GOOGLEBOT_ADDRESS)]


def test_unverified_crawler_claim_raises_the_unverified_crawler_score_signal(shield: RunningShield) -> None:
    via_requests(f"{shield.url}/echo/crawler-score/googlebot", headers={"User-Agent": GOOGLEBOT_UA})
    via_requests(f"{shield.url}/echo/crawler-score/browser-ua", headers={"User-Agent": CHROME_UA})

    (line,) = shield.log.wait("/echo/crawler-score/googlebot", rule="score:crawler-claims")
    assert line["action"] == "log" and line["score"] == pytest.approx(10, abs=0.1)
    shield.log.wait("/echo/crawler-score/browser-ua")  # logged by `all` ...
    assert not [e for e in shield.log.entries()
                if e["path"] == "/echo/crawler-score/browser-ua" and e["rule"] != "all"]  # ... and nothing else


# --- bounded state -------------------------------------------------------------------------------------

def test_tls_fingerprints_are_dropped_when_connections_close(shield: RunningShield) -> None:
    status = httpx.get(f"{shield.admin_url}/status", trust_env=False, timeout=5.0).json()
    count = status.get("fingerprint", {}).get("tls_connections")
    assert count is not None, "/status must show the per-connection TLS fingerprint count"
    before = count

    no_reuse = httpx.Limits(max_keepalive_connections=0)  # every request a new TLS connection, closed after
    with httpx.Client(verify=False, trust_env=False, limits=no_reuse, timeout=10.0) as client:
        for n in range(200):
            client.get(f"{shield.url}/echo/connections/{n}")

    after = httpx.get(f"{shield.admin_url}/status", trust_env=False, timeout=5.0).json()
    assert after["fingerprint"]["tls_connections"] <= before + 1

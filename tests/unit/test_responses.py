"""The answers the shield gives itself: status, Shield-Action, body by Accept, rate-limit headers."""
from __future__ import annotations

import json

import pytest

from scrapeshield.decision import Action, Decision, RateInfo
from scrapeshield.policy.compiler import compile_bytes
from scrapeshield.policy.model import CompiledPolicy
from scrapeshield.responses import rate_headers, refusal, wants_json

POLICY = compile_bytes(b"version: 1\n")
RATE = RateInfo(policy_name="per-ip/0", quota=10, window=1.0, burst=20, remaining=0, reset=2.2, retry_after=0.1)


def throttled(rate: RateInfo = RATE, status: int = 0) -> Decision:
    return Decision(Action.THROTTLE, "per-ip", "over 10/s burst 20", key="ip=192.0.2.1", rate=rate, status=status)


def blocked(status: int = 0) -> Decision:
    return Decision(Action.BLOCK, "deny", "rule deny matched", status=status)


def header(headers: tuple[tuple[str, str], ...], name: str) -> str | None:
    values = [v for k, v in headers if k.lower() == name.lower()]
    assert len(values) <= 1
    return values[0] if values else None


@pytest.mark.parametrize(
    ("decision", "action"),
    [(blocked(), "block"), (throttled(), "throttle"), (Decision(Action.CHALLENGE, "r", "x"), "challenge")],
)
def test_every_answer_names_the_action_in_shield_action(decision: Decision, action: str) -> None:
    assert header(refusal(decision, POLICY, None).headers, "Shield-Action") == action


def test_answers_are_never_cached() -> None:
    assert header(refusal(blocked(), POLICY, None).headers, "Cache-Control") == "no-store"


@pytest.mark.parametrize(
    ("decision", "policy", "status"),
    [
        (blocked(), POLICY, 403),
        (throttled(), POLICY, 429),
        (blocked(status=451), POLICY, 451),
        (throttled(status=503), POLICY, 503),
        (blocked(), compile_bytes(b"version: 1\nresponses: {block_status: 404, throttle_status: 420}\n"), 404),
        (throttled(), compile_bytes(b"version: 1\nresponses: {block_status: 404, throttle_status: 420}\n"), 420),
    ],
)
def test_the_status_comes_from_the_rule_else_the_policy_responses(
    decision: Decision, policy: CompiledPolicy, status: int
) -> None:
    assert refusal(decision, policy, None).status == status


@pytest.mark.parametrize(
    ("accept", "is_json"),
    [
        (None, False),
        ("", False),
        ("*/*", False),
        ("text/html,application/xhtml+xml,*/*;q=0.8", False),
        ("application/json", True),
        ("application/problem+json", True),
        ("application/json, text/html", True),
        ("text/html, application/json", False),
        ("APPLICATION/JSON", True),
    ],
)
def test_json_is_chosen_when_accept_prefers_it(accept: str | None, is_json: bool) -> None:
    assert wants_json(accept) is is_json


def test_a_json_answer_says_what_happened_and_when_to_retry() -> None:
    resp = refusal(throttled(), POLICY, "application/json")
    assert header(resp.headers, "Content-Type") == "application/json"
    assert json.loads(resp.body) == {"error": "Too many requests", "action": "throttle", "retry_after": 1}


def test_an_html_answer_is_a_small_page_not_for_indexing() -> None:
    resp = refusal(blocked(), POLICY, "text/html")
    assert header(resp.headers, "Content-Type") == "text/html; charset=utf-8"
    assert resp.body.startswith(b"<!doctype html>")
    assert b"<title>Access denied</title>" in resp.body
    assert b"noindex" in resp.body


def test_a_block_carries_no_rate_limit_headers() -> None:
    names = {k for k, _ in refusal(blocked(), POLICY, None).headers}
    assert names.isdisjoint({"Retry-After", "RateLimit", "RateLimit-Policy"})


def test_retry_after_is_whole_seconds_rounded_up_and_at_least_one() -> None:
    def retry_after(seconds: float) -> str | None:
        rate = RateInfo("p", 1, 1.0, 0, 0, 0.0, seconds)
        return header(tuple(rate_headers(throttled(rate))), "Retry-After")

    assert [retry_after(s) for s in (0.0, 0.1, 1.0, 1.01, 59.5)] == ["1", "1", "1", "2", "60"]


def test_ratelimit_policy_describes_the_bucket() -> None:
    headers = tuple(rate_headers(throttled()))
    assert header(headers, "RateLimit-Policy") == '"per-ip/0";q=10;w=1;burst=20'


def test_ratelimit_reports_remaining_and_seconds_until_full() -> None:
    headers = tuple(rate_headers(throttled()))
    assert header(headers, "RateLimit") == '"per-ip/0";r=0;t=3'


def test_ratelimit_windows_are_whole_seconds() -> None:
    hourly = RateInfo("records/1", 1000, 3600.0, 999, 4, 0.0, 3.6)
    headers = tuple(rate_headers(throttled(hourly)))
    assert header(headers, "RateLimit-Policy") == '"records/1";q=1000;w=3600;burst=999'
    assert header(headers, "RateLimit") == '"records/1";r=4;t=0'


def test_a_policy_name_cannot_break_out_of_its_quotes() -> None:
    rate = RateInfo('we"ird/0', 1, 1.0, 0, 0, 0.0, 1.0)
    assert header(tuple(rate_headers(throttled(rate))), "RateLimit") == '"weird/0";r=0;t=0'


def test_a_decision_without_rate_info_has_no_rate_headers() -> None:
    assert rate_headers(blocked()) == []

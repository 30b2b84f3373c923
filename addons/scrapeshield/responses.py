"""Responses the shield makes itself: status, headers and a short body chosen by `Accept`."""
from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .decision import Action, Decision

if TYPE_CHECKING:
    from .policy.model import CompiledPolicy

_TITLES = {
    Action.BLOCK: ("Access denied", "This request was blocked."),
    Action.THROTTLE: ("Too many requests", "You are sending requests too quickly. Please slow down."),
    Action.CHALLENGE: ("Checking your browser", "Please complete the check to continue."),
}


@dataclass(frozen=True, slots=True)
class ShieldResponse:
    status: int
    headers: Sequence[tuple[str, str]]
    body: bytes


def accepts_html(accept: str | None) -> bool:
    """Would a page do (the challenge)? No Accept at all (curl, old clients) says yes."""
    if not accept:
        return True
    accept = accept.lower()
    return "text/html" in accept or "application/xhtml+xml" in accept or "*/*" in accept


def wants_json(accept: str | None) -> bool:
    """Does the client prefer JSON to HTML (a refusal's body)?"""
    if not accept:
        return False
    a = accept.lower()
    j = a.find("json")
    if j < 0:
        return False
    h = a.find("text/html")
    return h < 0 or j < h


def rate_headers(decision: Decision) -> list[tuple[str, str]]:
    """Retry-After plus the IETF httpapi RateLimit / RateLimit-Policy structured fields."""
    rate = decision.rate
    if rate is None:
        return []
    name = rate.policy_name.replace('"', "")
    return [
        ("Retry-After", str(max(1, math.ceil(rate.retry_after)))),
        ("RateLimit-Policy", f'"{name}";q={rate.quota};w={max(1, round(rate.window))};burst={rate.burst}'),
        ("RateLimit", f'"{name}";r={rate.remaining};t={max(0, math.ceil(rate.reset))}'),
    ]


def answer_status(decision: Decision, policy: CompiledPolicy) -> int | None:
    """The status the shield answers an enforced decision with; None when the upstream answers
    (allow, delay, log) and 0 for drop (the connection is closed, nothing is sent)."""
    action = decision.effective
    if action is Action.THROTTLE:
        return decision.status or policy.throttle_status
    if action is Action.BLOCK:
        return decision.status or policy.block_status
    if action is Action.CHALLENGE:
        return decision.status or policy.challenge.status
    if action is Action.DROP:
        return 0
    return None


def refusal(decision: Decision, policy: CompiledPolicy, accept: str | None) -> ShieldResponse:
    """The answer for block and throttle (challenge pages come from scrapeshield.challenge)."""
    action = decision.action
    if action is Action.THROTTLE:
        status = decision.status or policy.throttle_status
    else:
        status = decision.status or policy.block_status
    title, text = _TITLES.get(action, _TITLES[Action.BLOCK])
    headers = [("Shield-Action", action.value), ("Cache-Control", "no-store")]
    headers += rate_headers(decision)
    if wants_json(accept):
        payload: dict[str, object] = {"error": title, "action": action.value}
        if decision.rate is not None:
            payload["retry_after"] = max(1, math.ceil(decision.rate.retry_after))
        body = json.dumps(payload).encode()
        headers.append(("Content-Type", "application/json"))
    else:
        body = (
            "<!doctype html><html><head><meta charset=utf-8><meta name=robots content=noindex>"
            f"<title>{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>"
            f"<p>{html.escape(text)}</p></body></html>"
        ).encode()
        headers.append(("Content-Type", "text/html; charset=utf-8"))
    return ShieldResponse(status, tuple(headers), body)

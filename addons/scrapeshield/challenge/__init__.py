"""Proof-of-work challenges and signed clearance cookies. Pure: no mitmproxy in here.

The addon asks `ChallengeService.check_clearance` for a challenged rule, answers with
`challenge_response` when there is none, and hands requests under `/.shield/` to `handle`.
See docs/challenge.md.
"""
from __future__ import annotations

from ..responses import ShieldResponse
from .binding import ClientBinding, ip_prefix
from .clearance import COOKIE_NAME, CookieResult, issue_cookie, set_cookie_value, verify_cookie
from .config import ChallengeConfig
from .endpoints import ChallengeService
from .keys import KeyRing, KeyRingError
from .page import render_challenge_page, render_wait_page
from .pow import DEFAULT_DIFFICULTY, MAX_DIFFICULTY, Challenge, VerifyResult, issue, verify
from .redirect import safe_return_path
from .wait import WaitChallenge, issue_wait, verify_wait

__all__ = [
    "COOKIE_NAME", "DEFAULT_DIFFICULTY", "MAX_DIFFICULTY", "Challenge", "ChallengeConfig", "ChallengeService",
    "ClientBinding", "CookieResult", "KeyRing", "KeyRingError", "ShieldResponse", "VerifyResult", "WaitChallenge",
    "ip_prefix", "issue", "issue_cookie", "issue_wait", "render_challenge_page", "render_wait_page",
    "safe_return_path", "set_cookie_value", "verify", "verify_cookie", "verify_wait",
]

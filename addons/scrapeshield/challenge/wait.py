"""The no-JavaScript challenge: wait N seconds, then follow a meta refresh.

Weak by design and documented as such: it costs a client wall-clock time, not CPU, and a
harvester waits on thousands of identities in parallel for free. It only stops clients that do
not follow `<meta http-equiv=refresh>` or do not wait. Offer it only where browsers without
JavaScript must get through.
"""
from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

from ..store.base import StoreError
from .binding import ClientBinding, same
from .keys import KeyRing
from .pow import MAX_RULE_LEN, SpendOnce, VerifyResult
from .redirect import safe_return_path
from .tokens import seal, unseal

KIND = "w"
DEFAULT_WAIT = 5  # seconds
WAIT_TTL = 300.0  # seconds after not_before that the token stays good


@dataclass(frozen=True, slots=True)
class WaitChallenge:
    token: str
    not_before: float
    expires: float
    rule: str
    return_to: str
    wait: int  # seconds the page asks the browser to wait before it follows the refresh


def issue_wait(keys: KeyRing, binding: ClientBinding, rule: str, wait_seconds: int, return_to: str,
               now: float, ttl: float = WAIT_TTL) -> WaitChallenge:
    if wait_seconds < 0:
        raise ValueError("wait_seconds must be >= 0")
    ident = secrets.token_hex(16)
    not_before = int(now) + wait_seconds  # whole seconds: the refresh delay is whole seconds too
    expires = not_before + int(ttl)
    rule = rule[:MAX_RULE_LEN]
    path = safe_return_path(return_to)
    token = seal(keys, KIND, [ident, not_before, expires, rule, binding.ip_tag, binding.ua_hash, path])
    return WaitChallenge(token, float(not_before), float(expires), rule, path, wait_seconds)


def read_wait(keys: KeyRing, token: object, now: float) -> WaitChallenge | str:
    """A wait token's signed contents (to re-render its page when it came early), or a refusal reason."""
    fields = unseal(keys, KIND, token)
    if isinstance(fields, str):
        return fields
    try:
        _, not_before, expires, rule, _, _, return_to = fields
        left = max(0, math.ceil(float(not_before) - now))
        return WaitChallenge(str(token), float(not_before), float(expires), str(rule), str(return_to), left)
    except (TypeError, ValueError):
        return "malformed"


async def verify_wait(keys: KeyRing, token: object, binding: ClientBinding, now: float,
                      spend_once: SpendOnce) -> VerifyResult:
    """Reasons: ok, malformed, bad_signature, expired, too_early, wrong_client, wrong_ua, replayed."""
    fields = unseal(keys, KIND, token)
    if isinstance(fields, str):
        return VerifyResult(False, fields)
    try:
        ident, not_before, expires, rule, ip_tag, ua_hash, return_to = fields
        not_before, expires, ident = float(not_before), float(expires), str(ident)
    except (TypeError, ValueError):
        return VerifyResult(False, "malformed")
    if now >= expires:
        return VerifyResult(False, "expired", rule, return_to, expires)
    if now < not_before:
        return VerifyResult(False, "too_early", rule, return_to, expires)
    if not same(ip_tag, binding.ip_tag):
        return VerifyResult(False, "wrong_client", rule, return_to, expires)
    if not same(ua_hash, binding.ua_hash):
        return VerifyResult(False, "wrong_ua", rule, return_to, expires)
    try:
        fresh = await spend_once(f"shield:wait:{ident}", expires, now)
    except StoreError:  # the fail-closed store is down: single use cannot be promised
        return VerifyResult(False, "store_unavailable", rule, return_to, expires)
    if not fresh:
        return VerifyResult(False, "replayed", rule, return_to, expires)
    return VerifyResult(True, "ok", rule, return_to, expires)

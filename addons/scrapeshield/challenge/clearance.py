"""The clearance cookie: proof that this browser solved a rule's challenge recently.

Signed (HMAC-SHA256), expiring, and bound to the client's network prefix, a hash of its
User-Agent, its session (when it had one: see `scrapeshield.session`) and the rules it was
earned for, so a cookie copied to another network, another client stack, another session or a
stricter rule is worthless there.

One cookie holds up to MAX_RULES rules and up to one prefix per address family. A browser that
solves a second rule's challenge, or the same challenge over its other address family
(dual-stack), gets one cookie covering both instead of two cookies that keep replacing each
other -- the re-challenge loop. Merging needs the old cookie to be genuine, unexpired, of the
same User-Agent and either of this prefix or of the other family; a cookie from another network
of the same family is replaced, never merged, so clearance does not travel between networks.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from .binding import ClientBinding, same, short_hash
from .keys import KeyRing
from .tokens import MAX_TOKEN_LEN, seal, unseal

KIND = "c"
COOKIE_NAME = "shield_clearance"
DEFAULT_TTL = 3600.0
MAX_RULES = 8
MAX_COOKIE_VALUES = 4  # same-name cookies looked at (path/domain variants); more is hostile
MAX_COOKIE_PAIRS = 256  # cookies of a Cookie header looked at; the rest of a 100 KB header is not read


@dataclass(frozen=True, slots=True)
class CookieResult:
    ok: bool
    reason: str  # ok, missing, malformed, bad_signature, expired, wrong_ua, wrong_client, wrong_session, wrong_rule


@dataclass(frozen=True, slots=True)
class _Cookie:
    expires: float
    ua_hash: str
    ip_tags: tuple[str, ...]
    rule_tags: tuple[str, ...]
    session: str = ""  # "" for a cookie earned without a session


@functools.lru_cache(maxsize=1024)  # pure; a policy's few challenge rules, checked on every cleared request
def rule_tag(rule: str) -> str:
    return short_hash("rule\x00" + rule)


def issue_cookie(keys: KeyRing, binding: ClientBinding, rule: str, ttl: float, now: float,
                 carry: str | None = None) -> str:
    """A cookie value for `rule`; `carry` is the client's current cookie, merged in when allowed."""
    ip_tags = [binding.ip_tag]
    rule_tags = [rule_tag(rule)]
    old = _read(keys, carry) if carry else None
    if (isinstance(old, _Cookie) and now < old.expires and same(old.ua_hash, binding.ua_hash)
            and same(old.session, binding.session)):
        same_prefix = binding.ip_tag in old.ip_tags
        other_family_only = all(t[0] != binding.family for t in old.ip_tags)
        if same_prefix or other_family_only:
            ip_tags += [t for t in old.ip_tags if t[0] != binding.family]
            rule_tags += [t for t in old.rule_tags if t not in rule_tags]
    fields: list[object] = [int(now + ttl), binding.ua_hash, ip_tags[:2], rule_tags[:MAX_RULES]]
    if binding.session:
        fields.append(binding.session)
    return seal(keys, KIND, fields)


def verify_cookie(keys: KeyRing, value: str | None, binding: ClientBinding, rule: str | None,
                  now: float) -> CookieResult:
    """`rule` None: clearance for any rule (what a clearance's record budget is counted for)."""
    if not value:
        return CookieResult(False, "missing")
    cookie = _read(keys, value)
    if isinstance(cookie, str):
        return CookieResult(False, cookie)
    if now >= cookie.expires:
        return CookieResult(False, "expired")
    if not same(cookie.ua_hash, binding.ua_hash):
        return CookieResult(False, "wrong_ua")
    if binding.ip_tag not in cookie.ip_tags:
        return CookieResult(False, "wrong_client")
    if cookie.session and not same(cookie.session, binding.session):
        return CookieResult(False, "wrong_session")  # earned by another session: not this one's
    if rule is not None and rule_tag(rule) not in cookie.rule_tags:
        return CookieResult(False, "wrong_rule")
    return CookieResult(True, "ok")


def _read(keys: KeyRing, value: str) -> _Cookie | str:
    """The cookie a value holds, or why none: what `unseal` and the fields say, which depends on the
    value and the (immutable) key ring alone -- expiry, client and rule are judged per request by
    `verify_cookie` -- so it is remembered per value (bounded; a value longer than any token is
    refused unread, as `unseal` refuses it, and never remembered)."""
    if len(value) > MAX_TOKEN_LEN:
        return "malformed"
    return _read_sealed(keys, value)


@functools.lru_cache(maxsize=4096)
def _read_sealed(keys: KeyRing, value: str) -> _Cookie | str:
    fields = unseal(keys, KIND, value)
    if isinstance(fields, str):
        return fields
    try:
        if len(fields) == 4:
            expires, ua_hash, ip_tags, rule_tags = fields
            session = ""
        else:
            expires, ua_hash, ip_tags, rule_tags, session = fields
            if not isinstance(session, str) or not session:
                return "malformed"
        return _Cookie(float(expires), str(ua_hash), tuple(map(str, ip_tags)), tuple(map(str, rule_tags)), session)
    except (TypeError, ValueError):
        return "malformed"


# -- HTTP plumbing -------------------------------------------------------------------------------
def set_cookie_value(name: str, value: str, max_age: int, secure: bool) -> str:
    """The Set-Cookie header value.

    HttpOnly: page scripts never need it. SameSite=Lax: sent on top-level navigations from other
    sites (a link from a search result is not re-challenged), not on their subresource requests.
    Secure only over TLS, or plain-HTTP deployments could never store it.
    """
    attrs = f"{name}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Lax"
    return attrs + "; Secure" if secure else attrs


def cookie_values(cookie_header: str | None, name: str = COOKIE_NAME) -> list[str]:
    """Every value of cookie `name` in a Cookie header (browsers may send several with one name)."""
    if not cookie_header or name not in cookie_header:  # no pair can be named `name`: spare the split
        return []
    values = []
    for pair in cookie_header.split(";", MAX_COOKIE_PAIRS)[:MAX_COOKIE_PAIRS]:  # bounded: as facts.cookies
        key, sep, value = pair.partition("=")
        if sep and key.strip() == name:
            values.append(value.strip().strip('"'))
            if len(values) >= MAX_COOKIE_VALUES:
                break
    return values

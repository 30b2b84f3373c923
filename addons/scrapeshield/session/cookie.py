"""The session cookie: a first-party identity every client gets on its first response.

    shield_session = s.<kid>.<payload>.<mac>      payload = base64url JSON [id, issued, net, stack, returned]

- `id`: 16 random URL-safe characters (96 bits), what the `session` key part counts by;
- `issued`: integer Unix seconds when the session was minted;
- `net`: the family and a hash of the client's network prefix (/24, /64) at the last issue;
- `stack`: a hash of the client software stack (JA4 + UA class) at issue;
- `returned`: 0 until the client has presented the cookie once, then 1; 2 once the session has
  a person's history -- it followed a link from a page it fetched, whose assets it loaded (see
  `session/state.py`, HISTORY).

Signed with the challenge key ring (`challenge/keys.py`), so rotation works as for clearance and
replicas sharing the secret accept each other's sessions. Decoding is strict and canonical: the
MAC first (constant time), then exact types, then the payload must re-encode to the very bytes
that were signed. Anything else -- forged, expired, signed by a key this replica lacks, issued to
another stack -- reads as *no session*: never an error, never a credential.
"""
from __future__ import annotations

import functools
import json
import secrets
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..challenge.binding import same, short_hash
from ..challenge.keys import KeyRing
from ..challenge.tokens import MAX_TOKEN_LEN, b64e, seal_encoded, unseal
from ..memo import remember

KIND = "s"
COOKIE_NAME = "shield_session"
DEFAULT_TTL = 7 * 86400.0
MAX_CLOCK_SKEW = 300.0  # a replica whose clock runs ahead may issue "future" sessions, this far
MAX_COOKIE_VALUES = 4  # same-name cookies looked at (path/domain variants); more is hostile
HISTORY = 2  # `returned` of a session that has shown a person's history
MAX_SCAN = 16384  # bytes of a Cookie header searched for the session: a 100 KB header costs no more

ID_LEN, TAG_LEN = 16, 12  # a session id and a hash tag, in URL-safe base64 characters


def _url_safe(text: str, length: int) -> bool:
    """`text` is `length` characters of [A-Za-z0-9_-]: string methods, a fraction of a regex call."""
    return len(text) == length and text.isascii() and text.replace("-", "a").replace("_", "a").isalnum()


def _is_id(text: str) -> bool:
    return _url_safe(text, ID_LEN)


def _is_tag(text: str) -> bool:
    return _url_safe(text, TAG_LEN)


def _is_net(text: str) -> bool:
    """"4" or "6" and a tag."""
    return len(text) == TAG_LEN + 1 and (text[0] == "4" or text[0] == "6") and _url_safe(text, TAG_LEN + 1)


@dataclass(frozen=True, slots=True, init=False)
class SessionCookie:
    id: str
    issued: int
    net: str  # "4" or "6" + short_hash(prefix)
    stack: str  # short_hash of the stack text
    returned: int  # 0 never presented back, 1 presented back, HISTORY: presented back with a person's history

    # init=False, this __init__: native when compiled (docs/architecture.md, "The compiled core")
    def __init__(self, id: str, issued: int, net: str, stack: str, returned: int) -> None:
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "issued", issued)
        object.__setattr__(self, "net", net)
        object.__setattr__(self, "stack", stack)
        object.__setattr__(self, "returned", returned)

    @property
    def has_history(self) -> bool:
        return self.returned >= HISTORY

    def encode(self, keys: KeyRing) -> str:
        return seal_encoded(keys, KIND, seal_payload(self))

    def _fields(self) -> list[object]:
        return [self.id, self.issued, self.net, self.stack, int(self.returned)]


@dataclass(slots=True)  # not frozen: one per request (see store.base.BucketCheck, init=False); a value, never changed
class PresentedSession:
    """What the request's Cookie header says about its session.

    `cookie` is set only for a genuine, unexpired cookie of this client's stack. `other_stack`
    is a genuine, unexpired cookie issued to another stack (a signal, not a session).
    """

    cookie: SessionCookie | None
    reason: str  # ok, missing, malformed, bad_signature, expired, other_stack
    other_stack: SessionCookie | None = None

    # init=False, this __init__: native when compiled (docs/architecture.md, "The compiled core")
    def __init__(self, cookie: SessionCookie | None, reason: str, other_stack: SessionCookie | None = None) -> None:
        self.cookie = cookie
        self.reason = reason
        self.other_stack = other_stack


NO_SESSION = PresentedSession(None, "missing")


def new_session_id() -> str:
    """96 random bits as ID_LEN URL-safe characters."""
    return secrets.token_urlsafe(12)


# Pure and asked on every request for the same few networks and stacks: remembered, bounded
# (emptied when full; a dict lookup costs a fraction of an lru_cache call).
_NET_TAGS: dict[str, str] = {}
_STACK_TAGS: dict[str, str] = {}
_MAX_NET_TAGS = 16384
_MAX_STACK_TAGS = 4096


def net_tag(prefix: str) -> str:
    tag = _NET_TAGS.get(prefix)
    if tag is None:
        tag = remember(_NET_TAGS, prefix, ("6" if ":" in prefix else "4") + short_hash(prefix), _MAX_NET_TAGS)
    return tag


def stack_tag(stack: str) -> str:
    tag = _STACK_TAGS.get(stack)
    if tag is None:
        tag = remember(_STACK_TAGS, stack, short_hash("stack\x00" + stack), _MAX_STACK_TAGS)
    return tag


def mint(prefix: str, stack: str, now: float) -> SessionCookie:
    return SessionCookie(new_session_id(), int(now), net_tag(prefix), stack_tag(stack), 0)


def decode(keys: KeyRing, value: str) -> SessionCookie | str:
    """The cookie, or why it is none: malformed or bad_signature. Expiry is the caller's (`read`)."""
    fields = unseal(keys, KIND, value)
    if isinstance(fields, str):
        return fields
    cookie = _cookie_of(fields)
    # Canonical: exactly one encoding per session (no padding variants, spaces, key order, 1.0 for 1).
    if isinstance(cookie, SessionCookie) and seal_payload(cookie) != value.split(".")[2]:
        return "malformed"
    return cookie


def _cookie_of(fields: list[Any]) -> SessionCookie | str:
    """A genuine payload's fields as a cookie, if they are exactly what a session cookie holds."""
    if len(fields) != 5:
        return "malformed"
    sid, issued, net, stack, returned = fields
    if (not isinstance(sid, str) or not _is_id(sid)
            or type(issued) is not int or not 0 <= issued < 1 << 40
            or not isinstance(net, str) or not _is_net(net)
            or not isinstance(stack, str) or not _is_tag(stack)
            or type(returned) is not int or returned not in (0, 1, HISTORY)):
        return "malformed"
    return SessionCookie(sid, issued, net, stack, returned)


def seal_payload(cookie: SessionCookie) -> str:
    """The cookie's payload as `seal` writes it: b64e of its fields' compact JSON."""
    return b64e(_json_of(cookie, _canonical_json(cookie)).encode("ascii"))


def _json_of(cookie: SessionCookie, canonical: str | None) -> str:
    if canonical is not None:
        return canonical
    return json.dumps(cookie._fields(), separators=(",", ":"), ensure_ascii=True)


def _canonical_json(cookie: SessionCookie) -> str | None:
    """The fields' compact JSON if `_cookie_of` accepts them as they are (exact types and alphabets),
    else None. Such fields are URL-safe text and small integers, which JSON writes as they are:
    formatted directly, what the JSON encoder would write at a fraction of its cost."""
    issued, returned = cookie.issued, cookie.returned
    if (type(issued) is int and 0 <= issued < 1 << 40 and type(returned) is int and returned in (0, 1, HISTORY)
            and _is_id(cookie.id) and _is_net(cookie.net) and _is_tag(cookie.stack)):
        return f'["{cookie.id}",{issued},"{cookie.net}","{cookie.stack}",{returned}]'
    return None


class Decoder:
    """`decode` with one key ring, remembered per value (bounded LRU). A browser presents the same
    cookie on every request, and a decode is base64, an HMAC, JSON and a re-encoding; its result
    depends on the value and the (immutable) key ring alone -- expiry and stack are judged per
    request by `read` -- so a remembered result is the result. Forged values churn the LRU at
    most: a genuine cookie evicted by them costs one decode again.

    `encode` remembers the values this shield issues as they decode: the cookie itself (a value
    sealed here moments ago carries this ring's MAC over exactly these fields), so a session's
    new cookie costs no decode when it comes back. Except a new session's first cookie: a client
    that keeps no cookies is given one on every request and never sends it back, and each kept
    would be one more long-lived object for the garbage collector to walk; one that does come
    back costs one decode, once per session."""

    __slots__ = ("_known", "keys", "max_entries")

    def __init__(self, keys: KeyRing, max_entries: int = 16384) -> None:
        self.keys = keys
        self.max_entries = max_entries
        self._known: OrderedDict[str, SessionCookie | str] = OrderedDict()

    def __call__(self, value: str) -> SessionCookie | str:
        known = self._known
        found = known.get(value)
        if found is None:
            found = decode(self.keys, value)
            if len(value) <= MAX_TOKEN_LEN:  # longer is never a cookie, and never kept
                self._remember(value, found)
        else:
            known.move_to_end(value)
        return found

    def encode(self, cookie: SessionCookie) -> str:
        """`cookie.encode(keys)`; the value is remembered as `decode` reads it (the same cookie,
        unless its fields are ones `decode` refuses: then it is not remembered)."""
        canonical = _canonical_json(cookie)
        value = seal_encoded(self.keys, KIND, b64e(_json_of(cookie, canonical).encode("ascii")))
        if cookie.returned and len(value) <= MAX_TOKEN_LEN and canonical is not None:
            self._remember(value, cookie)
        return value

    def _remember(self, value: str, found: SessionCookie | str) -> None:
        known = self._known
        known[value] = found
        if len(known) > self.max_entries:
            known.popitem(last=False)

    def __len__(self) -> int:
        return len(self._known)


DecodeValue = Callable[[str], "SessionCookie | str"]  # a cookie value -> decode(keys, value)


def read(keys: KeyRing | DecodeValue, cookie_header: str | None, stack: str, now: float, ttl: float,
         name: str = COOKIE_NAME) -> PresentedSession:
    """The session a request presents; the first good value wins among a bounded few. `keys`:
    the key ring, or a `Decoder` of it."""
    values = cookie_values(cookie_header, name)
    if not values:
        return NO_SESSION
    decode_value = functools.partial(decode, keys) if isinstance(keys, KeyRing) else keys
    return read_decoded([decode_value(value) for value in values], stack, now, ttl)


def read_decoded(decoded: Sequence[SessionCookie | str], stack: str, now: float, ttl: float) -> PresentedSession:
    """`read` of the session cookie values already decoded (`decode` of each, in header order)."""
    if not decoded:
        return NO_SESSION
    want = stack_tag(stack)
    reason = "missing"
    other: SessionCookie | None = None
    for cookie in decoded:
        if isinstance(cookie, str):
            reason = cookie
            continue
        if not cookie.issued - MAX_CLOCK_SKEW <= now < cookie.issued + ttl:
            reason = "expired"
            continue
        if not same(cookie.stack, want):
            reason, other = "other_stack", cookie
            continue
        return PresentedSession(cookie, "ok")
    return PresentedSession(None, reason, other)


def cookie_values(cookie_header: str | None, name: str = COOKIE_NAME) -> list[str]:
    """Up to MAX_COOKIE_VALUES values of cookie `name`, from the first MAX_SCAN bytes of the header.

    A browser puts its cookies in a few hundred bytes; a header of thousands of cookies or 100 KB
    is hostile, and is searched no further than a browser's would need.
    """
    if not cookie_header:
        return []
    text = cookie_header[:MAX_SCAN]
    values = []
    for pair in text.split(";"):
        key, sep, value = pair.partition("=")
        if sep and key.strip() == name:
            value = value.strip()
            if 0 < len(value) <= MAX_TOKEN_LEN:
                values.append(value)
            if len(values) >= MAX_COOKIE_VALUES:
                break
    return values


def set_cookie_header(value: str, max_age: int, secure: bool, name: str = COOKIE_NAME) -> str:
    """HttpOnly (no script reads it), SameSite=Lax (sent on top-level navigations from other
    sites, so a search result's link keeps the session), Secure over TLS only (a plain-HTTP
    deployment could not store it otherwise)."""
    attrs = f"{name}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Lax"
    return attrs + "; Secure" if secure else attrs

"""Who a challenge or cookie belongs to: the client's network prefix and its User-Agent.

A prefix (/24, /64 by default) rather than the exact address, so that carrier NAT and IPv6
privacy addresses do not re-challenge a browser that already paid; a harvester that rotates
through networks still pays once per network and User-Agent.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from dataclasses import dataclass

from ..netaddr import cached_ip_prefix, ip_prefix

__all__ = ["ClientBinding", "ip_prefix", "short_hash"]


def short_hash(text: str) -> str:
    """72 bits of SHA-256 as 12 URL-safe characters: enough to tell clients apart, short for cookies."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()
    return base64.urlsafe_b64encode(digest[:9]).decode("ascii")


@dataclass(frozen=True, slots=True)
class ClientBinding:
    ip_prefix: str  # e.g. "203.0.113.0/24" or "2001:db8:1:2::/64"
    ua_hash: str  # short_hash of the User-Agent header ("" UA hashes too)
    session: str = ""  # short_hash of the client's session id; "" without a session

    @classmethod
    def of(cls, ip: str, user_agent: str, v4_bits: int = 24, v6_bits: int = 64,
           session_id: str | None = None) -> ClientBinding:
        return cls(cached_ip_prefix(ip, v4_bits, v6_bits), _ua_hash(user_agent),
                   _session_hash(session_id) if session_id else "")

    @property
    def family(self) -> str:
        return "6" if ":" in self.ip_prefix else "4"

    @property
    def ip_tag(self) -> str:
        """What tokens and cookies carry: the family and a hash of the prefix (no address in the clear)."""
        return _ip_tag(self.ip_prefix)


# Pure, and a client is bound on each of its requests that carries a clearance: its User-Agent and
# network prefix hashed once (bounded: 4096 User-Agents of a browser's length, longer ones hashed
# every time).
_MEMO_MAX_UA = 512
_remembered_ua_hash = functools.lru_cache(maxsize=4096)(short_hash)


def _ua_hash(user_agent: str) -> str:
    return _remembered_ua_hash(user_agent) if len(user_agent) <= _MEMO_MAX_UA else short_hash(user_agent)


def _session_hash(session_id: str) -> str:
    text = "session\x00" + session_id
    return _remembered_session_hash(text) if len(session_id) <= 64 else short_hash(text)


# A valid session's id is 16 characters (checked when its cookie is decoded).
_remembered_session_hash = functools.lru_cache(maxsize=16384)(short_hash)


@functools.lru_cache(maxsize=16384)
def _ip_tag(prefix: str) -> str:
    return ("6" if ":" in prefix else "4") + short_hash(prefix)


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())

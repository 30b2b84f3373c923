"""Signed, stateless tokens: `kind.kid.payload.mac`, the payload a base64url JSON list.

The MAC (HMAC-SHA256 under the key named by `kid`) covers kind, kid and payload, so a token of
one kind (challenge, wait, cookie) is never accepted as another. Nothing is parsed before the
MAC has been checked, in constant time.
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from .keys import KeyRing

MAX_TOKEN_LEN = 4096


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seal(keys: KeyRing, kind: str, fields: list[Any]) -> str:
    payload = b64e(json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode("ascii"))
    head = f"{kind}.{keys.signing_id}.{payload}"
    _, mac = keys.sign(head.encode("ascii"))
    return f"{head}.{b64e(mac)}"


def unseal(keys: KeyRing, kind: str, token: object) -> list[Any] | str:
    """The payload list, or a refusal reason: "malformed" or "bad_signature"."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LEN or not token.isascii():
        return "malformed"
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != kind:
        return "malformed"
    head, _, mac_text = token.rpartition(".")
    try:
        mac = b64d(mac_text)
    except (ValueError, binascii.Error):
        return "malformed"
    if len(mac) != 32:
        return "malformed"
    if not keys.verify(parts[1], head.encode("ascii"), mac):
        return "bad_signature"
    try:
        fields = json.loads(b64d(parts[2]))
    except (ValueError, binascii.Error):
        return "malformed"
    return fields if isinstance(fields, list) else "malformed"

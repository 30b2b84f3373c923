"""Signed, stateless tokens: `kind.kid.payload.mac`, the payload a base64url JSON list.

Decoding is strict and canonical: every token has exactly one accepted spelling (see `b64d`), and
lengths are checked before anything is decoded.

The MAC (HMAC-SHA256 under the key named by `kid`) covers kind, kid and payload, so a token of
one kind (challenge, wait, cookie) is never accepted as another. Nothing is parsed before the
MAC has been checked, in constant time.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from .keys import KeyRing

MAX_TOKEN_LEN = 4096
MAC_TEXT_LEN = 43  # 32 bytes, unpadded base64url
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str) -> bytes:
    """Strict, canonical unpadded base64url: the one spelling b64e produces, or ValueError.

    `base64.urlsafe_b64decode` skips characters outside the alphabet and ignores the unused low
    bits of the last character, so several texts decode to the same bytes; a token must have one
    spelling, or "the same" token can be replayed as a different string.
    """
    if len(text) % 4 == 1 or _B64URL.fullmatch(text) is None:
        raise ValueError("not unpadded base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64e(data) != text:
        raise ValueError("non-canonical base64url (unused bits set)")
    return data


def seal(keys: KeyRing, kind: str, fields: list[Any]) -> str:
    return seal_encoded(keys, kind, b64e(json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode("ascii")))


def seal_encoded(keys: KeyRing, kind: str, payload: str) -> str:
    """`seal` of a payload already encoded: b64e of the fields' JSON, exactly as `seal` writes it."""
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
    if len(mac_text) != MAC_TEXT_LEN:  # lengths before any decoding
        return "malformed"
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

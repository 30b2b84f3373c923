"""Proof-of-work challenges: stateless signed tokens, verified once.

The proof, exactly (the page's JavaScript implements the same):

    seed   = the challenge's 16 random bytes (sent to the page as 32 lower-case hex digits)
    nonce  = 1 to 32 ASCII characters from [A-Za-z0-9_-] (the page sends 12 decimal digits)
    digest = SHA-256(seed || nonce)                      -- 16 raw bytes, then the nonce's ASCII bytes
    valid  <=> the first `difficulty` bits of digest, most significant bit of byte 0 first, are all 0

A solver needs 2**difficulty hashes on average; the server checks one. `seed || nonce` is at
most 48 bytes, so it is one SHA-256 block, which keeps the JavaScript solver fast.

The token carries everything needed to check a solution (seed, difficulty, expiry, rule, client
binding, return path) under an HMAC, so any replica holding the key can verify it; the one piece
of shared state is the spent-token record (`Store.spend_once`) that makes a solution single-use.
"""
from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..store.base import StoreError
from .binding import ClientBinding, same
from .keys import KeyRing
from .redirect import safe_return_path
from .tokens import seal, unseal

KIND = "p"
SEED_BYTES = 16
MAX_DIFFICULTY = 32
DEFAULT_DIFFICULTY = 16  # bits; see docs/challenge.md for the measured solve times
CHALLENGE_TTL = 300.0  # seconds a browser has to solve and submit
MAX_RULE_LEN = 128
NONCE_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")

SpendOnce = Callable[[str, float, float], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Challenge:
    token: str
    seed: bytes
    difficulty: int
    expires: float
    rule: str
    return_to: str

    @property
    def seed_hex(self) -> str:
        return self.seed.hex()


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    # "ok" or a refusal: malformed, bad_signature, expired, wrong_client, wrong_ua, bad_proof, replayed,
    # store_unavailable (wait tokens also: too_early)
    reason: str
    rule: str = ""
    return_to: str = "/"
    expires: float = 0.0


def leading_zero_bits(digest: bytes) -> int:
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def proof_ok(seed: bytes, nonce: bytes, difficulty: int) -> bool:
    digest = hashlib.sha256(seed + nonce).digest()
    # A shift instead of counting bits: the same cost whatever the digest.
    return int.from_bytes(digest[:8], "big") >> (64 - difficulty) == 0 if difficulty else True


def issue(keys: KeyRing, binding: ClientBinding, rule: str, difficulty: int, return_to: str, now: float,
          ttl: float = CHALLENGE_TTL) -> Challenge:
    if not 0 <= difficulty <= MAX_DIFFICULTY:
        raise ValueError(f"difficulty must be 0..{MAX_DIFFICULTY} bits, not {difficulty}")
    seed = secrets.token_bytes(SEED_BYTES)
    expires = int(now + ttl)
    rule = rule[:MAX_RULE_LEN]
    path = safe_return_path(return_to)
    token = seal(keys, KIND, [seed.hex(), difficulty, expires, rule, binding.ip_tag, binding.ua_hash, path])
    return Challenge(token, seed, difficulty, float(expires), rule, path)


async def verify(keys: KeyRing, token: object, nonce: object, binding: ClientBinding, now: float,
                 spend_once: SpendOnce) -> VerifyResult:
    fields = unseal(keys, KIND, token)
    if isinstance(fields, str):
        return VerifyResult(False, fields)
    try:
        seed_hex, difficulty, expires, rule, ip_tag, ua_hash, return_to = fields
        seed = bytes.fromhex(seed_hex)
        if len(seed) != SEED_BYTES or not isinstance(difficulty, int) or not 0 <= difficulty <= MAX_DIFFICULTY:
            raise ValueError
        expires = float(expires)
    except (TypeError, ValueError):
        return VerifyResult(False, "malformed")
    if now >= expires:
        return VerifyResult(False, "expired", rule, return_to, expires)
    if not same(ip_tag, binding.ip_tag):
        return VerifyResult(False, "wrong_client", rule, return_to, expires)
    if not same(ua_hash, binding.ua_hash):
        return VerifyResult(False, "wrong_ua", rule, return_to, expires)
    if not isinstance(nonce, str) or not NONCE_RE.fullmatch(nonce):
        return VerifyResult(False, "bad_proof", rule, return_to, expires)
    if not proof_ok(seed, nonce.encode("ascii"), difficulty):
        return VerifyResult(False, "bad_proof", rule, return_to, expires)
    # Last, after every cheap check: only a valid solution may use up its challenge.
    try:
        fresh = await spend_once(f"shield:pow:{seed_hex}", expires, now)
    except StoreError:  # the fail-closed store is down: single use cannot be promised
        return VerifyResult(False, "store_unavailable", rule, return_to, expires)
    if not fresh:
        return VerifyResult(False, "replayed", rule, return_to, expires)
    return VerifyResult(True, "ok", rule, return_to, expires)

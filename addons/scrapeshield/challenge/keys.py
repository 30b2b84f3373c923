"""The HMAC secrets that sign challenge tokens and clearance cookies.

The first key signs; every key verifies, so a key is rotated by putting the new one first and
dropping the old one after the longest token/cookie lifetime has passed. Replicas that load the
same secrets accept each other's challenges and cookies. Each token names its key by a short
key id, so verification costs one HMAC whatever the ring's size.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

MIN_KEY_BYTES = 32
DEFAULT_ENV = "SCRAPESHIELD_CHALLENGE_KEYS"
_HEX = re.compile(r"[0-9a-fA-F]+")
_DOMAIN = b"scrapeshield/challenge/v1\x00"  # keeps these MACs apart from any other use of the key


class KeyRingError(ValueError):
    """Secrets missing, unreadable or too weak; the message says where and why."""


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"scrapeshield/kid\x00" + key).hexdigest()[:8]


@dataclass(frozen=True, slots=True)
class KeyRing:
    keys: tuple[bytes, ...]
    source: str = "inline"
    # Key id -> the HMAC keyed with it and fed the domain, copied for each MAC: keying an HMAC
    # costs about as much as the MAC of a short message itself.
    _by_id: dict[str, hmac.HMAC] = field(init=False, repr=False, compare=False)
    # The signing key's id, hashed once: every cookie and token issued names it.
    _signing_id: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise KeyRingError(f"{self.source}: no challenge secret")
        by_id: dict[str, hmac.HMAC] = {}
        for i, key in enumerate(self.keys, 1):
            if len(key) < MIN_KEY_BYTES:
                raise KeyRingError(
                    f"{self.source}: secret #{i} is {len(key)} bytes; at least {MIN_KEY_BYTES} are needed "
                    f"(make one with: python -c 'import secrets; print(secrets.token_hex(32))')")
            kid = key_id(key)
            if kid not in by_id:
                by_id[kid] = hmac.new(key, _DOMAIN, hashlib.sha256)
        object.__setattr__(self, "_by_id", by_id)
        object.__setattr__(self, "_signing_id", key_id(self.keys[0]))

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def from_lines(cls, lines: Iterable[str], source: str = "inline") -> KeyRing:
        """One secret per line, hex or base64 (standard or URL-safe); blank lines and # comments skipped."""
        keys = []
        for n, raw in enumerate(lines, 1):
            text = raw.split("#", 1)[0].strip()
            if text:
                keys.append(_decode(text, f"{source}:{n}"))
        return cls(tuple(keys), source)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> KeyRing:
        p = Path(path)
        try:
            text = p.read_text(encoding="ascii")
            mode = p.stat().st_mode
        except (OSError, UnicodeDecodeError) as e:
            raise KeyRingError(f"cannot read challenge secrets from {p}: {e}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("challenge secret file %s is readable by group/others; chmod 600 it", p)
        return cls.from_lines(text.splitlines(), str(p))

    @classmethod
    def from_env(cls, var: str = DEFAULT_ENV, environ: dict[str, str] | None = None) -> KeyRing:
        """Comma-separated secrets in an environment variable, signing key first."""
        env = os.environ if environ is None else environ
        value = env.get(var, "")
        if not value.strip():
            raise KeyRingError(f"environment variable {var} is not set or empty")
        return cls.from_lines(value.split(","), f"${var}")

    @classmethod
    def generate(cls) -> KeyRing:
        """A random key for development: nothing signed with it survives a restart or another replica."""
        log.warning("challenge secret is ephemeral (generated at start): clearance cookies die with this "
                    "process and other replicas refuse them; configure a shared secret file for production")
        return cls((secrets.token_bytes(MIN_KEY_BYTES),), "generated")

    # -- use -------------------------------------------------------------------------------------
    @property
    def signing_id(self) -> str:
        return self._signing_id

    def sign(self, message: bytes) -> tuple[str, bytes]:
        """(key id, MAC) of `message` under the signing key."""
        mac = self._by_id[self._signing_id].copy()
        mac.update(message)
        return self._signing_id, mac.digest()

    def verify(self, kid: str, message: bytes, mac: bytes) -> bool:
        keyed = self._by_id.get(kid)
        if keyed is None:
            return False
        mine = keyed.copy()
        mine.update(message)
        return hmac.compare_digest(mine.digest(), mac)


def _decode(text: str, where: str) -> bytes:
    try:
        if _HEX.fullmatch(text) and len(text) % 2 == 0:
            return bytes.fromhex(text)
        padded = text + "=" * (-len(text) % 4)
        return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (ValueError, binascii.Error):
        raise KeyRingError(f"{where}: not a hex or base64 secret") from None

"""Helpers for the challenge end-to-end tests: policy, key file, shield start-up, a Python PoW solver."""
from __future__ import annotations

import hashlib
import html
import re
import secrets
from pathlib import Path
from typing import Any

import httpx

from harness import ShieldProcess

BITS = 14
# Besides the pages, the gate also takes odd request targets (`//evil.com`, `/\\evil.com`, `/"...`), so
# that they reach the challenge and its return-path handling instead of the origin's 404. `path`
# sees the canonical path (`//evil.com` is `/evil.com` there): the odd spellings are `raw_path`.
GATE_POLICY = f"""
version: 1
rules:
  - name: gate
    match:
      any:
        - {{path: [/products/*, /user/*, /]}}
        - {{raw_path: ['//*', '/\\*', '/"*']}}
    action: challenge
    difficulty: {BITS}
"""


def write_key_file(directory: Path) -> Path:
    path = directory / "challenge.keys"
    path.write_text(f"# test key\n{secrets.token_hex(32)}\n")
    path.chmod(0o600)
    return path


def start_shield(tmp: Path, upstream: str, policy_text: str) -> ShieldProcess:
    keys = write_key_file(tmp)
    return ShieldProcess(upstream, policy_text=policy_text, workdir=tmp / "shield",
                         extra_args=["--secret-file", str(keys)]).start()


# --- the proof of work, solved in Python -------------------------------------------------------

_FORM = re.compile(r'data-seed="([0-9a-f]{32})" data-bits="(\d+)"')
_TOKEN = re.compile(r'<input type="hidden" name="token" value="([^"]+)">')


def parse_challenge(page: str) -> tuple[str, bytes, int]:
    """(token, seed, difficulty) from a challenge page."""
    form, token = _FORM.search(page), _TOKEN.search(page)
    assert form and token, page[:500]
    return html.unescape(token.group(1)), bytes.fromhex(form.group(1)), int(form.group(2))


def solve(seed: bytes, bits: int) -> str:
    """Brute-force a nonce per docs/challenge.md: SHA-256(seed || nonce) starts with `bits` zero bits."""
    for i in range(1 << 30):
        nonce = str(i)
        if int.from_bytes(hashlib.sha256(seed + nonce.encode()).digest(), "big") >> (256 - bits) == 0:
            return nonce
    raise AssertionError("no nonce")


def challenge_and_solve(client: httpx.Client, path: str) -> dict[str, str]:
    """GET a challenged path, check it is challenged, and return the solved form (token, nonce)."""
    r = client.get(path)
    assert r.status_code == 403 and r.headers["shield-action"] == "challenge", (r.status_code, r.headers)
    token, seed, bits = parse_challenge(r.text)
    assert bits == BITS
    return {"token": token, "nonce": solve(seed, bits)}


def metric_values(admin_url: str, name: str = "scrapeshield_challenge_events_total") -> dict[str, float]:
    text = httpx.get(f"{admin_url}/metrics", trust_env=False, timeout=5).text
    out: dict[str, float] = {}
    for m in re.finditer(rf'^{name}\{{result="([^"]+)"\}} (\S+)$', text, re.MULTILINE):
        out[m.group(1)] = float(m.group(2))
    return out


def path_count(stats: dict[str, Any], path: str) -> int:
    return int(stats["paths"].get(path, 0))

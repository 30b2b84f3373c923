"""One JSON line per non-allow decision, on a sink of the operator's choosing."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
from typing import IO

from .context import DecisionContext
from .decision import Action, Decision
from .facts import RequestFacts


class DecisionLog:
    """Writes `{"time", "client", "key", "rule", "action", "enforced", "reason", ...}` per line.

    With `hash_ips`, client addresses (and keys, which may contain them) are replaced by a keyed
    BLAKE2 hash: stable for correlation, useless to anyone without the key
    (`SCRAPESHIELD_LOG_KEY`, else a per-process random key).
    """

    def __init__(self, sink: str = "-", hash_ips: bool = False, hash_key: bytes | None = None) -> None:
        self.path = sink
        self._fh: IO[str] = sys.stderr if sink in ("-", "stderr", "") else open(sink, "a", buffering=1, encoding="utf-8")
        self.hash_ips = hash_ips
        env_key = os.environ.get("SCRAPESHIELD_LOG_KEY", "").encode()
        self._key = hash_key or env_key or os.urandom(16)

    def _anon(self, value: str) -> str:
        if not self.hash_ips or not value:
            return value
        return "h:" + hmac.new(self._key, value.encode(), hashlib.blake2b).hexdigest()[:16]

    def record(self, facts: RequestFacts, decision: Decision, now: float, extra: dict[str, object] | None = None,
               *, context: DecisionContext | None = None) -> None:
        """A line for a non-allow decision, or for any decision that carries `extra` (e.g. a shadow
        policy's different verdict on an allowed request); one more per monitored decision.
        `context`: the decision's own, so the fingerprint it computed is not computed again."""
        own_line = extra is not None or decision.action is not Action.ALLOW or decision.rule == "error"
        if not own_line and not decision.shadowed:
            return
        ctx = context if context is not None else DecisionContext(facts)
        if own_line:
            self._write(ctx, decision, now, extra)
        for shadow in decision.shadowed:
            self._write(ctx, shadow, now, None)

    def _write(self, ctx: DecisionContext, d: Decision, now: float, extra: dict[str, object] | None) -> None:
        facts = ctx.facts
        line: dict[str, object] = {
            "time": round(now, 3), "client": self._anon(facts.client_ip), "key": self._anon(d.key),
            "rule": d.rule, "action": d.action.value, "enforced": d.enforced, "reason": d.reason,
            "method": facts.method, "host": facts.host, "path": facts.path[:512],
        }
        line["fp"] = _fingerprint_fields(ctx)
        if d.rate is not None:
            line["bucket"] = {"name": d.rate.policy_name, "quota": d.rate.quota, "window": d.rate.window,
                              "burst": d.rate.burst, "remaining": d.rate.remaining,
                              "retry_after": round(d.rate.retry_after, 3)}
        if d.score is not None:
            line["score"] = round(d.score, 2)
        if extra:
            line.update(extra)
        try:
            self._fh.write(json.dumps(line, separators=(",", ":")) + "\n")
        except (OSError, ValueError):
            pass  # a full disk must not take the proxy down

    def close(self) -> None:
        if self._fh is not sys.stderr:
            self._fh.close()


def _fingerprint_fields(ctx: DecisionContext) -> dict[str, object]:
    """Who the client looked like: what an operator needs to write the next rule."""
    try:
        fp = ctx.fingerprint
    except Exception:  # logging must never fail a request
        return {}
    out: dict[str, object] = {
        "ua_class": fp.ua.kind, "ua_family": fp.ua.family, "httpsig": fp.http.compact,
        "signals": sorted(fp.signals),
    }
    if fp.tls is not None:
        out.update(ja3=fp.tls.ja3_hash, ja4=fp.tls.ja4, tls_family=fp.tls.tls_family)
    return out

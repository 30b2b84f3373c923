"""One JSON line per non-allow decision (and per operator action), on a sink of the operator's
choosing: stderr, or a file that `reopen()` (SIGUSR1) reopens after logrotate moved it.

The default sink comes from `$SCRAPESHIELD_DECISION_LOG` when set: packaged and container
setups point it at a file (see docs/logging.md).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO

from .context import DecisionContext
from .decision import Action, Decision
from .facts import RequestFacts

DEFAULT_SINK_ENV = "SCRAPESHIELD_DECISION_LOG"
USER_AGENT_MAX = 512


def iso_time(t: float) -> str:
    """ISO 8601, UTC, milliseconds: `2026-11-29T10:00:00.123Z`."""
    return datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class DecisionLog:
    """Writes `{"time", "request_id", "client", "key", "rule", "action", "enforced", "reason",
    "status", "method", "host", "path", "user_agent", "signals", ...}` per line; `raw_path` too
    when the client's spelling of the path is not the canonical one the rules matched.

    With `hash_ips`, client addresses (and keys, which may contain them) are replaced by a keyed
    BLAKE2 hash: stable for correlation, useless to anyone without the key
    (`SCRAPESHIELD_LOG_KEY`, else a per-process random key).
    """

    def __init__(self, sink: str = "-", hash_ips: bool = False, hash_key: bytes | None = None) -> None:
        self.path = sink
        self._to_stderr = sink in ("-", "stderr", "")
        self._fh: IO[str] = sys.stderr if self._to_stderr else open(sink, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        self._lock = threading.Lock()  # reopen() may come from a signal handler thread
        # The status the shield answers a decision with (needs the policy): set by the runtime.
        self.answer_status: Callable[[Decision], int | None] | None = None
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
        if self.path == os.devnull:  # replay: nobody reads the lines, do not build them
            return
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
            "time": iso_time(now), "request_id": facts.request_id, "client": self._anon(facts.client_ip),
            "key": self._anon(d.key), "rule": d.rule, "action": d.action.value, "enforced": d.enforced,
            "reason": d.reason, "status": self.answer_status(d) if self.answer_status is not None else None,
            "method": facts.method, "host": facts.host, "path": facts.path[:512],
            "user_agent": facts.user_agent[:USER_AGENT_MAX],
        }
        if facts.raw_path != facts.path:  # what the client sent, when the rules saw it canonicalised
            line["raw_path"] = facts.raw_path[:512]
        fp = _fingerprint_fields(ctx)
        fp_signals = fp.get("signals", ())  # kept under `fp` too: the fingerprint's own signals
        signals = set(fp_signals) if isinstance(fp_signals, list | tuple | frozenset | set) else set()
        signals.update(n for n, v in ctx.detector_signals.items() if v)
        line["signals"] = sorted(signals)
        line["fp"] = fp
        if d.rate is not None:
            line["bucket"] = {"name": d.rate.policy_name, "quota": d.rate.quota, "window": d.rate.window,
                              "burst": d.rate.burst, "remaining": d.rate.remaining,
                              "retry_after": round(d.rate.retry_after, 3)}
        if d.score is not None:
            line["score"] = round(d.score, 2)
        if extra:
            line.update(extra)
        self._emit(line)

    def operator(self, event: str, now: float, **fields: object) -> None:
        """An operator's change through the control API (ban, unban, allow, unallow): always written."""
        line: dict[str, object] = {"time": iso_time(now), "event": event}
        line.update({k: self._anon(v) if k == "key" and isinstance(v, str) else v for k, v in fields.items()})
        self._emit(line)

    def _emit(self, line: dict[str, object]) -> None:
        text = json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n"
        with self._lock:
            try:
                self._fh.write(text)
            except (OSError, ValueError):
                pass  # a full disk must not take the proxy down

    def reopen(self) -> None:
        """Open the file again by name: logrotate has moved the old one away (SIGUSR1)."""
        if self._to_stderr or self.path == os.devnull:
            return
        with self._lock:
            try:
                fresh = open(self.path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - kept open
            except OSError:
                return  # keep writing to the old file rather than lose lines
            old, self._fh = self._fh, fresh
            old.close()

    def close(self) -> None:
        if not self._to_stderr:
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

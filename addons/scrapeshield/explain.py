"""Explain one decision: every rule in order with why it matched or not, the buckets the request
touched and what they have left, the signals and scores, and the decision.

Two ways in:

- `scrapeshield explain` runs the request through a policy on fresh state (as the first request
  of its client would be decided): `explain_offline`.
- `POST /api/explain` on the admin listener decides it against the live shield's state -- its
  buckets, bans, allow list, scores and detector memory -- without changing any of it:
  `explain_live`. Buckets are read, not spent; a ban the decision would set is reported, not set;
  the detectors observe the request on a copy of the client's own detector state.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .facts import RequestFacts
from .gcra import BucketState, conform_all, state_after
from .netaddr import parse_ip, resolve_client_ip
from .store.base import Batch, BatchResult, LogAppend, LogRead, Logs

if TYPE_CHECKING:
    from .engine import Engine
    from .runtime import ShieldRuntime
    from .store.base import KeyInspection, ListEntry

MAX_HEADERS = 100


@dataclass(frozen=True, slots=True)
class RequestDescription:
    """A request as an operator writes it down: method, URL, headers, client address."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    client: str = "127.0.0.1"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RequestDescription:
        url = data.get("url")
        if not isinstance(url, str) or not url:
            raise ValueError("url: required, e.g. https://shop.example/api/users/1")
        method = data.get("method", "GET")
        client = data.get("client", "127.0.0.1")
        if not isinstance(method, str) or not method.isalpha():
            raise ValueError("method: a word such as GET")
        if not isinstance(client, str) or parse_ip(client) is None:
            raise ValueError(f"client: {client!r} is not an IP address")
        raw = data.get("headers", {})
        pairs: list[tuple[str, str]] = []
        items = raw.items() if isinstance(raw, Mapping) else raw
        try:
            for name, value in items:
                if not isinstance(name, str) or not isinstance(value, str):
                    raise TypeError
                pairs.append((name, value))
        except (TypeError, ValueError):
            raise ValueError("headers: an object {name: value} or a list of [name, value] pairs") from None
        if len(pairs) > MAX_HEADERS:
            raise ValueError(f"headers: at most {MAX_HEADERS}")
        return cls(method.upper(), url, tuple(pairs), client)

    @classmethod
    def parse_header_args(cls, method: str, url: str, headers: Sequence[str], client: str) -> RequestDescription:
        """From the command line: headers as `Name: value` strings."""
        pairs = []
        for h in headers:
            name, sep, value = h.partition(":")
            if not sep or not name.strip():
                raise ValueError(f"-H {h!r}: want 'Name: value'")
            pairs.append((name.strip(), value.strip()))
        return cls.from_dict({"method": method, "url": url, "headers": pairs, "client": client})

    def facts(self, trusted_proxies: Any = None, now: float = 0.0) -> RequestFacts:
        parts = urlsplit(self.url if "://" in self.url else f"http://{self.url}")
        headers = list(self.headers)
        if not any(n.lower() == "host" for n, _ in headers) and parts.netloc:
            headers.insert(0, ("Host", parts.netloc))
        client_ip = self.client
        if trusted_proxies:
            xff = [v for n, v in headers if n.lower() == "x-forwarded-for"]
            fwd = [v for n, v in headers if n.lower() == "forwarded"]
            client_ip = resolve_client_ip(self.client, xff, fwd, trusted_proxies)
        host = next((v for n, v in headers if n.lower() == "host"), parts.netloc)
        return RequestFacts(peer_ip=self.client, client_ip=client_ip, method=self.method, scheme=parts.scheme or "http",
                            host=host, path=parts.path or "/", query=parts.query, headers=tuple(headers),
                            timestamp=now)


# --- the live state, read but never written --------------------------------------------------

class ReadOnlyView:
    """A store that answers a batch from another store's state without changing it: bans and the
    allow list as they are, buckets as they would answer (GCRA on the stored TAT, reconstructed as
    now + reset), scores as their value now plus this request's delta. `ban()` notes the ban."""

    name = "read-only view"
    sync_apply = None
    sync_append_logs = None

    def __init__(self, live: Any) -> None:
        self.live = live
        self.would_ban: list[tuple[str, float]] = []

    async def _inspect(self, cache: dict[str, KeyInspection], key: str, now: float) -> KeyInspection:
        found = cache.get(key)
        if found is None:
            found = cache[key] = await self.live.inspect(key, now)
        return found

    async def append_logs(self, appends: tuple[LogAppend, ...], now: float) -> Logs:
        """Each detector log as if it held only this request's entry: a store answers logs only by
        appending to them, so explain judges the request on its own (it never writes)."""
        return tuple(LogRead(1, (a.entry,), True) for a in appends)

    async def apply(self, batch: Batch, now: float) -> BatchResult:
        seen: dict[str, KeyInspection] = {}
        allowed_key = None
        for key in batch.ban_keys:
            if (await self._inspect(seen, key, now)).allow is not None:
                allowed_key = key
                break
        if allowed_key is None:
            for key in batch.ban_keys:
                ban: ListEntry | None = (await self._inspect(seen, key, now)).ban
                if ban is not None and ban.until > now:
                    return BatchResult(key, ban.until, -1, (), ())
        tats: list[float | None] = []
        for check in batch.buckets:
            state = (await self._inspect(seen, check.key, now)).buckets.get(check.bucket_id)
            tats.append(None if state is None or state.reset <= 0 else now + state.reset)
        limits = [c.limit for c in batch.buckets]
        refused, new = conform_all(tats, now, limits)
        ok = refused < 0
        states: tuple[BucketState, ...] = tuple(
            state_after(new[i] if ok else tats[i], now, lim, ok or i != refused) for i, lim in enumerate(limits))
        scores = []
        for up in batch.scores:
            value = (await self._inspect(seen, up.key, now)).scores.get(up.score_id, 0.0)
            scores.append(value + up.delta)
        return BatchResult(None, 0.0, refused, states, tuple(scores), allowed_key=allowed_key)

    async def ban(self, key: str, until: float, now: float, reason: str = "") -> None:
        self.would_ban.append((key, until))

    async def spend_once(self, token_id: str, expires: float, now: float) -> bool:
        return True

    def retain_buckets(self, bucket_ids: frozenset[str]) -> None:
        pass

    def tracked_keys(self) -> int:
        return 0

    def status(self) -> dict[str, object]:
        return {"backend": self.name}

    async def close(self) -> None:
        pass


# --- running and rendering ---------------------------------------------------------------------

def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else None
    if isinstance(value, StrEnum):
        return value.value
    return value


def trace_dict(trace: Any, *, live: bool, would_ban: Sequence[tuple[str, float]] = ()) -> dict[str, Any]:
    d = trace.decision
    out: dict[str, Any] = {
        "decision": {"action": d.action.value, "effective": d.effective.value, "enforced": d.enforced,
                     "rule": d.rule, "reason": d.reason, "key": d.key},
        "rules": [_jsonable(r) for r in trace.rules],
        "buckets": [_jsonable(b) for b in trace.buckets],
        "signals": {name: round(v, 4) for name, v in trace.signals},
        "scores": [_jsonable(s) for s in trace.scores],
        "detector_key": trace.detector_key,
        "banned_key": trace.banned_key,
        "state": "live (read, not changed)" if live else "fresh (a first request)",
    }
    if d.shadowed:
        out["monitored"] = [{"rule": s.rule, "action": s.action.value, "reason": s.reason} for s in d.shadowed]
    if would_ban:
        out["would_ban"] = [{"key": k, "until": round(u, 3)} for k, u in would_ban]
    return out


async def explain_offline(policy_path: str, description: RequestDescription, now: float | None = None
                          ) -> dict[str, Any]:
    """The decision for `description` under the policy at `policy_path`, on fresh state."""
    from .replay.core import replay_runtime

    runtime = replay_runtime(policy_path)
    try:
        if now is not None:
            runtime.clock.set(now)  # type: ignore[attr-defined]
        facts = description.facts(runtime.policy.trusted_proxies, runtime.clock.now())
        trace = await runtime.engine.explain(facts)
        return {"request": _request_dict(description, facts), "policy": _policy_dict(runtime),
                **trace_dict(trace, live=False)}
    finally:
        await runtime.stop()
        runtime.decision_log.close()


async def explain_live(runtime: ShieldRuntime, description: RequestDescription) -> dict[str, Any]:
    """The decision the live shield would make for `description` now, changing none of its state."""
    live = runtime.engine
    view = ReadOnlyView(runtime.store)
    facts = description.facts(runtime.policy.trusted_proxies, runtime.clock.now())
    trace = await _twin(live, view, facts).explain(facts)
    return {"request": _request_dict(description, facts), "policy": _policy_dict(runtime),
            **trace_dict(trace, live=True, would_ban=view.would_ban)}


def _twin(live: Engine, store: ReadOnlyView, facts: RequestFacts) -> Engine:
    """An engine deciding like `live` (same policy, clock, clearance, signal sources) on a read-only
    view of its store, with a copy of the client's detector memory, so deciding changes nothing.
    Monitored limit rules count on a fresh local store: they never change the effective decision."""
    from .context import DecisionContext
    from .detectors.policy import DETECTORS
    from .engine import Engine

    twin = Engine(live.policy, store, live.clock, clearance=live.clearance,  # type: ignore[arg-type]
                  signal_sources=live.signal_sources)
    section = live.policy.section(DETECTORS)
    if live.detectors is not None and section is not None:
        twin.detectors = live.detectors.fork(section.key.func(DecisionContext(facts)))
    return twin


def _request_dict(description: RequestDescription, facts: RequestFacts) -> dict[str, Any]:
    return {"method": facts.method, "url": description.url, "client": facts.client_ip, "peer": facts.peer_ip,
            "headers": [list(h) for h in facts.headers]}


def _policy_dict(runtime: ShieldRuntime) -> dict[str, Any]:
    p = runtime.policy
    return {"file": p.source, "name": p.name, "version": p.version_hash}


def render_text(result: Mapping[str, Any]) -> str:
    """The explanation for people: one block per part, rules in policy order."""
    req, pol, dec = result["request"], result["policy"], result["decision"]
    lines = [f"{req['method']} {req['url']} from {req['client']}"
             + (f" (via {req['peer']})" if req["peer"] != req["client"] else ""),
             f"policy {pol['name']} ({pol['file']}, version {pol['version']}); state: {result['state']}", "",
             "rules, in order:"]
    width = max((len(r["rule"]) for r in result["rules"]), default=4)
    for r in result["rules"]:
        why = r["outcome"]
        if r.get("failed"):
            why += f" ({r['failed']} does not hold)"
        if r.get("note"):
            why += f": {r['note']}"
        lines.append(f"  {r['rule']:<{width}}  {why}")
    if not result["rules"]:
        lines.append("  (no rule was evaluated)" if not result.get("banned_key") else
                     f"  (not evaluated: {result['banned_key']} is in the penalty box)")
    lines.append("")
    lines.append("buckets touched:" + ("" if result["buckets"] else " none"))
    for b in result["buckets"]:
        state = "conforms" if b["allowed"] else f"REFUSES (retry in {b['retry_after']}s)"
        mon = " [monitored]" if b.get("monitored") else ""
        lines.append(f"  {b['rule']} {b['bucket']} key {b['key']}: {state}, {b['remaining']} left{mon}")
    lines.append("signals:" + ("" if result["signals"] else " none"))
    lines += [f"  {name} = {value:g}" for name, value in result["signals"].items()]
    lines.append("scores:" + ("" if result["scores"] else " none"))
    lines += [f"  {s['score']} key {s['key']}: {s['value']:g} (this request {s['delta']:+g})" for s in result["scores"]]
    for m in result.get("monitored", ()):
        lines.append(f"monitored: {m['rule']} would {m['action']} ({m['reason']})")
    for b in result.get("would_ban", ()):
        lines.append(f"would ban {b['key']} (not done: explain changes nothing)")
    lines.append("")
    enforced = "" if dec["enforced"] else " (monitor: not enforced)"
    lines.append(f"decision: {dec['action'].upper()} by {dec['rule']} -- {dec['reason']}{enforced}"
                 + (f" [key {dec['key']}]" if dec["key"] else ""))
    return "\n".join(lines)

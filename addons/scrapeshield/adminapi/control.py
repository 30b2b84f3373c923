"""The control API: the penalty box and the allow list by key, one key's state, and explain.

Every route needs `Authorization: Bearer <token>`; the token comes from `--admin-token-file` or
`$SCRAPESHIELD_ADMIN_TOKEN`, and without one the API is off (404 with a message saying how to
turn it on). Changes go through the store, so with Redis every replica sees them at once, and each
one is written to the decision log (`{"event": "ban", ...}`).

    GET    /api/bans                 -> {"bans": [entry...]}
    POST   /api/bans   {key, duration, reason}
    DELETE /api/bans?key=K           -> {"removed": true|false}
    GET    /api/allows | POST /api/allows | DELETE /api/allows?key=K
    GET    /api/inspect?key=K        -> buckets, scores, detector state, ban, allow
    POST   /api/explain {method, url, headers, client}  (see scrapeshield.explain)

Keys are the engine's key strings (`ip=203.0.113.7`, `prefix=203.0.113.0/24`,
`cookie:session=abc`, ... as the decision log and /api/inspect show them); a bare address or
network is taken as `ip=` or `prefix=`.
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from ..runtime import ShieldRuntime

log = logging.getLogger("scrapeshield.admin")

TOKEN_ENV = "SCRAPESHIELD_ADMIN_TOKEN"
MAX_DURATION = 366 * 86400.0
MAX_REASON = 200
MAX_KEY = 512
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequest(ValueError):
    """The request body or query says something the API cannot do; the message says what."""


def load_token(token_file: str) -> str | None:
    """The bearer token, or None (API off). An unreadable or empty file is a start-up error."""
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as fh:
                token = fh.read().strip()
        except OSError as exc:
            raise ValueError(f"--admin-token-file {token_file}: {exc.strerror or exc}") from None
        if not token:
            raise ValueError(f"--admin-token-file {token_file}: the file is empty")
        return token
    return os.environ.get(TOKEN_ENV, "").strip() or None


def parse_duration(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if m is None:
            raise BadRequest(f"duration: {value!r} is not a duration (e.g. 600, 90s, 15m, 2h, 1d)")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if not 0 < seconds <= MAX_DURATION:
        raise BadRequest(f"duration: must be more than 0 and at most {MAX_DURATION:.0f}s")
    return seconds


def normalize_key(value: object) -> str:
    """The engine's key string for what an operator typed: a bare IP is `ip=`, a network `prefix=`."""
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("key: required (e.g. ip=203.0.113.7, prefix=203.0.113.0/24, cookie:session=abc)")
    key = value.strip()
    if len(key) > MAX_KEY:
        raise BadRequest(f"key: longer than {MAX_KEY} characters")
    if "=" in key:
        return key
    try:
        if "/" in key:
            return f"prefix={ipaddress.ip_network(key, strict=False)}"
        return f"ip={ipaddress.ip_address(key)}"
    except ValueError:
        raise BadRequest(f"key: {key!r} is neither an address, a network nor a key like ip=...") from None


def entry_dict(entry: Any, now: float) -> dict[str, Any]:
    out = asdict(entry)
    out["seconds_left"] = max(0, round(entry.until - now))
    return out


def install(app: web.Application, runtime: ShieldRuntime) -> None:
    try:
        token = load_token(runtime.config.admin_token_file)
    except ValueError as exc:
        log.error("control API is off: %s", exc)
        token = None
    api = ControlApi(runtime)

    def guarded(handler: Handler) -> Handler:
        async def check(request: web.Request) -> web.StreamResponse:
            if token is None:
                return web.json_response({"error": "the control API is off: start the shield with "
                                                   f"--admin-token-file or ${TOKEN_ENV}"}, status=404)
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return web.json_response({"error": "a valid 'Authorization: Bearer <token>' is required"},
                                         status=401, headers={"WWW-Authenticate": "Bearer"})
            try:
                return await handler(request)
            except BadRequest as exc:
                return web.json_response({"error": str(exc)}, status=400)
            except NotImplementedError as exc:
                return web.json_response({"error": str(exc)}, status=501)
        return check

    for method, path, handler in api.routes():
        app.router.add_route(method, path, guarded(handler))
    if token is not None:
        log.info("control API on (/api/bans /api/allows /api/inspect /api/explain)")


@dataclass(frozen=True)
class OperatorList:
    """A list operators edit through the store: its list, add and remove operations (also the
    decision-log event names) and the JSON field the listing is returned under."""

    list_op: str
    add_op: str
    remove_op: str


BANS = OperatorList("bans", "ban", "unban")
ALLOWS = OperatorList("allows", "allow", "unallow")


class ControlApi:
    def __init__(self, runtime: ShieldRuntime) -> None:
        self.runtime = runtime

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            *self._list_routes("/api/bans", BANS), *self._list_routes("/api/allows", ALLOWS),
            ("GET", "/api/inspect", self.inspect), ("POST", "/api/explain", self.explain),
        ]

    # -- helpers -------------------------------------------------------------------------------
    def _store_op(self, name: str) -> Callable[..., Awaitable[Any]]:
        op = getattr(self.runtime.store, name, None)
        if op is None:
            raise NotImplementedError(f"the {self.runtime.store.name} store cannot {name}")
        return op  # type: ignore[no-any-return]

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise BadRequest("the body must be a JSON object") from None
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        return body

    @staticmethod
    def _limit(request: web.Request) -> int:
        try:
            return max(1, min(1000, int(request.query.get("limit", "100"))))
        except ValueError:
            raise BadRequest("limit: must be a number") from None

    def _now(self) -> float:
        return self.runtime.clock.now()

    def _record(self, event: str, request: web.Request, **fields: object) -> None:
        peer = request.remote or "-"
        self.runtime.decision_log.operator(event, self._now(), by=f"control-api {peer}", **fields)
        log.info("control API: %s %s from %s", event, fields.get("key"), peer)

    # -- bans and the allow list: one kind of resource, two lists -------------------------------
    def _list_routes(self, path: str, kind: OperatorList) -> list[tuple[str, str, Handler]]:
        return [("GET", path, partial(self._list_entries, kind)), ("POST", path, partial(self._add_entry, kind)),
                ("DELETE", path, partial(self._remove_entry, kind))]

    async def _list_entries(self, kind: OperatorList, request: web.Request) -> web.Response:
        now = self._now()
        entries = await self._store_op(kind.list_op)(now, self._limit(request))
        return web.json_response({kind.list_op: [entry_dict(e, now) for e in entries]})

    async def _add_entry(self, kind: OperatorList, request: web.Request) -> web.Response:
        body = await self._body(request)
        key, seconds, reason = self._entry(body)
        now = self._now()
        await self._store_op(kind.add_op)(key, now + seconds, now, reason)
        self._record(kind.add_op, request, key=key, until=now + seconds, seconds=seconds, reason=reason)
        return web.json_response({"key": key, "until": now + seconds, "reason": reason}, status=201)

    async def _remove_entry(self, kind: OperatorList, request: web.Request) -> web.Response:
        key = normalize_key(request.query.get("key"))
        removed = bool(await self._store_op(kind.remove_op)(key))
        self._record(kind.remove_op, request, key=key, removed=removed)
        return web.json_response({"key": key, "removed": removed})

    @staticmethod
    def _entry(body: dict[str, Any]) -> tuple[str, float, str]:
        key = normalize_key(body.get("key"))
        seconds = parse_duration(body.get("duration", "1h"))
        reason = body.get("reason", "")
        if not isinstance(reason, str):
            raise BadRequest("reason: must be a string")
        return key, seconds, reason.strip()[:MAX_REASON]

    # -- inspect and explain --------------------------------------------------------------------
    async def inspect(self, request: web.Request) -> web.Response:
        key = normalize_key(request.query.get("key"))
        now = self._now()
        found = await self._store_op("inspect")(key, now)
        names = _state_names(self.runtime.policy)
        buckets = {names.get(bid, bid): {"remaining": st.remaining, "allowed": st.allowed,
                                         "retry_after": round(st.retry_after, 3), "reset": round(st.reset, 3)}
                   for bid, st in found.buckets.items()}
        scores = {names.get(sid, sid): round(v, 3) for sid, v in found.scores.items()}
        detectors = self.runtime.engine.detectors
        return web.json_response({
            "key": key, "buckets": buckets, "scores": scores,
            "ban": entry_dict(found.ban, now) if found.ban is not None else None,
            "allow": entry_dict(found.allow, now) if found.allow is not None else None,
            "detectors": detectors.describe(key) if detectors is not None else None,
        })

    async def explain(self, request: web.Request) -> web.Response:
        from ..explain import RequestDescription, explain_live

        body = await self._body(request)
        try:
            description = RequestDescription.from_dict(body)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        return web.json_response(await explain_live(self.runtime, description))


def _state_names(policy: Any) -> dict[str, str]:
    """Bucket and score ids -> names an operator recognises (`records-per-ip 10/m`, `score harvest`)."""
    out: dict[str, str] = {}
    for rule in policy.rules:
        for b in rule.buckets:
            out[b.uid] = f"{rule.name}: {b.limit.describe()}"
    for score in policy.scores:
        out[score.uid] = score.name
    return out

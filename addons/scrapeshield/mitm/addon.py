"""ShieldAddon: translate each flow into RequestFacts, ask the runtime, apply the Decision."""
from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from typing import Any

from mitmproxy import ctx, http, tls
from mitmproxy.connection import Client

from ..clock import MonotonicClock
from ..context import DecisionContext
from ..decision import Action, Decision
from ..engine import fail_decision
from ..facts import RequestFacts
from ..fingerprint.front import CLOUDFRONT_HEADERS, FINGERPRINT_HEADERS
from ..pending import Pending
from ..policy.errors import PolicyInvalid
from ..requestid import HEADER as REQUEST_ID_HEADER
from ..responses import ShieldResponse, refusal
from ..runtime import RuntimeConfig, ShieldRuntime, shared_runtime
from . import headerfields
from .bodyprefix import decoded_prefix
from .flowfacts import facts_from_flow
from .metadata import DECISION_METADATA, RESERVED_METADATA, RID_METADATA, TLS_METADATA, XFF_METADATA

log = logging.getLogger("scrapeshield")

OPTIONS = ("scrapeshield_policy", "scrapeshield_store", "scrapeshield_admin", "scrapeshield_decision_log",
           "scrapeshield_shadow_policy", "scrapeshield_reload_interval", "scrapeshield_secret_file")


_MAX_RESERVED_BODY = 16384


def _make(resp: ShieldResponse) -> http.Response:
    return http.Response.make(resp.status, resp.body, [(k.encode(), v.encode()) for k, v in resp.headers])


@functools.lru_cache(maxsize=1024)
def _tls_metadata(fingerprint: Any) -> dict[str, Any]:
    """A TLS fingerprint as plain values; built once per distinct fingerprint, not per request."""
    return dataclasses.asdict(fingerprint)


class BodyTap:
    """A streamed response body (mitmproxy's `stream_large_bodies`, or an HTML page of unknown
    length), passed on unchanged, its first `limit` bytes kept: the detectors read a streamed
    page's start as they read a buffered one's."""

    __slots__ = ("limit", "parts", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0

    def __call__(self, data: bytes) -> bytes:
        if data and self.size < self.limit:
            part = data[: self.limit - self.size]
            self.parts.append(part)
            self.size += len(part)
        return data

    def prefix(self) -> bytes:
        return b"".join(self.parts)


def _unsized_html(headers: http.Headers) -> bool:
    """Whether a response is HTML with no Content-Length (chunked, or read until the upstream
    closes): one pass over the fields, not two multidict lookups per response."""
    html = False
    for name, value in headers.fields:
        lowered = name.lower()
        if lowered == b"content-length":
            return False
        if lowered == b"content-type":
            html = b"html" in value  # as the taps' own checks (`"html" in ctype`) read it
    return html


_MAX_PENDING_COOKIES = 100_000  # flows between their decision and their response or error


class ShieldAddon:
    def __init__(self, runtime: ShieldRuntime | None = None) -> None:
        self.runtime = runtime  # given by `scrapeshield run`; built from options under mitmdump -s
        self._tls: dict[str, Any] = {}  # client id -> TLS fingerprint, dropped on disconnect
        # flow id -> decision context, from request to response; bounded in case a flow never finishes.
        self._contexts: Pending[str, DecisionContext] = Pending(100_000, 600.0, MonotonicClock())
        # Flows whose response is to carry a new session cookie, until it does (`_send_session_cookie`).
        self._cookie_due: set[str] = set()
        # Stream HTML pages of unknown length through a tap (`responseheaders`); not while flows are
        # saved (`--save`, mitmdump -w): buffered, a saved page keeps its body for `replay`.
        self._tap_unsized = True

    # -- configuration -----------------------------------------------------------------------
    def load(self, loader: Any) -> None:
        loader.add_option("scrapeshield_policy", str, "",
                          "ScrapeShield policy file (YAML), or builtin:NAME for a shipped one.")
        loader.add_option("scrapeshield_store", str, "memory://", "State store: memory:// or redis://host:port/db.")
        loader.add_option("scrapeshield_admin", str, "127.0.0.1:9090",
                          "Admin address for /metrics, /healthz and /status; empty to disable.")
        loader.add_option("scrapeshield_decision_log", str, "-", "Decision log file; - for stderr.")
        loader.add_option("scrapeshield_shadow_policy", str, "", "Candidate policy evaluated beside the live one.")
        loader.add_option("scrapeshield_reload_interval", int, 1, "Seconds between policy file polls; 0 disables.")
        loader.add_option("scrapeshield_secret_file", str, "",
                          "Challenge/clearance keys file; default $SCRAPESHIELD_CHALLENGE_KEYS, else ephemeral.")

    def configure(self, updated: set[str]) -> None:
        if "save_stream_file" in updated:  # an option of mitmproxy's Save addon, when it is loaded
            self._tap_unsized = not getattr(ctx.options, "save_stream_file", None)
        if self.runtime is not None and not (updated & set(OPTIONS)):
            return
        if not ctx.options.scrapeshield_policy:
            if self.runtime is None:
                log.warning("scrapeshield: no scrapeshield_policy set; passing all traffic")
            return
        from mitmproxy import exceptions

        from ..builtin import resolve_policy

        try:
            policy_path = resolve_policy(ctx.options.scrapeshield_policy)  # a path, or builtin:NAME as `run` takes
        except LookupError as exc:
            raise exceptions.OptionsError(f"scrapeshield_policy: {exc.args[0]}") from None
        config = RuntimeConfig(
            policy_path=policy_path,
            store_url=ctx.options.scrapeshield_store,
            admin=ctx.options.scrapeshield_admin,
            decision_log=ctx.options.scrapeshield_decision_log,
            shadow_policy_path=ctx.options.scrapeshield_shadow_policy,
            reload_interval=float(ctx.options.scrapeshield_reload_interval),
            secret_file=ctx.options.scrapeshield_secret_file,
        )
        try:
            self.runtime = shared_runtime(config)
        except PolicyInvalid as exc:
            raise exceptions.OptionsError(f"invalid policy:\n{exc}") from None

    def running(self) -> None:
        if self.runtime is not None:
            if self not in self.runtime.status_sources:
                self.runtime.status_sources.append(self)
            self.runtime.start()

    def done(self) -> None:
        # Also called when mitmproxy re-executes the script: the runtime lives on, this addon does not.
        if self.runtime is not None and self in self.runtime.status_sources:
            self.runtime.status_sources.remove(self)

    def status(self) -> dict[str, Any]:
        """For /status: per-connection state must stay bounded by the open connections."""
        return {"fingerprint": {"tls_connections": len(self._tls)}}

    # -- connections ---------------------------------------------------------------------------
    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        try:
            from ..fingerprint.tls import fingerprint_client_hello

            hello = data.client_hello.raw_bytes(wrap_in_record=False)
            self._tls[data.context.client.id] = fingerprint_client_hello(hello)
        except Exception as exc:  # an odd ClientHello is a signal, never a crash
            log.debug("no TLS fingerprint: %s", exc)

    def tls_start_client(self, data: tls.TlsData) -> None:
        # Prefer HTTP/2 whenever the client offers it, as edge servers do (RFC 7301: the server
        # chooses). mitmproxy follows the client's order, and clients such as httpx list
        # http/1.1 before h2, so they would never get HTTP/2. With no upstream connection yet
        # (lazy strategy), mitmproxy's ALPN callback takes `server_alpn` first when offered.
        app_data = data.ssl_conn.get_app_data() if data.ssl_conn is not None else None
        if (isinstance(app_data, dict) and ctx.options.http2
                and app_data.get("client_alpn") is None and app_data.get("server_alpn") is None):
            app_data["server_alpn"] = b"h2"

    def client_disconnected(self, client: Client) -> None:
        self._tls.pop(client.id, None)

    # -- requests ------------------------------------------------------------------------------
    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        rt = self.runtime
        if rt is None or flow.response or flow.error or not flow.live:
            return
        policy = rt.policy
        try:
            facts = facts_from_flow(flow, policy.trusted_proxies, self._tls.get(flow.client_conn.id),
                                    policy.section(FINGERPRINT_HEADERS) or CLOUDFRONT_HEADERS)
        except Exception as exc:
            rt.metrics.errors.labels("request").inc()
            log.warning("malformed request from %s: %s", flow.client_conn.peername, exc)
            decision = fail_decision(policy, f"malformed request: {exc}")
            peer = flow.client_conn.peername[0] if flow.client_conn.peername else "0.0.0.0"
            rt.record(RequestFacts(peer_ip=peer, method=flow.request.method, path=flow.request.path[:512]), decision)
            self._apply(flow, decision, rt, None)
            return
        if facts.tls is not None:  # kept in saved flows (`--save`) for `scrapeshield replay`
            flow.metadata[TLS_METADATA] = _tls_metadata(facts.tls)
        if rt.is_reserved(facts.path):
            # The shield's own endpoints: answered in `request` once the body is in, never forwarded.
            if rt.reserved_allowed(facts):
                self._contexts.put(flow.id, DecisionContext(facts))
                flow.metadata[RESERVED_METADATA] = True
            else:
                flow.response = _make(refusal(Decision(Action.THROTTLE, "reserved", "verify endpoint limit"),
                                              rt.policy, flow.request.headers.get("accept")))
            return
        ctx = DecisionContext(facts)
        decision = await rt.decide_in(ctx)
        if ctx.detector_key is not None or ctx.session is not None:
            self._contexts.put(flow.id, ctx)  # for the response hook
            if ctx.session is not None and ctx.session.set_cookie is not None:
                due = self._cookie_due
                if len(due) >= _MAX_PENDING_COOKIES:  # flows that never finished: forget them
                    due.clear()
                due.add(flow.id)
        flow.metadata[DECISION_METADATA] = {"rule": decision.rule, "action": decision.action.value,
                                         "enforced": decision.enforced, "reason": decision.reason}
        if decision.effective is Action.DELAY and decision.delay > 0:
            await asyncio.sleep(decision.delay)
        self._apply(flow, decision, rt, facts)

    async def request(self, flow: http.HTTPFlow) -> None:
        rt = self.runtime
        if rt is None or flow.response or flow.error or not flow.live:
            return
        if not flow.metadata.get(RESERVED_METADATA):
            return
        ctx = self._contexts.pop(flow.id)
        try:
            if ctx is None:
                raise LookupError("request facts expired")
            body = flow.request.raw_content or b""
            resp = await rt.handle_reserved(ctx.facts, body[:_MAX_RESERVED_BODY])
        except Exception:  # the reserved endpoints never reach the upstream, even when they fail
            rt.metrics.errors.labels("challenge").inc()
            log.exception("challenge endpoint failed")
            resp = ShieldResponse(500, (("Shield-Action", "error"), ("Content-Type", "text/plain")), b"error\n")
        flow.response = _make(resp)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """The upstream's response headers, before its body. The session cookie goes out with them:
        a body above `--stream-threshold` is streamed, its headers sent before `response` runs
        (mitmproxy decides so from the Content-Length here, or while it reads a chunked body). A
        streamed HTML page gets a `BodyTap`, so the detectors still read its start; so does an HTML
        page of unknown length (chunked), streamed from its first byte: mitmproxy would otherwise
        buffer it and, once it outgrew the threshold, stream the rest untapped."""
        response = flow.response
        rt = self.runtime
        if response is None or rt is None:
            return
        due = self._cookie_due
        cookie_due = bool(due) and flow.id in due
        streamed = response.stream is True
        unsized = self._tap_unsized and not response.stream and 200 <= response.status_code < 300 \
            and flow.request.method != "HEAD" and rt.html_scan_bytes() > 0 and _unsized_html(response.headers)
        if not cookie_due and not streamed and not unsized:
            return  # most responses: nothing to do before the body
        ctx = self._contexts.get(flow.id)
        if ctx is None:
            return
        if cookie_due:
            self._send_session_cookie(flow.id, response, ctx, rt)
        if (streamed or unsized) and ctx.detector_key is not None:
            try:
                ctype = headerfields.value_of(response.headers, "content-type")
                if ctype and "html" in ctype and (limit := rt.html_scan_bytes()):
                    response.stream = BodyTap(limit)
            except Exception:  # pragma: no cover - observing must never break a response
                rt.metrics.errors.labels("response").inc()
                log.exception("could not tap a streamed response")

    def response(self, flow: http.HTTPFlow) -> None:
        rt = self.runtime
        ctx = self._contexts.pop(flow.id)
        if rt is None or ctx is None or flow.response is None:
            self._cookie_due.discard(flow.id)
            return
        resp = flow.response
        due = self._cookie_due
        if due and flow.id in due:  # a response the shield made (no headers hook ran for it)
            self._send_session_cookie(flow.id, resp, ctx, rt)
        if ctx.detector_key is None:
            return
        try:
            headers = resp.headers
            ctype = headerfields.value_of(headers, "content-type")
            body = None
            raw = resp.raw_content
            stream = resp.stream
            if not raw and isinstance(stream, BodyTap):
                raw = stream.prefix()
            if ctype and "html" in ctype and raw and (limit := rt.html_scan_bytes()):
                # Only what the detectors read, decoded: not the whole page (bodyprefix.py).
                body = decoded_prefix(raw, headerfields.value_of(headers, "content-encoding"), limit)
            rt.observe_response(ctx, resp.status_code, ctype, body)
        except Exception:  # pragma: no cover - observing must never break a response
            rt.metrics.errors.labels("response").inc()
            log.exception("could not observe response")

    def error(self, flow: http.HTTPFlow) -> None:
        self._contexts.pop(flow.id)
        self._cookie_due.discard(flow.id)

    def _send_session_cookie(self, flow_id: str, response: http.Response, ctx: DecisionContext,
                             rt: ShieldRuntime) -> None:
        """The session's Set-Cookie, once per flow: the session rides on the response the client
        gets anyway."""
        self._cookie_due.discard(flow_id)
        try:
            set_cookie = rt.session_set_cookie(ctx)
            if set_cookie is not None:
                headerfields.append(response.headers, "Set-Cookie", set_cookie)
        except Exception:  # pragma: no cover - a session cookie must never break a response
            rt.metrics.errors.labels("response").inc()
            log.exception("could not set the session cookie")

    def _apply(self, flow: http.HTTPFlow, decision: Decision, rt: ShieldRuntime, facts: Any) -> None:
        action = decision.effective
        rid = facts.request_id if facts is not None else ""
        try:
            self._apply_action(flow, decision, rt, facts, action)
            if not rid:
                return
            if flow.response is not None:  # a refusal carries the id to the client
                headerfields.replace(flow.response.headers, REQUEST_ID_HEADER, rid)
            elif action is not Action.DROP:  # upstream gets our id, replacing one the client sent
                prior = headerfields.replace(flow.request.headers, REQUEST_ID_HEADER, rid)
                flow.metadata[RID_METADATA] = prior  # for replay
        except Exception:  # pragma: no cover - applying must never raise into mitmproxy
            rt.metrics.errors.labels("apply").inc()
            log.exception("could not apply decision")

    def _apply_action(self, flow: http.HTTPFlow, decision: Decision, rt: ShieldRuntime, facts: Any,
                      action: Action) -> None:
        if action is Action.DROP:
            flow.kill()
            return
        if action is Action.CHALLENGE and facts is not None:
            flow.response = _make(rt.challenge_response(facts, decision))
            if flow.request.method == "HEAD":
                flow.response.content = b""
            return
        if action in (Action.BLOCK, Action.THROTTLE, Action.CHALLENGE):
            accept = flow.request.headers.get("accept")
            flow.response = _make(refusal(decision, rt.policy, accept))
            return
        # Passed on: the upstream sees the request as sent, plus the peer in X-Forwarded-For.
        peer = flow.client_conn.peername[0] if flow.client_conn.peername else None
        if peer:
            headers = flow.request.headers
            prior = headerfields.values_of(headers, "X-Forwarded-For")
            flow.metadata[XFF_METADATA] = prior  # so replay can see the request as sent
            headerfields.replace(headers, "X-Forwarded-For", ", ".join([*prior, peer]))


"""The challenge as HTTP, with primitives in and out: the addon adapts flows, nothing here knows them.

- `challenge_response(...)`: what a challenged request gets instead of the upstream answer.
- `handle(...)`: requests under the reserved prefix (`/.shield/`): the verify endpoint, 404 else.
- `check_clearance(...)`: does the request's Cookie header carry clearance for this rule?

Status of a challenge: 403 by default, as Cloudflare's challenges: the request was not served
as it stands, and crawlers neither index nor retry-storm a 403. 429 would invite automatic
retries (and promises Retry-After), 503 tells monitors the site is down. Configurable.
"""
from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from ..responses import ShieldResponse, accepts_html  # one response type, one content negotiation
from . import clearance, pow, wait
from .binding import ClientBinding
from .config import ChallengeConfig
from .keys import KeyRing
from .page import render_challenge_page, render_wait_page
from .pow import SpendOnce, VerifyResult
from .redirect import safe_return_path

MAX_FORM_BYTES = 8192
# The client's binding, or how to make it: a request without a clearance cookie (nearly every
# request) never pays for one (its network prefix, hashes, the session cookie it names).
BindingOf = ClientBinding | Callable[[], ClientBinding]


def _bound(binding: BindingOf) -> ClientBinding:
    return binding if isinstance(binding, ClientBinding) else binding()


@dataclass(slots=True)
class ChallengeService:
    """Everything stateless about challenges. Shared state is only the Store behind `spend_once`."""

    keys: KeyRing
    config: ChallengeConfig = field(default_factory=ChallengeConfig)
    # "<stage>.<reason>" -> count, stages: issued, pow, wait, cookie, endpoint. Bounded: reasons are fixed.
    counters: Counter[str] = field(default_factory=Counter)

    def binding(self, ip: str, user_agent: str, session_id: str | None = None) -> ClientBinding:
        return ClientBinding.of(ip, user_agent, self.config.v4_bits, self.config.v6_bits, session_id)

    def is_reserved(self, path: str) -> bool:
        return path.startswith(self.config.prefix) or path == self.config.prefix[:-1]

    # -- challenged requests -------------------------------------------------------------------
    def check_clearance(self, cookie_header: str | None, binding: BindingOf, rule: str, now: float) -> bool:
        values = clearance.cookie_values(cookie_header, self.config.cookie_name)
        reason = "missing"
        bound = _bound(binding) if values else None
        for value in values:
            assert bound is not None
            result = clearance.verify_cookie(self.keys, value, bound, rule, now)
            if result.ok:
                self.counters["cookie.ok"] += 1
                return True
            reason = result.reason
        self.counters[f"cookie.{reason}"] += 1
        return False

    def clearance_token(self, cookie_header: str | None, binding: BindingOf, now: float) -> str | None:
        """The request's valid clearance cookie (for any rule), if it holds one."""
        values = clearance.cookie_values(cookie_header, self.config.cookie_name)
        bound = _bound(binding) if values else None
        for value in values:
            assert bound is not None
            if clearance.verify_cookie(self.keys, value, bound, None, now).ok:
                return value
        return None

    def challenge_response(self, rule: str, difficulty: int, return_to: str, binding: ClientBinding,
                           accept_header: str | None, no_js: bool, now: float) -> ShieldResponse:
        """The interstitial for a request without clearance; `return_to` is the request's path + query."""
        ttl = self.config.challenge_ttl
        challenge = pow.issue(self.keys, binding, rule, difficulty, return_to, now, ttl)
        self.counters["issued.pow"] += 1
        fallback = None
        if no_js:
            fallback = wait.issue_wait(self.keys, binding, rule, self.config.wait_seconds, return_to, now, ttl)
            self.counters["issued.wait"] += 1
        if not accepts_html(accept_header):
            # fetch()/API clients cannot run the page; say what happened in a form they read.
            return self._plain(self.config.status, "challenge required: load this URL in a browser\n")
        html, headers = render_challenge_page(challenge, self.config.verify_path, _csp_nonce(), fallback,
                                              self.config.solver)
        return self._page(self.config.status, html, headers)

    # -- the reserved prefix ------------------------------------------------------------------
    async def handle(self, method: str, path: str, query: str, form_body: bytes, binding: ClientBinding,
                     is_tls: bool, now: float, spend_once: SpendOnce, cookie_header: str | None = None,
                     solved: Callable[[], Awaitable[None]] | None = None) -> ShieldResponse:
        """A request under the prefix. `path` is the path without query (one with '?' is split);
        `cookie_header` lets a new clearance merge with the one the browser already holds."""
        path, _, q = path.partition("?")
        query = query or q
        if path != self.config.verify_path:
            self.counters["endpoint.not_found"] += 1
            return self._plain(404, "not found\n")
        if method == "POST":
            fields = _form(form_body)
            if fields is None:
                result = VerifyResult(False, "malformed")
            else:
                result = await pow.verify(self.keys, fields.get("token"), fields.get("nonce"), binding, now, spend_once)
            stage = "pow"
        elif method == "GET":
            fields = _form(query.encode("latin-1", "replace"))
            token = fields.get("wait") if fields else None
            result = await wait.verify_wait(self.keys, token, binding, now, spend_once)
            stage = "wait"
            if result.reason == "too_early":
                self.counters["wait.too_early"] += 1
                early = wait.read_wait(self.keys, token, now)
                assert not isinstance(early, str)  # its signature was just checked
                html, headers = render_wait_page(early, self.config.verify_path, _csp_nonce())
                return self._page(self.config.status, html, headers)
        else:
            self.counters["endpoint.method_not_allowed"] += 1
            return ShieldResponse(405, [("Allow", "GET, POST"), ("Cache-Control", "no-store")], b"")
        self.counters[f"{stage}.{result.reason}"] += 1
        if result.ok:
            if solved is not None:
                await solved()
            return self._cleared(result, binding, is_tls, now, cookie_header)
        return self._refused(result)

    def _cleared(self, result: VerifyResult, binding: ClientBinding, is_tls: bool, now: float,
                 cookie_header: str | None) -> ShieldResponse:
        name, ttl = self.config.cookie_name, self.config.cookie_ttl
        held = clearance.cookie_values(cookie_header, name)
        value = clearance.issue_cookie(self.keys, binding, result.rule, ttl, now, held[0] if held else None)
        return ShieldResponse(303, [
            ("Location", safe_return_path(result.return_to)),
            ("Set-Cookie", clearance.set_cookie_value(name, value, ttl, is_tls)),
            ("Cache-Control", "no-store"),
            ("Content-Length", "0"),
        ], b"")

    def _refused(self, result: VerifyResult) -> ShieldResponse:
        if result.reason in ("expired", "replayed", "wrong_client"):
            # A tab left open, the back button re-posting a spent solution, a phone that changed
            # network (or a dual-stack browser that changed family) while solving: the token is
            # genuine, so go back to the page, which lets the browser through or challenges afresh.
            return ShieldResponse(303, [("Location", safe_return_path(result.return_to)),
                                        ("Cache-Control", "no-store"), ("Content-Length", "0")], b"")
        if result.reason == "store_unavailable":
            return ShieldResponse(503, [("Retry-After", "5"), ("Cache-Control", "no-store"),
                                        ("Content-Length", "0")], b"")
        # No automatic retry here: a client that fails the proof would loop forever.
        return self._plain(403, "verification failed\n")

    # -- responses -------------------------------------------------------------------------------
    def _page(self, status: int, html: str, headers: dict[str, str]) -> ShieldResponse:
        body = html.encode("utf-8")
        out = [*headers.items(), ("Content-Length", str(len(body))), ("Shield-Action", "challenge")]
        return ShieldResponse(status, out, body)

    def _plain(self, status: int, text: str) -> ShieldResponse:
        body = text.encode("utf-8")
        return ShieldResponse(status, [
            ("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store"),
            ("X-Robots-Tag", "noindex"), ("X-Content-Type-Options", "nosniff"),
            ("Content-Length", str(len(body))), ("Shield-Action", "challenge"),
        ], body)


def _csp_nonce() -> str:
    return secrets.token_urlsafe(18)


def _form(body: bytes) -> dict[str, str] | None:
    """First value of each field of an urlencoded form; None when it is too large or not a form."""
    if len(body) > MAX_FORM_BYTES:
        return None
    try:
        parsed = parse_qs(body.decode("ascii"), keep_blank_values=True, strict_parsing=False,
                          max_num_fields=16)
    except (UnicodeDecodeError, ValueError):
        return None
    return {k: v[0] for k, v in parsed.items()}

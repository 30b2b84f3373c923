"""The challenge gate: clearance for challenged rules, challenge pages, the shield's own endpoints
under `/.shield/` (outside the policy, with a fixed budget of their own), and the session cookies,
which are signed with the same key ring."""
from __future__ import annotations

import logging
import os

from ..challenge.binding import ClientBinding
from ..challenge.endpoints import ChallengeService
from ..challenge.keys import DEFAULT_ENV as CHALLENGE_KEYS_ENV
from ..challenge.keys import KeyRing
from ..clock import Clock
from ..context import DecisionContext
from ..decision import Decision
from ..facts import RequestFacts
from ..gcra import BucketLimit
from ..policy.model import CompiledPolicy
from ..responses import ShieldResponse
from ..session.policy import SESSION
from ..session.stage import BUDGET_RULE_NAME, SessionStage, stack_of
from ..store.base import Batch, BucketCheck, Store
from ..store.memory import MemoryStore

log = logging.getLogger("scrapeshield")

RESERVED_LIMIT = BucketLimit(30, 60.0, 29)  # per client address, for /.shield/verify


class ChallengeGate:
    def __init__(self, keys: KeyRing, policy: CompiledPolicy, store: Store, clock: Clock) -> None:
        self.service = ChallengeService(keys, policy.challenge)
        # Sessions are signed with the challenge key ring: one secret to rotate, shared by replicas.
        self.sessions = SessionStage(keys, self.clearance_token)
        self.sessions.clearance_cookie = policy.challenge.cookie_name  # spares the budget check a call here
        self._policy = policy
        self._store = store  # single-use tokens are spent here (shared by replicas)
        self._clock = clock
        # A challenge rule must not challenge its own verify endpoint, so the reserved endpoints
        # have a fixed per-address budget, in a store of their own.
        self._reserved = MemoryStore(max_keys=100_000)

    def policy_changed(self, policy: CompiledPolicy) -> None:
        self.service.config = policy.challenge
        self.sessions.clearance_cookie = policy.challenge.cookie_name
        self._policy = policy

    # -- clearance -------------------------------------------------------------------------------
    def cleared(self, facts: RequestFacts, rule: str) -> bool:
        """Does the request carry a valid clearance cookie for this rule (the engine's ClearanceCheck)?"""
        if rule == BUDGET_RULE_NAME:
            return False  # a spent record budget is never lifted by the clearance that spent it
        cookie = facts.header_map.get("cookie")
        service = self.service
        # No clearance cookie can be in it: nothing to verify and nothing to count. The engine asks
        # for every request a limit rule with `exceed: challenge` matches (most of them carry only
        # a session cookie), not only for those it challenges.
        if not cookie or service.config.cookie_name not in cookie:
            return False
        return service.check_clearance(cookie, lambda: self._binding(facts), rule, self._clock.now())

    def clearance_token(self, facts: RequestFacts, session_id: str | None) -> str | None:
        """The request's valid clearance cookie for any rule; `session_id`: its valid session, as
        the session stage read it for this decision (not read again here)."""
        cookie = facts.header_map.get("cookie")
        service = self.service
        if not cookie or service.config.cookie_name not in cookie:  # no clearance cookie can be in it
            return None
        return service.clearance_token(cookie, lambda: service.binding(facts.client_ip, facts.user_agent, session_id),
                                       self._clock.now())

    # -- sessions --------------------------------------------------------------------------------
    def _session_id(self, facts: RequestFacts) -> str | None:
        """The request's valid session id, read from its Cookie header (what a clearance binds to)."""
        settings = self._policy.section(SESSION)
        cookie = facts.header_map.get("cookie")
        if settings is None or not cookie:
            return None
        presented = self.sessions.presented(cookie, settings.cookie_name, stack_of(DecisionContext(facts)),
                                            self._clock.now(), settings.ttl)
        return presented.cookie.id if presented.cookie is not None else None

    def session_set_cookie(self, ctx: DecisionContext) -> str | None:
        """The Set-Cookie value the response to this request carries (a new or updated session)."""
        settings = self._policy.section(SESSION)
        if ctx.session is None or settings is None:
            return None
        return self.sessions.set_cookie_header(ctx.session, settings, ctx.facts.is_tls)

    def _binding(self, facts: RequestFacts) -> ClientBinding:
        return self.service.binding(facts.client_ip, facts.user_agent, self._session_id(facts))

    # -- challenge pages and the reserved endpoints -------------------------------------------------
    def challenge_response(self, facts: RequestFacts, decision: Decision) -> ShieldResponse:
        return_to = facts.path + ("?" + facts.query if facts.query else "")
        resp = self.service.challenge_response(
            decision.rule, decision.difficulty or self._policy.challenge.difficulty, return_to, self._binding(facts),
            facts.header_map.get("accept"), decision.no_js, self._clock.now())
        if decision.status:
            return ShieldResponse(decision.status, resp.headers, resp.body)
        return resp

    def is_reserved(self, path: str) -> bool:
        return self.service.is_reserved(path)

    def reserved_allowed(self, facts: RequestFacts) -> bool:
        """The verify endpoint's own rate limit: 30 per minute per client address."""
        res = self._reserved.apply_now(Batch(buckets=(BucketCheck("reserved", facts.client_ip, RESERVED_LIMIT),)),
                                       self._clock.now())
        return res.refused < 0

    async def handle_reserved(self, facts: RequestFacts, body: bytes) -> ShieldResponse:
        policy = self._policy
        settings = policy.section(SESSION)
        store, clock = self._store, self._clock

        async def solved() -> None:  # solves on a stack and a network make the next challenge there harder
            if settings is None:
                return
            prefix = self.sessions.prefix(facts.client_ip, policy.ipv4_prefix, policy.ipv6_prefix)
            ups = self.sessions.tracker(settings).solved_updates(prefix, stack_of(DecisionContext(facts)),
                                                                 self._session_id(facts))
            try:
                await store.apply(Batch(scores=ups), clock.now())
            except Exception:  # the count is advice; the solve stands
                log.warning("could not count a solved challenge", exc_info=True)

        return await self.service.handle(facts.method, facts.path, facts.query, body, self._binding(facts),
                                         facts.is_tls, clock.now(), store.spend_once, facts.header_map.get("cookie"),
                                         solved)


def load_keys(secret_file: str) -> KeyRing:
    """Replicas that share a secret accept each other's challenges and cookies."""
    if secret_file:
        return KeyRing.from_file(secret_file)
    if os.environ.get(CHALLENGE_KEYS_ENV):
        return KeyRing.from_env(CHALLENGE_KEYS_ENV)
    log.warning("no --secret-file or $%s: challenge keys are ephemeral (cookies die with this process, "
                "replicas do not share them)", CHALLENGE_KEYS_ENV)
    return KeyRing.generate()

"""The session stage of a decision: read the request's session before the rules, hand the
engine the store work it adds to the request's batch, and finish with the counter signals.

Pure: the key ring, clock values and the clearance check come in from the runtime.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from urllib.parse import urlsplit

from ..challenge.binding import short_hash
from ..challenge.keys import KeyRing
from ..context import DecisionContext
from ..decision import Action
from ..facts import RequestFacts
from ..gcra import BucketLimit
from ..memo import remember
from ..netaddr import cached_ip_prefix
from ..policy.model import BucketDef, Rule
from ..store.base import BucketCheck
from . import cookie
from .cookie import HISTORY, net_tag
from .state import SessionContext, SessionSettings, SessionTracker

BUDGET_BUCKET = "ss.budget"
BUDGET_RULE_NAME = "clearance-budget"
# The owner of the record-budget bucket in a decision's batch: refusing it challenges, and the
# clearance whose budget is spent cannot lift that challenge (the runtime's clearance check says so).
BUDGET_RULE = Rule(name=BUDGET_RULE_NAME, match=lambda c: True, action=None,
                   buckets=(BucketDef(BUDGET_BUCKET, BucketLimit(1, 1.0, 0), "record-budget"),),
                   exceed=Action.CHALLENGE)
MAX_PAGE = 2048  # characters of a page's URL (or a Referer) looked at
_MEMO_MAX = 4096  # Cookie headers whose session values are remembered decoded (at most ~8 MiB)
_MEMO_MAX_HEADER = 2048  # characters; longer headers are decoded every time (a browser's are shorter)
_MEMO_MAX_REFERERS = 4096  # Referer readings remembered (keys and pages of at most MAX_PAGE characters)
# The value of the request's valid clearance cookie, given the request's valid session id (if any).
ClearanceToken = Callable[[RequestFacts, "str | None"], "str | None"]



class SessionStage:
    def __init__(self, keys: KeyRing, clearance_token: ClearanceToken | None = None) -> None:
        self.keys = keys
        self.decoder = cookie.Decoder(keys)  # memoised: the same cookie comes back on every request
        self.decode: cookie.DecodeValue = self.decoder
        self.clearance_token = clearance_token
        # The clearance cookie's name (the policy's `challenge.cookie_name`, kept by the gate): a
        # request whose Cookie header does not name it carries no clearance. "": always ask
        # `clearance_token`.
        self.clearance_cookie = ""
        self._trackers: dict[SessionSettings, SessionTracker] = {}
        self._last: SessionTracker | None = None
        self._headers: dict[str, _HeaderReading] = {}  # Cookie header -> its session values (`presented`)

    def tracker(self, settings: SessionSettings) -> SessionTracker:
        last = self._last
        if last is not None and last.settings is settings:  # the policy's own settings: no hashing
            return last
        tracker = self._trackers.get(settings)
        if tracker is None:
            self._trackers.clear()  # one policy at a time (plus, briefly, the next)
            tracker = self._trackers[settings] = SessionTracker(settings)
        self._last = tracker
        return tracker

    def begin(self, c: DecisionContext, settings: SessionSettings, v4: int, v6: int,
              price: bool = True) -> SessionContext:
        """`price`: read the adaptive price with the request's counters (see `SessionTracker.begin`)."""
        facts, now = c.facts, c.now
        stack = c.fingerprint.stack
        hmap = facts.header_map
        ip = facts.client_ip
        found = self._reading(hmap.get("cookie"), settings.cookie_name)
        if found is None:
            presented = cookie.NO_SESSION
            prefix = cached_ip_prefix(ip, v4, v6)
            net = ""  # the tracker's (net_tag)
        else:
            presented = found.reading_at(stack, now, settings.ttl)
            if found.ip != ip or found.v4 != v4 or found.v6 != v6:
                found.client(ip, v4, v6, cached_ip_prefix(ip, v4, v6))
            prefix, net = found.prefix, found.net
        is_asset, is_document = c.asset_request, c.document_request
        is_record = is_document and bool(c.path_ids)
        session = presented.cookie
        referer = referer_page = page = ""
        if session is None or session.returned < HISTORY:
            # Without a history the session's pages and same-site Referers are counted.
            referer, referer_page = _referer(hmap.get("referer"), facts.host)
            if is_document:
                query = facts.query
                page = (facts.raw_path + "?" + query if query else facts.raw_path)[:MAX_PAGE]
        elif is_record:  # with one, the Referer tells only whether a record was fetched straight by URL
            referer = _referer(hmap.get("referer"), facts.host)[0]
        ctx = self.tracker(settings).begin(presented, prefix, stack, now, is_document=is_document,
                                           is_record=is_record, referer=referer, is_asset=is_asset,
                                           page=page, referer_page=referer_page, price=price, net=net)
        if ctx.set_cookie is not None and found is not None:
            # The client's next Cookie header holds the new cookie: this one's reading is forgotten
            # rather than kept, one more long-lived object for the garbage collector to walk, until
            # the memo is emptied (a client that sends it again has it read again).
            self._forget(hmap.get("cookie"), found)
        c.session = ctx
        return ctx

    def presented(self, cookie_header: str | None, name: str, stack: str, now: float,
                  ttl: float) -> cookie.PresentedSession:
        """`cookie.read` of the request's Cookie header, remembered per header (bounded; emptied
        when full). A client sends the same header request after request: its values are decoded
        (MAC checked) once, and the reading -- which value is the session, expired or of another
        stack -- is kept with the span of time over which it holds; outside it, or for another
        stack or TTL, the remembered decoded values are read again. So a remembered reading is
        always the reading of now."""
        found = self._reading(cookie_header, name)
        return cookie.NO_SESSION if found is None else found.reading_at(stack, now, ttl)

    def _forget(self, cookie_header: str | None, found: _HeaderReading) -> None:
        if cookie_header and self._headers.get(cookie_header) is found:
            del self._headers[cookie_header]

    def _reading(self, cookie_header: str | None, name: str) -> _HeaderReading | None:
        """The remembered reading of a Cookie header (a new one for a header too long to keep);
        None without a header."""
        if not cookie_header:
            return None
        found = self._headers.get(cookie_header)
        if found is None or found.name != name:
            values = cookie.cookie_values(cookie_header, name)
            decode = self.decode
            found = _HeaderReading(name, tuple([decode(value) for value in values]))
            if len(cookie_header) <= _MEMO_MAX_HEADER:
                remember(self._headers, cookie_header, found, _MEMO_MAX)
        return found

    def budget_check(self, facts: RequestFacts, ctx: SessionContext, settings: SessionSettings) -> BucketCheck | None:
        """A record fetched under a clearance spends one of the clearance's records."""
        if not settings.record_budget or not ctx.is_record or self.clearance_token is None:
            return None
        name = self.clearance_cookie
        if name:  # most requests carry no clearance cookie: the token is not looked for
            cookie_header = facts.header_map.get("cookie")
            if not cookie_header or name not in cookie_header:
                return None
        token = self.clearance_token(facts, ctx.id)
        if token is None:
            return None
        self.tracker(settings).price_counters(ctx)
        n, scope = settings.record_budget, "clearance\x00"
        # A session without standing (a person's history, past `fresh_for`) spending its budget pays
        # the cold price for the next: a person has a history long before.
        ctx.renewal = not ctx.standing
        if settings.fresh_record_budget and (ctx.deep or not ctx.standing):
            # A session without standing, or a record fetched straight by URL (no same-site Referer),
            # reads few records under its clearance: a person reads one or two in their first seconds
            # and has a history before the next; a fleet's throw-away identity never gets one.
            n, scope = min(n, settings.fresh_record_budget), "clearance-fresh\x00"
        # Over the clearance's whole life: the budget never refills, a new solve brings a new one.
        limit = BucketLimit(n, 86400.0 * 365, n - 1)
        return BucketCheck(BUDGET_BUCKET, short_hash(scope + token), limit)

    def set_cookie_header(self, ctx: SessionContext, settings: SessionSettings, secure: bool) -> str | None:
        """The Set-Cookie header the response carries for this request's session, if any."""
        if ctx.set_cookie is None:
            return None
        value = self.decoder.encode(ctx.set_cookie)  # remembered: it comes back with the next request
        return cookie.set_cookie_header(value, int(settings.ttl), secure, settings.cookie_name)

    @staticmethod
    def prefix(ip: str, v4: int, v6: int) -> str:
        return cached_ip_prefix(ip, v4, v6)


class _HeaderReading:
    """A Cookie header's session values, decoded, and its last reading (`SessionStage.presented`);
    with the client that last sent it, its network prefix and the prefix's tag: a client sends the
    same header from the same address request after request, so the session stage reads them here
    instead of in two memos elsewhere (`cached_ip_prefix`, `net_tag`), both pure."""

    __slots__ = ("decoded", "ip", "name", "net", "prefix", "reading", "stack", "ttl", "v4", "v6", "valid_from",
                 "valid_until")

    def __init__(self, name: str, decoded: tuple[cookie.SessionCookie | str, ...]) -> None:
        self.name = name
        self.decoded = decoded
        self.reading: cookie.PresentedSession = cookie.NO_SESSION
        self.stack = ""
        self.ttl = -1.0
        self.valid_from = math.inf  # the reading holds while valid_from <= now < valid_until
        self.valid_until = -math.inf
        self.ip = ""  # the client address last read with this header ("": none yet), and its prefix
        self.v4 = self.v6 = -1  # as `cached_ip_prefix(ip, v4, v6)` and the prefix's `net_tag`
        self.prefix = self.net = ""

    def reading_at(self, stack: str, now: float, ttl: float) -> cookie.PresentedSession:
        """The reading of now, for this stack and TTL (the last one while it holds)."""
        if self.valid_from <= now < self.valid_until and self.stack == stack and self.ttl == ttl:
            return self.reading
        return self.read(stack, now, ttl)

    def client(self, ip: str, v4: int, v6: int, prefix: str) -> None:
        self.ip, self.v4, self.v6, self.prefix, self.net = ip, v4, v6, prefix, net_tag(prefix)

    def read(self, stack: str, now: float, ttl: float) -> cookie.PresentedSession:
        """`cookie.read_decoded`, kept with the span of time over which its answer stays the same:
        between the nearest moments, before and after now, when one of the values becomes valid
        (issued, less the clock skew allowed) or expires (issued + ttl)."""
        reading = cookie.read_decoded(self.decoded, stack, now, ttl)
        valid_from, valid_until = -math.inf, math.inf
        for value in self.decoded:
            if isinstance(value, str):
                continue
            for moment in (value.issued - cookie.MAX_CLOCK_SKEW, value.issued + ttl):
                if moment <= now:
                    valid_from = max(valid_from, moment)
                else:
                    valid_until = min(valid_until, moment)
        self.reading, self.stack, self.ttl = reading, stack, ttl
        self.valid_from, self.valid_until = valid_from, valid_until
        return reading


def stack_of(c: DecisionContext) -> str:
    """What a session is issued to: the client's TLS stack (`fingerprint.ja4.session_ja4`) and the
    UA class (`ClientFingerprint.stack`)."""
    return c.fingerprint.stack


def _referer(referer: str | None, host: str) -> tuple[str, str]:
    """("", "") without a Referer, ("same", its path and query) for one of this site, ("other", "")
    for any other."""
    if not referer:
        return "", ""
    referer = referer[:MAX_PAGE]  # only the first MAX_PAGE characters count
    found = _REFERERS.get(referer)
    if found is not None and found[0] == host:
        return found[1], found[2]
    kind, page = _read_referer(referer, host)
    if len(host) <= MAX_PAGE:  # remembered keys and values stay bounded
        remember(_REFERERS, referer, (host, kind, page), _MEMO_MAX_REFERERS)
    return kind, page


def _read_referer(referer: str, host: str) -> tuple[str, str]:
    try:
        url = urlsplit(referer)
    except ValueError:
        return "other", ""
    if not host or url.netloc.lower() != host.lower():
        return "other", ""
    path = url.path or "/"
    return "same", path + "?" + url.query if url.query else path


# Pure, and a site's few pages are the Referer of most requests: Referer -> (host, its reading for
# that host), bounded (emptied when full).
_REFERERS: dict[str, tuple[str, str, str]] = {}

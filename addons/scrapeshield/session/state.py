"""One request's session: which session it presents, what the response must set, the session
counters it reads and bumps in the store, and the signals derived from them.

The counters are decayed scores in the store (`ScoreUpdate`), so they are bounded like every
score (memory: the score LRU; Redis: key TTLs) and travel in the request's one store batch:

| counter            | key              | bumped when                                   |
|--------------------|------------------|-----------------------------------------------|
| `ss.mint.ns`       | net + stack      | a session is minted                           |
| `ss.back.ns`       | net + stack      | a minted session is presented back (once)     |
| `ss.mint.stack`    | stack            | a cold session is minted (see COLD_RECORD)    |
| `ss.new.stack`     | stack            | a session is minted (half-life `half_life`)    |
| `ss.base.stack`    | stack            | a session is minted (half-life BASELINE_HALF_LIFE) |
| `ss.mint.net`      | net              | a session is minted                           |
| `ss.solve.stack`   | stack            | a challenge is solved (`solved_updates`)      |
| `ss.solve.net`     | net              | a challenge is solved                         |
| `ss.hops`          | session id       | a session arrives from another network        |
| `ss.solve.sess`    | session id       | a challenge is solved in this session (half-life SOLVED_HALF_LIFE) |
| `ss.page`          | session + page   | a session without a history fetches a page    |
| `ss.asset`         | session + page   | it fetches an asset with that page as Referer |

A person's history: a session *has* one once it followed a same-site link from a page it
fetched itself and whose assets it loaded (a Referer naming a page of its own `ss.page`, with
`ss.asset` for that page). The cookie remembers it (`returned` = HISTORY), so only sessions
without one write page and asset counters; after `fresh_for` such a session has *standing*:
its clearance reads the full record budget and stack-wide evidence leaves it alone.

Only the suspicious part of the traffic reads the stack- and network-wide counters: requests
without a session, fresh sessions and records fetched without a same-site Referer. An
established session browsing from its own network adds nothing to the batch.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..challenge.binding import short_hash
from ..context import NO_SIGNALS
from ..memo import remember
from ..store.base import ScoreUpdate
from .cookie import (
    COOKIE_NAME,
    DEFAULT_TTL,
    HISTORY,
    PresentedSession,
    SessionCookie,
    mint,
    net_tag,
    stack_tag,
)
from .difficulty import DifficultyCurve

# Signals (names a score weighs, a `session_signal:` condition names).
ABSENT = "session:absent"  # no valid session cookie (a session is minted on this response)
FRESH = "session:fresh"  # a session younger than `fresh_for`, or never presented back before
OTHER_STACK = "session_other_stack"  # a genuine session issued to another client stack
# A record fetched by a client with no history -- no session, or one never presented back -- and
# no Referer from another site: no Referer at all, or a same-site one no visit of this client made.
COLD_RECORD = "cold_record"
DEEP_RECORD = "deep_record"  # any record fetched without a same-site Referer
COOKIE_REFUSER = "cookie_refuser"  # this network + stack keeps getting sessions it never returns
SESSION_ROAMING = "session_roaming"  # one session from many networks within minutes
NET_MINT_BURST = "net_mint_burst"  # many sessions minted on this network recently
STACK_MINT_BURST = "stack_mint_burst"  # new sessions on this stack far above its usual rate
# A session without a history names, as its same-site Referer, a page it never fetched: written.
UNVISITED_REFERER = "unvisited_referer"
STATELESS_SIGNALS = (ABSENT, FRESH, OTHER_STACK, COLD_RECORD, DEEP_RECORD)
COUNTER_SIGNALS = (COOKIE_REFUSER, SESSION_ROAMING, NET_MINT_BURST, STACK_MINT_BURST, UNVISITED_REFERER)
SIGNALS = STATELESS_SIGNALS + COUNTER_SIGNALS

MINT_NS, BACK_NS, MINT_STACK, MINT_NET = "ss.mint.ns", "ss.back.ns", "ss.mint.stack", "ss.mint.net"
SOLVE_STACK, SOLVE_NET, HOPS = "ss.solve.stack", "ss.solve.net", "ss.hops"
NEW_STACK, BASE_STACK = "ss.new.stack", "ss.base.stack"
SOLVE_SESSION, PAGE, ASSET = "ss.solve.sess", "ss.page", "ss.asset"
# A session's solves are remembered for about an hour: a person solves once in a visit.
SOLVED_HALF_LIFE = 3600.0
# A page counts as this session's (its `ss.page` counter) while its decayed count is at least this:
# fetched within about two half-lives.
PAGE_SEEN_AT = 0.2
# The stack's usual rate of new sessions is learnt over hours, so a burst is judged against the
# site's own traffic: a busy site's steady stream of new Chrome visitors is no burst.
BASELINE_HALF_LIFE = 6 * 3600.0
_MAX_KEPT_READS = 4096  # networks (and stacks) whose read-only counters a tracker keeps built
BURST_FACTOR = 4.0  # new sessions at this many times the stack's usual rate (and at least burst_stack_at)

# A page's part of its `ss.page` / `ss.asset` key. Pure, and a site's few pages are fetched and
# named as Referer request after request: remembered (bounded: 4096 pages of at most MAX_PAGE
# characters, see stage.py; emptied when full).
_PAGE_TAGS: dict[str, str] = {}
_MAX_PAGE_TAGS = 4096


def page_tag(page: str) -> str:
    tag = _PAGE_TAGS.get(page)
    if tag is None:
        tag = remember(_PAGE_TAGS, page, short_hash(page), _MAX_PAGE_TAGS)
    return tag


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """The compiled `session:` policy section."""

    cookie_name: str = COOKIE_NAME
    ttl: float = DEFAULT_TTL
    fresh_for: float = 60.0  # a session this young is still "fresh"
    half_life: float = 600.0  # of the session counters
    refuser_at: float = 3.0  # sessions minted and never returned, per network + stack
    roaming_at: float = 3.0  # network changes of one session per half-life
    burst_net_at: float = 20.0  # sessions minted per half-life on one network
    burst_stack_at: float = 20.0  # new sessions per half-life on one stack, at the least, for a burst
    record_budget: int = 0  # records per clearance; 0 = unlimited
    fresh_record_budget: int = 0  # of those, records while the session has no standing; 0 = no own limit
    history_assets: int = 1  # assets of the page a link was followed from, for a person's history
    difficulty: DifficultyCurve = field(default_factory=DifficultyCurve)


class SessionContext:
    """The per-decision session state. Filled by `SessionTracker.begin`, read by key parts and
    conditions, completed by `after` with the counter signals and the adaptive difficulty."""

    __slots__ = (
        "cookie",
        "counters",
        "deep",
        "difficulty",
        "fresh",
        "history_at",
        "hops_at",
        "is_document",
        "is_record",
        "mint_at",
        "net",
        "net_at",
        "new_at",
        "prefix",
        "presented",
        "price_at",
        "price_later",
        "priced",
        "renewal",
        "set_cookie",
        "signals",
        "solved_at",
        "stack",
        "stack_tag",
        "standing",
        "unvisited",
    )

    def __init__(self, presented: PresentedSession, prefix: str, stack: str, net: str = "") -> None:
        """`net`: `net_tag(prefix)`, when the caller has it ("": computed here)."""
        self.presented = presented
        self.cookie: SessionCookie | None = presented.cookie  # the valid session, if any
        self.set_cookie: SessionCookie | None = None  # what the response must set, if anything
        self.prefix = prefix
        self.stack = stack
        self.net: str = net or net_tag(prefix)
        self.stack_tag: str = stack_tag(stack)
        self.fresh = False
        self.is_document = False
        self.is_record = False
        self.deep = False
        # A person's history: the session has one (cookie), and with it past `fresh_for`, standing.
        self.standing = False
        self.renewal = False  # a record under a clearance of a session without standing: priced as cold
        self.unvisited = False  # `unvisited_referer` held (`after`): a challenge is priced as cold
        # The price is read with the request's counters, or only for a challenge (`begin`'s `price`).
        self.price_later = False
        self.priced = False  # the adaptive difficulty was read (`after`)
        self.signals: Mapping[str, float] = NO_SIGNALS  # a dict of its own when a signal holds
        self.counters: tuple[ScoreUpdate, ...] = ()
        self.difficulty = 0  # adaptive difficulty for a challenge of this request; 0 = the rule's
        # Where `after` finds each counter's value in `counters` (-1: not read by this request).
        self.mint_at = -1  # ss.mint.ns, then ss.back.ns
        self.hops_at = -1  # ss.hops
        self.new_at = -1  # ss.new.stack, then ss.base.stack
        self.history_at = -1  # the referring page's ss.page, then ss.asset
        self.net_at = -1  # ss.mint.net
        self.price_at = -1  # the price: ss.mint.stack, ss.mint.net, ss.solve.stack, ss.solve.net
        self.solved_at = -1  # ss.solve.sess (with the price, for a request with a session)

    @property
    def id(self) -> str | None:
        return self.cookie.id if self.cookie is not None else None

    @property
    def state(self) -> str:
        """absent, fresh or established."""
        if self.cookie is None:
            return "absent"
        return "fresh" if self.fresh else "established"


def _kept(table: dict[str, tuple[ScoreUpdate, ...]], key: str,
          reads: tuple[ScoreUpdate, ...]) -> tuple[ScoreUpdate, ...]:
    """`reads` remembered under `key` in one of a tracker's read memos (emptied when full)."""
    return remember(table, key, reads, _MAX_KEPT_READS)


class SessionTracker:
    """Session bookkeeping around the engine's decision; pure and stateless itself."""

    def __init__(self, settings: SessionSettings) -> None:
        self.settings = settings
        self._net_reads: dict[str, tuple[ScoreUpdate, ...]] = {}
        self._stack_reads_kept: dict[str, tuple[ScoreUpdate, ...]] = {}
        self._price_reads_kept: dict[str, tuple[ScoreUpdate, ...]] = {}

    def begin(self, presented: PresentedSession, prefix: str, stack: str, now: float, *,
              is_document: bool, is_record: bool, referer: str, is_asset: bool = False, page: str = "",
              referer_page: str = "", price: bool = True, net: str = "") -> SessionContext:
        """`referer`: "" (none), "same" (this site) or "other"; `page`: this request's path and query;
        `referer_page`: the same-site Referer's path and query ("" for none or another site's).
        `price`: read the adaptive difficulty's counters with this request's (one batch: what a
        networked store wants); False: only what the signals need -- a challenge reads the price
        afterwards (`price_updates`), at no round trip on an in-process store. `net`:
        `net_tag(prefix)` when the caller has it."""
        s = self.settings
        ctx = SessionContext(presented, prefix, stack, net)
        ctx.is_document = is_document
        ctx.is_record = is_record
        ctx.price_later = not price
        deep = ctx.deep = is_record and referer != "same"
        cookie = ctx.cookie
        net, tag = ctx.net, ctx.stack_tag
        if (cookie is not None and cookie.returned >= HISTORY and cookie.net == net
                and not now - cookie.issued < s.fresh_for and presented.other_stack is None):
            # Most requests: a session with standing, from the network its cookie names. Nothing to
            # write but what a record fetched straight by URL reads (what the general path below
            # finds for it, with the counters' tuples kept per network and stack).
            ctx.standing = True
            if deep:
                ctx.signals = {DEEP_RECORD: 1.0}
                if price:
                    ctx.price_at, ctx.net_at, ctx.solved_at = 0, 1, 4
                    ctx.counters = (*self._price_reads(net, tag),
                                    ScoreUpdate(SOLVE_SESSION, cookie.id, 0.0, SOLVED_HALF_LIFE))
                else:
                    ctx.net_at = 0
                    ctx.counters = self._net_read(net)
            return ctx
        # No history: no session, or one whose cookie comes back for the first time (a person's page
        # view returns it with the page's assets before they click on). A person arriving from a
        # search result has a Referer of another site; a same-site one without a history is written.
        returned = cookie is not None and bool(cookie.returned)
        cold = is_record and referer != "other" and not returned
        # Once presented back, a session without a person's history that fetches a record with no
        # Referer at all (a fleet's browser context; a person would have clicked) prices the stack
        # like a cold record. Not a signal: a crowd keeping cookies must not weigh on its network.
        priced_cold = cold or (is_record and referer == "" and not (returned and cookie is not None
                                                                      and cookie.returned >= HISTORY))
        signals: dict[str, float] = {}
        ups: list[ScoreUpdate] = []
        hl = s.half_life
        if cookie is None:
            minted = ctx.set_cookie = mint(prefix, stack, now)
            sid = minted.id
            signals[ABSENT] = 1.0
            ns = net + tag
            ctx.mint_at, ctx.new_at = 0, 2
            ups += [ScoreUpdate(MINT_NS, ns, 1.0, hl), ScoreUpdate(BACK_NS, ns, 0.0, hl),
                    ScoreUpdate(NEW_STACK, tag, 1.0, hl), ScoreUpdate(BASE_STACK, tag, 1.0, BASELINE_HALF_LIFE)]
        else:
            sid = cookie.id
            fresh = ctx.fresh = not cookie.returned or now - cookie.issued < s.fresh_for
            if fresh:
                signals[FRESH] = 1.0
            moved = cookie.net != net
            if not cookie.returned or moved:
                ctx.set_cookie = SessionCookie(sid, cookie.issued, net, cookie.stack, max(1, cookie.returned))
            if not cookie.returned:  # its first time back: the mint was not wasted
                ups.append(ScoreUpdate(BACK_NS, cookie.net + cookie.stack, 1.0, hl))
            if moved:
                ctx.hops_at = len(ups)
                ups.append(ScoreUpdate(HOPS, sid, 1.0, hl))
            if fresh:  # a fresh session is priced by the stack's burst too
                ctx.new_at = len(ups)
                ups += self._stack_reads(tag)
        if cookie is not None and cookie.returned >= HISTORY:
            ctx.standing = not ctx.fresh
        else:
            # No history yet: remember its pages, the assets loaded for them and check where it navigates from.
            if is_document and page:
                ups.append(ScoreUpdate(PAGE, sid + page_tag(page), 1.0, hl))
            if referer_page and cookie is not None:
                ref = sid + page_tag(referer_page)
                if is_asset:
                    ups.append(ScoreUpdate(ASSET, ref, 1.0, hl))
                elif is_document:
                    ctx.history_at = len(ups)
                    ups += [ScoreUpdate(PAGE, ref, 0.0, hl), ScoreUpdate(ASSET, ref, 0.0, hl)]
        if cold:
            signals[COLD_RECORD] = 1.0
        if presented.other_stack is not None:
            signals[OTHER_STACK] = 1.0
        if deep:
            signals[DEEP_RECORD] = 1.0
        if cookie is None or ctx.fresh or deep or (is_document and not ctx.standing):
            minted_here = 1.0 if cookie is None else 0.0
            if price:
                at = ctx.price_at = len(ups)
                ctx.net_at = at + 1
                if priced_cold or cookie is None:
                    ups += [ScoreUpdate(MINT_STACK, tag, 1.0 if priced_cold else 0.0, hl),
                            ScoreUpdate(MINT_NET, net, minted_here, hl),
                            ScoreUpdate(SOLVE_STACK, tag, 0.0, hl), ScoreUpdate(SOLVE_NET, net, 0.0, hl)]
                else:
                    ups += self._price_reads(net, tag)
                if cookie is not None:
                    ctx.solved_at = at + 4
                    ups.append(ScoreUpdate(SOLVE_SESSION, sid, 0.0, SOLVED_HALF_LIFE))
            else:  # the counts still change; only `net_mint_burst` is read now
                if priced_cold:
                    ups.append(ScoreUpdate(MINT_STACK, tag, 1.0, hl))
                ctx.net_at = len(ups)
                if cookie is None:
                    ups.append(ScoreUpdate(MINT_NET, net, minted_here, hl))
                else:
                    ups += self._net_read(net)
        if signals:
            ctx.signals = signals
        ctx.counters = tuple(ups)
        return ctx

    # The counters most requests only read, built once per network and stack (bounded, emptied when
    # full): a request's batch holds them as they are, read-only like every ScoreUpdate.
    def _net_read(self, net: str) -> tuple[ScoreUpdate, ...]:
        """`ss.mint.net` of the network, read (what a request priced later reads)."""
        found = self._net_reads.get(net)
        if found is None:
            found = _kept(self._net_reads, net, (ScoreUpdate(MINT_NET, net, 0.0, self.settings.half_life),))
        return found

    def _stack_reads(self, tag: str) -> tuple[ScoreUpdate, ...]:
        """`ss.new.stack` and `ss.base.stack` of the stack, read (what a fresh session reads)."""
        found = self._stack_reads_kept.get(tag)
        if found is None:
            hl = self.settings.half_life
            found = _kept(self._stack_reads_kept, tag, (ScoreUpdate(NEW_STACK, tag, 0.0, hl),
                                                        ScoreUpdate(BASE_STACK, tag, 0.0, BASELINE_HALF_LIFE)))
        return found

    def _price_reads(self, net: str, tag: str) -> tuple[ScoreUpdate, ...]:
        """The price's four counters of the network and stack, read (nothing minted, not cold)."""
        key = net + tag
        found = self._price_reads_kept.get(key)
        if found is None:
            hl = self.settings.half_life
            found = _kept(self._price_reads_kept, key, (
                ScoreUpdate(MINT_STACK, tag, 0.0, hl), ScoreUpdate(MINT_NET, net, 0.0, hl),
                ScoreUpdate(SOLVE_STACK, tag, 0.0, hl), ScoreUpdate(SOLVE_NET, net, 0.0, hl)))
        return found

    def price_counters(self, ctx: SessionContext) -> None:
        """Make sure this request reads what the adaptive difficulty needs (a record fetched under
        a clearance may end in a new challenge: its price must be the going one). Nothing to do for
        a request that reads its price only if challenged (`price_later`)."""
        if ctx.price_at >= 0 or ctx.price_later:
            return
        ctx.counters = self._with_price(ctx, ctx.counters)

    def price_updates(self, ctx: SessionContext) -> tuple[ScoreUpdate, ...]:
        """For a challenge whose request did not read the going price (a session with standing, e.g.
        challenged by its own score, or any request that reads its price only if challenged): the
        counters to read, in a small batch of their own; `after` on their values sets the
        difficulty. Empty when the request was priced."""
        if ctx.priced:
            return ()
        ctx.mint_at = ctx.hops_at = ctx.new_at = ctx.history_at = -1
        counters = ctx.counters = self._with_price(ctx, ())
        return counters

    def _with_price(self, ctx: SessionContext, counters: tuple[ScoreUpdate, ...]) -> tuple[ScoreUpdate, ...]:
        """`counters` and the price after them (their places noted in `ctx`)."""
        hl = self.settings.half_life
        at = ctx.price_at = len(counters)
        ctx.net_at = at + 1
        tag, net = ctx.stack_tag, ctx.net
        price: tuple[ScoreUpdate, ...] = (ScoreUpdate(MINT_STACK, tag, 0.0, hl), ScoreUpdate(MINT_NET, net, 0.0, hl),
                                          ScoreUpdate(SOLVE_STACK, tag, 0.0, hl), ScoreUpdate(SOLVE_NET, net, 0.0, hl))
        if ctx.cookie is not None:
            ctx.solved_at = at + 4
            price += (ScoreUpdate(SOLVE_SESSION, ctx.cookie.id, 0.0, SOLVED_HALF_LIFE),)
        else:
            ctx.solved_at = -1
        return counters + price

    def after(self, ctx: SessionContext, values: Sequence[float]) -> Mapping[str, float]:
        """The counter signals from the counters' values after this request's batch (in
        `ctx.counters` order); also sets the adaptive difficulty when the price was read. Returns the
        counter signals (the engine keeps them as the context's `level_signals`, apart from the
        event signals in `ctx.signals`, so they never add to a stored score)."""
        s = self.settings
        out: dict[str, float] = {}
        n = len(values)
        at = ctx.history_at
        if at >= 0 and at + 1 < n:
            if values[at] < PAGE_SEEN_AT:
                out[UNVISITED_REFERER] = 1.0
                ctx.unvisited = True
            else:
                self._check_history(ctx, values[at + 1])
        # Decayed counters are counts that fade: one just minted counts as about one, so they are
        # compared rounded.
        at = ctx.mint_at
        if at >= 0 and at + 1 < n and values[at] - values[at + 1] + 0.5 >= s.refuser_at:
            out[COOKIE_REFUSER] = 1.0
        at = ctx.hops_at
        if (values[at] if 0 <= at < n else 0.0) + 0.5 >= s.roaming_at:
            out[SESSION_ROAMING] = 1.0
        at = ctx.net_at
        if 0 <= at < n and values[at] + 0.5 >= s.burst_net_at:
            out[NET_MINT_BURST] = 1.0
        at = ctx.price_at
        if at >= 0 and at + 3 < n:
            # The going price, for every request that read it (a spent record budget included).
            ctx.priced = True
            cold = COLD_RECORD in ctx.signals or ctx.unvisited or ctx.renewal
            solved_at = ctx.solved_at
            ctx.difficulty = s.difficulty.bits(values[at] + values[at + 2], values[at + 1] + values[at + 3],
                                               cold=cold, solved=values[solved_at] if 0 <= solved_at < n else 0.0)
        at = ctx.new_at
        if at >= 0 and at + 1 < n:
            new, usual = values[at], values[at + 1]
            # decayed sums over their half-lives -> rates; a burst is far above the usual rate
            if new + 0.5 >= s.burst_stack_at and new / s.half_life >= BURST_FACTOR * usual / BASELINE_HALF_LIFE:
                out[STACK_MINT_BURST] = 1.0
        return out

    def _check_history(self, ctx: SessionContext, assets: float) -> None:
        """A same-site navigation from a page this session fetched, whose assets it loaded: a
        person's history from now on (the response re-issues the cookie to say so)."""
        cookie = ctx.cookie
        if cookie is None or assets + 0.5 < self.settings.history_assets:
            return
        ctx.set_cookie = SessionCookie(cookie.id, cookie.issued, ctx.net, cookie.stack, HISTORY)
        ctx.standing = not ctx.fresh

    def solved_updates(self, prefix: str, stack: str, session_id: str | None = None) -> tuple[ScoreUpdate, ...]:
        """What a solved challenge adds to the counters (the verify endpoint applies these)."""
        hl = self.settings.half_life
        ups: tuple[ScoreUpdate, ...] = (ScoreUpdate(SOLVE_STACK, stack_tag(stack), 1.0, hl),
                                        ScoreUpdate(SOLVE_NET, net_tag(prefix), 1.0, hl))
        if session_id is not None:
            ups += (ScoreUpdate(SOLVE_SESSION, session_id, 1.0, SOLVED_HALF_LIFE),)
        return ups

"""Session counters on every store backend: the same signals from memory and Redis, bounded alike.

The session stage keeps its state as decayed scores (`session/state.py`), so what holds here is
that each backend gives the tracker the same values within one batch per request.
"""
from __future__ import annotations

from scrapeshield.clock import FakeClock
from scrapeshield.session.cookie import HISTORY, NO_SESSION, PresentedSession, SessionCookie, net_tag, stack_tag
from scrapeshield.session.state import COOKIE_REFUSER, SESSION_ROAMING, SessionContext, SessionSettings, SessionTracker
from scrapeshield.store.base import Batch, Store

STACK = "t13d1516h2_8daaf6152771_e5627efa2ab1|browser"


async def _request(store: Store, tracker: SessionTracker, clock: FakeClock,
                   presented: PresentedSession = NO_SESSION, net: str = "203.0.113.0/24"):  # type: ignore[no-untyped-def]
    ctx = tracker.begin(presented, net, STACK, clock.now(), is_document=True, is_record=False, referer="")
    res = await store.apply(Batch(scores=ctx.counters), clock.now())
    return ctx, tracker.after(ctx, res.scores)


async def test_a_cookie_refuser_is_seen_alike_on_every_backend(store: Store, clock: FakeClock) -> None:
    tracker = SessionTracker(SessionSettings(refuser_at=3))
    fired = []
    for _ in range(4):
        clock.advance(1)
        fired.append(COOKIE_REFUSER in (await _request(store, tracker, clock))[1])
    assert fired == [False, False, True, True]
    # and it fades: after a few half-lives the network + stack is forgiven
    clock.advance(5 * 600)
    assert COOKIE_REFUSER not in (await _request(store, tracker, clock))[1]


async def test_a_roaming_session_is_seen_alike_on_every_backend(store: Store, clock: FakeClock) -> None:
    tracker = SessionTracker(SessionSettings(roaming_at=3))
    ctx, _ = await _request(store, tracker, clock)
    cookie = ctx.set_cookie
    assert cookie is not None
    seen = []
    for i in range(3):
        clock.advance(1)
        ctx, level = await _request(store, tracker, clock, PresentedSession(cookie, "ok"), net=f"198.51.{i}.0/24")
        seen.append(SESSION_ROAMING in level)
        cookie = ctx.set_cookie or cookie
    assert seen == [False, False, True]


async def test_a_person_s_history_is_seen_alike_on_every_backend(store: Store, clock: FakeClock) -> None:
    """A page, its asset, a link followed from it: a history (the cookie says so); a forged Referer
    naming a page the session never fetched: none."""
    tracker = SessionTracker(SessionSettings(fresh_for=10.0))

    async def request(cookie: SessionCookie | None, *, page: str = "", referer_page: str = "",
                      asset: bool = False) -> SessionContext:
        presented = NO_SESSION if cookie is None else PresentedSession(cookie, "ok")
        ctx = tracker.begin(presented, "203.0.113.0/24", STACK, clock.now(), is_document=not asset,
                            is_record=False, referer="same" if referer_page else "", is_asset=asset, page=page,
                            referer_page=referer_page)
        res = await store.apply(Batch(scores=ctx.counters), clock.now())
        tracker.after(ctx, res.scores)
        return ctx

    minted = (await request(None, page="/")).set_cookie
    assert minted is not None
    clock.advance(1)
    cookie = (await request(minted, referer_page="/", asset=True)).set_cookie or minted
    clock.advance(12)
    forged = await request(cookie, page="/people/2", referer_page="/people/1")
    assert not forged.standing
    person = await request(cookie, page="/people/2", referer_page="/")
    assert person.standing and person.set_cookie is not None and person.set_cookie.has_history


async def test_a_record_fetched_by_url_by_a_session_with_standing_reads_the_going_price_alike_on_every_backend(
        store: Store, clock: FakeClock) -> None:
    """The counters such a request reads are kept built per network and stack: the same values on
    every backend, request after request."""
    settings = SessionSettings(fresh_for=10.0)
    tracker = SessionTracker(settings)
    for _ in range(3):  # three sessions minted on the network
        await _request(store, tracker, clock)
    cookie = SessionCookie("A" * 16, int(clock.now()) - 100, net_tag("203.0.113.0/24"), stack_tag(STACK), HISTORY)
    read = []
    for _ in range(2):
        clock.advance(1)
        ctx = tracker.begin(PresentedSession(cookie, "ok"), "203.0.113.0/24", STACK, clock.now(), is_document=True,
                            is_record=True, referer="", price=True)
        res = await store.apply(Batch(scores=ctx.counters), clock.now())
        tracker.after(ctx, res.scores)
        assert ctx.standing and ctx.priced and len(res.scores) == 5
        minted_here = res.scores[1]
        assert 2.5 < minted_here <= 3.0  # the three mints, decayed a little; this request mints none
        assert ctx.difficulty == settings.difficulty.bits(res.scores[0] + res.scores[2], minted_here + res.scores[3],
                                                          cold=False, solved=res.scores[4])
        read.append(ctx.difficulty)
    assert read[0] == read[1]

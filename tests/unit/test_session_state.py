"""Session signals and counters, through the tracker and a real MemoryStore batch."""
from __future__ import annotations

from collections.abc import Mapping

import pytest

from scrapeshield.session.cookie import (
    HISTORY,
    NO_SESSION,
    PresentedSession,
    SessionCookie,
    mint,
    net_tag,
    stack_tag,
)
from scrapeshield.session.state import (
    ABSENT,
    COLD_RECORD,
    COOKIE_REFUSER,
    DEEP_RECORD,
    FRESH,
    MINT_NET,
    MINT_STACK,
    NET_MINT_BURST,
    OTHER_STACK,
    SESSION_ROAMING,
    SOLVE_NET,
    SOLVE_SESSION,
    SOLVE_STACK,
    SOLVED_HALF_LIFE,
    SessionContext,
    SessionSettings,
    SessionTracker,
)
from scrapeshield.store.base import Batch, ScoreUpdate
from scrapeshield.store.memory import MemoryStore

STACK = "t13d1516h2_8daaf6152771_e5627efa2ab1|browser"
NET = "203.0.113.0/24"
T0 = 1_800_000_000.0


class Visit:
    """A tracker over a real store, as the engine drives it: begin, one batch, after."""

    def __init__(self, settings: SessionSettings | None = None) -> None:
        self.tracker = SessionTracker(settings or SessionSettings())
        self.store = MemoryStore()

    def request(self, presented: PresentedSession = NO_SESSION, *, net: str = NET, stack: str = STACK,
                now: float = T0, record: bool = False, referer: str = "", page: str = "",
                referer_page: str = "", asset: bool = False) -> tuple[SessionContext, Mapping[str, float]]:
        ctx = self.tracker.begin(presented, net, stack, now, is_document=not asset, is_record=record,
                                 referer=referer, is_asset=asset, page=page, referer_page=referer_page)
        values = self.store.apply_now(Batch(scores=ctx.counters), now).scores
        return ctx, self.tracker.after(ctx, values)


def _ok(c: SessionCookie) -> PresentedSession:
    return PresentedSession(c, "ok")


def test_a_client_without_a_session_gets_one_minted_and_is_absent() -> None:
    ctx, _ = Visit().request()
    assert ctx.state == "absent" and ctx.id is None and ctx.set_cookie is not None
    assert ABSENT in ctx.signals and not ctx.set_cookie.returned


def test_the_first_return_marks_the_cookie_returned_once() -> None:
    visit = Visit()
    minted = visit.request()[0].set_cookie
    assert minted is not None
    back, _ = visit.request(_ok(minted), now=T0 + 1)
    assert back.id == minted.id and back.state == "fresh"
    assert back.set_cookie == SessionCookie(minted.id, minted.issued, minted.net, minted.stack, True)
    again, _ = visit.request(_ok(back.set_cookie), now=T0 + 2)
    assert again.set_cookie is None


def test_a_session_is_established_after_fresh_for_once_returned() -> None:
    visit = Visit(SessionSettings(fresh_for=60))
    c = SessionCookie("A" * 16, int(T0), net_tag(NET), mint(NET, STACK, T0).stack, HISTORY)
    assert visit.request(_ok(c), now=T0 + 30)[0].state == "fresh"
    established, _ = visit.request(_ok(c), now=T0 + 61)
    assert established.state == "established" and FRESH not in established.signals
    assert established.counters == ()  # nothing to ask the store for a person at home
    assert established.standing


def test_a_client_that_never_returns_its_cookie_becomes_a_cookie_refuser() -> None:
    visit = Visit(SessionSettings(refuser_at=3))
    fired = [COOKIE_REFUSER in visit.request(now=T0 + i)[1] for i in range(4)]
    assert fired == [False, False, True, True]


def test_many_people_behind_one_address_who_keep_their_cookies_are_no_refusers() -> None:
    visit = Visit(SessionSettings(refuser_at=3))
    for i in range(20):  # twenty people on one NAT, same browser build, each back once
        minted = visit.request(now=T0 + i)[0].set_cookie
        assert minted is not None
        visit.request(_ok(minted), now=T0 + i + 0.5)
    assert COOKIE_REFUSER not in visit.request(now=T0 + 30)[1]


def test_one_session_from_many_networks_is_roaming() -> None:
    visit = Visit(SessionSettings(roaming_at=3))
    cookie = visit.request()[0].set_cookie
    assert cookie is not None
    seen = []
    for i in range(4):  # a proxy pool sharing one cookie jar: every request from another /24
        ctx, level = visit.request(_ok(cookie), net=f"198.51.{i}.0/24", now=T0 + 1 + i)
        seen.append(SESSION_ROAMING in level)
        cookie = ctx.set_cookie or cookie
    assert seen == [False, False, True, True]


def test_a_phone_switching_from_wifi_to_mobile_is_not_roaming() -> None:
    visit = Visit(SessionSettings(roaming_at=3))
    cookie = visit.request()[0].set_cookie
    assert cookie is not None
    ctx, level = visit.request(_ok(cookie), net="198.51.100.0/24", now=T0 + 60)
    assert ctx.set_cookie is not None and ctx.set_cookie.net == net_tag("198.51.100.0/24")
    for i in range(10):  # the updated cookie, from the new network: no more hops
        _, level = visit.request(_ok(ctx.set_cookie), net="198.51.100.0/24", now=T0 + 61 + i)
    assert SESSION_ROAMING not in level


def test_a_cookie_of_another_stack_is_a_signal() -> None:
    other = mint(NET, "-|library", T0)
    ctx, _ = Visit().request(PresentedSession(None, "other_stack", other))
    assert OTHER_STACK in ctx.signals and ctx.state == "absent"


def test_a_record_fetched_without_a_history_and_without_a_referer_of_another_site_is_cold() -> None:
    visit = Visit()
    assert COLD_RECORD in visit.request(record=True)[0].signals
    by_search = visit.request(record=True, referer="other")[0]
    assert COLD_RECORD not in by_search.signals and DEEP_RECORD in by_search.signals
    # A same-site Referer from a client that never visited (no session): written by the client.
    forged = visit.request(record=True, referer="same")[0]
    assert COLD_RECORD in forged.signals and DEEP_RECORD not in forged.signals
    assert COLD_RECORD not in visit.request(record=False)[0].signals
    # A session presented back for the first time is still without a history; once returned
    # (a page's assets bring it back), a link to a record is a person's click.
    minted = visit.request()[0].set_cookie
    assert minted is not None
    first_back = visit.request(_ok(minted), record=True, referer="same", now=T0 + 1)[0]
    assert COLD_RECORD in first_back.signals
    assert first_back.set_cookie is not None and first_back.set_cookie.returned
    by_link = visit.request(_ok(first_back.set_cookie), record=True, referer="same", now=T0 + 2)[0]
    assert not {COLD_RECORD, DEEP_RECORD} & set(by_link.signals)


def test_many_new_sessions_from_one_network_are_a_burst() -> None:
    visit = Visit(SessionSettings(burst_net_at=5))
    fired = [NET_MINT_BURST in visit.request(now=T0 + i)[1] for i in range(6)]
    assert fired == [False] * 4 + [True] * 2


def test_the_difficulty_of_a_new_session_rises_with_mints_and_solves_on_its_network() -> None:
    settings = SessionSettings()
    visit = Visit(settings)
    first = visit.request()[0].difficulty
    for i in range(10):
        visit.request(now=T0 + i)
    visit.store.apply_now(Batch(scores=visit.tracker.solved_updates(NET, STACK)), T0 + 10)
    later = visit.request(now=T0 + 11)[0].difficulty
    assert first == settings.difficulty.base
    assert later > first + 4


def test_a_burst_of_new_sessions_on_a_stack_is_judged_against_its_usual_rate() -> None:
    from scrapeshield.session.state import BASE_STACK, BASELINE_HALF_LIFE, STACK_MINT_BURST
    from scrapeshield.store.base import ScoreUpdate

    burst = Visit(SessionSettings(burst_stack_at=5))
    fired = [STACK_MINT_BURST in burst.request(net=f"198.51.{i}.0/24", now=T0 + i)[1] for i in range(6)]
    assert fired == [False] * 4 + [True] * 2
    # a site whose visitors on this stack have arrived at this pace for hours: no burst
    steady = Visit(SessionSettings(burst_stack_at=5))
    ctx = steady.tracker.begin(NO_SESSION, NET, STACK, T0, is_document=True, is_record=False, referer="")
    steady.store.apply_now(Batch(scores=(ScoreUpdate(BASE_STACK, ctx.stack_tag, 1000.0, BASELINE_HALF_LIFE),)), T0)
    assert not any(STACK_MINT_BURST in steady.request(net=f"198.51.{i}.0/24", now=T0 + i)[1] for i in range(6))


def _person_with_a_history(visit: Visit, start: float = T0) -> SessionCookie:
    """A person's first seconds: a page, its assets, a link followed from it; the cookie they hold then."""
    minted = visit.request(page="/", now=start)[0].set_cookie
    assert minted is not None
    back, _ = visit.request(_ok(minted), asset=True, referer="same", referer_page="/", now=start + 0.2)
    cookie = back.set_cookie or minted
    visit.request(_ok(cookie), asset=True, referer="same", referer_page="/", now=start + 0.3)
    clicked, _ = visit.request(_ok(cookie), page="/products/7", referer="same", referer_page="/", now=start + 4)
    assert clicked.set_cookie is not None and clicked.set_cookie.returned == HISTORY
    return clicked.set_cookie


def test_a_link_followed_from_a_page_the_session_fetched_with_its_assets_is_a_person_s_history() -> None:
    visit = Visit(SessionSettings(fresh_for=10.0))
    cookie = _person_with_a_history(visit)
    young, _ = visit.request(_ok(cookie), page="/people/9", referer="same", referer_page="/products/7", now=T0 + 6)
    assert not young.standing  # a history, but still fresh
    later, _ = visit.request(_ok(cookie), page="/people/10", referer="same", referer_page="/people/9", now=T0 + 12)
    assert later.standing and later.set_cookie is None and later.counters == ()
    # the cookie says it across replicas and restarts: no store state needed once it has one
    assert Visit(SessionSettings(fresh_for=10.0)).request(_ok(cookie), page="/", now=T0 + 13)[0].standing


def test_the_request_that_shows_the_history_counts_at_once_when_the_session_is_old_enough() -> None:
    visit = Visit(SessionSettings(fresh_for=10.0))
    minted = visit.request(page="/", now=T0)[0].set_cookie
    assert minted is not None
    back = visit.request(_ok(minted), asset=True, referer="same", referer_page="/", now=T0 + 1)[0].set_cookie
    assert back is not None
    clicked, _ = visit.request(_ok(back), page="/people/3", record=True, referer="same", referer_page="/",
                               now=T0 + 30)
    assert clicked.standing and clicked.set_cookie is not None and clicked.set_cookie.has_history


@pytest.mark.parametrize("what", ["forged referer", "no assets", "assets of a page never fetched",
                                  "another session's page"])
def test_what_a_fleet_writes_is_no_history(what: str) -> None:
    visit = Visit(SessionSettings(fresh_for=10.0))
    minted = visit.request(page="/people/1", record=True, referer="same", now=T0)[0].set_cookie
    assert minted is not None
    other = visit.request(page="/", now=T0)[0].set_cookie
    assert other is not None
    cookie = visit.request(_ok(minted), page="/people/2", record=True, referer="same", referer_page="/",
                           now=T0 + 1)[0].set_cookie or minted
    if what == "no assets":
        visit.request(_ok(cookie), page="/", now=T0 + 2)
    elif what == "assets of a page never fetched":
        visit.request(_ok(cookie), asset=True, referer="same", referer_page="/", now=T0 + 2)
    elif what == "another session's page":
        visit.request(_ok(other), asset=True, referer="same", referer_page="/", now=T0 + 2)
        visit.request(_ok(cookie), asset=True, referer="same", referer_page="/", now=T0 + 2)
    ctx, _ = visit.request(_ok(cookie), page="/people/3", record=True, referer="same", referer_page="/",
                           now=T0 + 30)
    assert not ctx.standing and (ctx.set_cookie is None or not ctx.set_cookie.has_history)


def test_page_history_is_kept_per_session_in_bounded_decaying_counters() -> None:
    visit = Visit(SessionSettings(fresh_for=10.0, half_life=600.0))
    minted = visit.request(page="/", now=T0)[0].set_cookie
    assert minted is not None
    visit.request(_ok(minted), asset=True, referer="same", referer_page="/", now=T0 + 1)
    # a link followed from a page fetched long ago (many half-lives): the page is forgotten
    late, _ = visit.request(_ok(minted), page="/people/3", referer="same", referer_page="/", now=T0 + 6 * 600)
    assert not late.standing and (late.set_cookie is None or not late.set_cookie.has_history)
    small = Visit()
    small.store = MemoryStore(max_keys=50)
    for i in range(200):
        small.request(page=f"/products/{i}", now=T0 + i)
    assert small.store.tracked_keys() <= 50 + 10


def test_records_under_a_clearance_spend_the_fresh_budget_until_the_session_has_standing() -> None:
    from scrapeshield.challenge.keys import KeyRing
    from scrapeshield.facts import RequestFacts
    from scrapeshield.session.stage import SessionStage

    settings = SessionSettings(record_budget=20, fresh_record_budget=3, fresh_for=10.0)
    stage = SessionStage(KeyRing((b"k" * 32,)), lambda facts, session_id: "clearance-token")
    facts = RequestFacts(peer_ip="203.0.113.7", method="GET", host="shop.example", path="/user/42")
    visit = Visit(settings)
    minted = visit.request()[0].set_cookie
    assert minted is not None
    fresh = visit.request(_ok(minted), record=True, referer="same", now=T0 + 1)[0]
    assert fresh.state == "fresh" and fresh.set_cookie is not None
    # established (returned, past fresh_for) but no history: a fleet's aged identity reads the small budget
    aged = visit.request(_ok(fresh.set_cookie), record=True, referer="same", now=T0 + 30)[0]
    assert aged.state == "established" and not aged.standing
    cookie = _person_with_a_history(visit, T0 + 40)
    person = visit.request(_ok(cookie), page="/user/42", record=True, referer="same", referer_page="/products/7",
                           now=T0 + 60)[0]
    assert person.standing
    young, old, known = (stage.budget_check(facts, c, settings) for c in (fresh, aged, person))
    assert young is not None and old is not None and known is not None
    assert (young.limit.count, old.limit.count, known.limit.count) == (3, 3, 20)
    assert young.key != known.key  # two budgets of one clearance: the fresh one is not the whole one
    assert fresh.renewal and aged.renewal and not person.renewal
    # a record fetched straight by URL (no same-site Referer) spends the small budget too
    by_url = visit.request(_ok(cookie), page="/user/43", record=True, referer="", now=T0 + 61)[0]
    assert by_url.standing and by_url.deep
    straight = stage.budget_check(facts, by_url, settings)
    assert straight is not None and straight.limit.count == 3
    unlimited_fresh = stage.budget_check(facts, fresh, SessionSettings(record_budget=20))
    assert unlimited_fresh is not None and unlimited_fresh.limit.count == 20


def test_a_spent_budget_without_standing_is_priced_cold_and_every_solve_of_the_session_adds_repeat_bits() -> None:
    from scrapeshield.session.difficulty import DifficultyCurve

    curve = DifficultyCurve(base=16, maximum=28, stack_unit=1.0, stack_cap=2.0, cold_stack_cap=6.0, net_cap=0.0,
                            repeat_bits=2.0)
    settings = SessionSettings(fresh_for=10.0, difficulty=curve)
    visit = Visit(settings)
    for i in range(8):  # cold records on the stack, from other networks
        visit.request(net=f"198.51.{i}.0/24", record=True, now=T0 + i)
    minted = visit.request(now=T0 + 9)[0].set_cookie
    assert minted is not None
    cookie = visit.request(_ok(minted), now=T0 + 10)[0].set_cookie or minted
    ctx = visit.tracker.begin(_ok(cookie), NET, STACK, T0 + 30, is_document=True, is_record=True, referer="same")
    plain = visit.tracker.after(ctx, visit.store.apply_now(Batch(scores=ctx.counters), T0 + 30).scores)
    assert ctx.difficulty == 16 + 2 and not plain  # stack_cap
    visit.store.apply_now(Batch(scores=visit.tracker.solved_updates(NET, STACK, cookie.id)), T0 + 31)
    renewal = visit.tracker.begin(_ok(cookie), NET, STACK, T0 + 40, is_document=True, is_record=True,
                                  referer="same")
    renewal.renewal = True  # what the record budget check sets for a session without standing
    visit.tracker.price_counters(renewal)
    visit.tracker.after(renewal, visit.store.apply_now(Batch(scores=renewal.counters), T0 + 40).scores)
    assert renewal.difficulty == 16 + 6 + 2  # cold cap, plus one earlier solve of this session


def test_a_same_site_referer_naming_a_page_the_session_never_fetched_is_unvisited() -> None:
    from scrapeshield.session.state import UNVISITED_REFERER

    visit = Visit(SessionSettings(fresh_for=10.0))
    minted = visit.request(page="/people/1", record=True, now=T0)[0].set_cookie
    assert minted is not None
    forged, level = visit.request(_ok(minted), page="/people/2", record=True, referer="same", referer_page="/",
                                  now=T0 + 30)
    assert UNVISITED_REFERER in level and not forged.standing
    clicked, level = visit.request(_ok(minted), page="/people/3", record=True, referer="same",
                                   referer_page="/people/1", now=T0 + 31)
    assert UNVISITED_REFERER not in level  # its own page (no assets loaded: no history either)
    assert clicked.set_cookie is None or not clicked.set_cookie.has_history


def test_a_record_with_no_referer_from_a_session_without_history_prices_the_stack_even_once_returned() -> None:
    from scrapeshield.session.state import MINT_STACK

    def stack_cold(ctx: SessionContext) -> float:
        return next((up.delta for up in ctx.counters if up.score_id == MINT_STACK), 0.0)

    visit = Visit(SessionSettings(fresh_for=10.0))
    minted = visit.request(page="/people/1", record=True, now=T0)[0].set_cookie
    assert minted is not None
    back = visit.request(_ok(minted), page="/people/2", record=True, now=T0 + 1)[0]
    assert stack_cold(back) == 1.0 and back.set_cookie is not None
    again = visit.request(_ok(back.set_cookie), page="/people/3", record=True, now=T0 + 20)[0]
    assert stack_cold(again) == 1.0 and COLD_RECORD not in again.signals  # a price, not a signal
    person = _person_with_a_history(visit, T0 + 10)
    bookmark = visit.request(_ok(person), page="/people/4", record=True, now=T0 + 40)[0]
    assert COLD_RECORD not in bookmark.signals and DEEP_RECORD in bookmark.signals and stack_cold(bookmark) == 0.0


def test_a_browser_s_full_and_resumed_tls_handshakes_are_one_session_stack() -> None:
    from scrapeshield.fingerprint.ja4 import session_ja4

    full, resumed = "t13i1515h2_8daaf6152771_02713d6af862", "t13i1516h2_8daaf6152771_b0da82dd1658"
    assert session_ja4(full) == session_ja4(resumed)  # a pre_shared_key extension more on resumption
    assert session_ja4("t13d1812h1_cf6ef5ef7a9d_9b5b8a0e6e3c") != session_ja4(full)  # another TLS library
    assert session_ja4("-") == "-" and session_ja4("odd") == "odd"


def test_a_session_with_standing_browsing_by_links_writes_and_reads_nothing() -> None:
    visit = Visit(SessionSettings(fresh_for=10.0))
    cookie = _person_with_a_history(visit)
    for record, asset in ((True, False), (False, False), (False, True)):
        ctx = visit.tracker.begin(_ok(cookie), NET, STACK, T0 + 60, is_document=not asset, is_record=record,
                                  referer="same", is_asset=asset)
        assert ctx.standing and not ctx.deep and ctx.set_cookie is None
        assert ctx.counters == () and not ctx.signals


@pytest.mark.parametrize("price", [True, False])
def test_a_record_a_session_with_standing_fetches_by_url_reads_the_network_s_mints_and_its_price(price: bool) -> None:
    settings = SessionSettings(fresh_for=10.0)
    visit = Visit(settings)
    cookie = _person_with_a_history(visit)
    hl, net, tag = settings.half_life, net_tag(NET), stack_tag(STACK)
    for _ in range(2):  # the second request reads the same counters as the first
        ctx = visit.tracker.begin(_ok(cookie), NET, STACK, T0 + 60, is_document=True, is_record=True, referer="",
                                  price=price)
        assert ctx.standing and ctx.deep and dict(ctx.signals) == {DEEP_RECORD: 1.0}
        if price:
            assert ctx.counters == (ScoreUpdate(MINT_STACK, tag, 0.0, hl), ScoreUpdate(MINT_NET, net, 0.0, hl),
                                    ScoreUpdate(SOLVE_STACK, tag, 0.0, hl), ScoreUpdate(SOLVE_NET, net, 0.0, hl),
                                    ScoreUpdate(SOLVE_SESSION, cookie.id, 0.0, SOLVED_HALF_LIFE))
            assert (ctx.price_at, ctx.net_at, ctx.solved_at) == (0, 1, 4) and not ctx.price_later
        else:
            assert ctx.counters == (ScoreUpdate(MINT_NET, net, 0.0, hl),)
            assert (ctx.price_at, ctx.net_at) == (-1, 0) and ctx.price_later
        visit.tracker.after(ctx, visit.store.apply_now(Batch(scores=ctx.counters), T0 + 60).scores)
        assert ctx.priced is price


def test_a_record_is_checked_for_a_clearance_only_when_the_request_carries_the_clearance_cookie() -> None:
    from scrapeshield.challenge.keys import KeyRing
    from scrapeshield.facts import RequestFacts
    from scrapeshield.session.stage import SessionStage

    asked: list[str | None] = []

    def clearance_token(facts: RequestFacts, session_id: str | None) -> str | None:
        asked.append(session_id)
        return "clearance-token"

    settings = SessionSettings(record_budget=20)
    stage = SessionStage(KeyRing((b"k" * 32,)), clearance_token)
    stage.clearance_cookie = "shield_clearance"
    record = Visit(settings).request(record=True)[0]

    def facts(cookie_header: str) -> RequestFacts:
        return RequestFacts(peer_ip="203.0.113.7", method="GET", host="shop.example", path="/user/42",
                            headers=(("Cookie", cookie_header),) if cookie_header else ())

    assert stage.budget_check(facts(""), record, settings) is None
    assert stage.budget_check(facts("theme=dark; other_clearance=1"), record, settings) is None
    assert asked == []
    spent = stage.budget_check(facts("theme=dark; shield_clearance=abc"), record, settings)
    assert spent is not None and asked == [record.id]


def test_one_cookie_header_sent_from_two_networks_is_read_with_each_request_s_own_network() -> None:
    from scrapeshield.challenge.keys import KeyRing
    from scrapeshield.context import DecisionContext
    from scrapeshield.facts import RequestFacts
    from scrapeshield.netaddr import ip_prefix
    from scrapeshield.session.stage import SessionStage

    stage = SessionStage(KeyRing((b"k" * 32,)))
    settings = SessionSettings(fresh_for=10.0)

    def facts(ip: str, cookie_header: str) -> RequestFacts:
        return RequestFacts(peer_ip=ip, method="GET", host="shop.example", path="/",
                            headers=(("User-Agent", "Mozilla/5.0 Firefox/128.0"), ("Cookie", cookie_header)))

    stack = DecisionContext(facts("203.0.113.7", "")).fingerprint.stack
    issued = SessionCookie("A" * 16, int(T0), net_tag("203.0.113.0/24"), stack_tag(stack), HISTORY)
    header = f"theme=dark; shield_session={stage.decoder.encode(issued)}"
    for ip in ("203.0.113.7", "198.51.100.7", "203.0.113.9", "198.51.100.7", "2001:db8::1"):
        c = DecisionContext(facts(ip, header))
        c.now = T0 + 60
        session = stage.begin(c, settings, 24, 64, price=False)
        prefix = ip_prefix(ip, 24, 64)
        assert session.cookie == issued and (session.prefix, session.net) == (prefix, net_tag(prefix))
        moved = prefix != "203.0.113.0/24"
        assert session.standing and (session.hops_at >= 0) is moved  # a network change is counted
        assert (session.set_cookie is not None and session.set_cookie.net == net_tag(prefix)) is moved


def test_a_cookie_header_sent_again_after_the_response_replaced_its_cookie_reads_the_same() -> None:
    from scrapeshield.challenge.keys import KeyRing
    from scrapeshield.context import DecisionContext
    from scrapeshield.facts import RequestFacts
    from scrapeshield.session.stage import SessionStage

    stage = SessionStage(KeyRing((b"k" * 32,)))
    settings = SessionSettings(fresh_for=10.0)
    headers = (("User-Agent", "Mozilla/5.0 Firefox/128.0"),)
    stack = DecisionContext(RequestFacts(peer_ip="203.0.113.7", headers=headers)).fingerprint.stack
    minted = mint("203.0.113.0/24", stack, T0)
    header = f"shield_session={stage.decoder.encode(minted)}"
    for _ in range(3):  # a client replaying the header it was first given
        c = DecisionContext(RequestFacts(peer_ip="203.0.113.7", path="/", headers=(*headers, ("Cookie", header))))
        c.now = T0 + 1
        session = stage.begin(c, settings, 24, 64, price=False)
        assert session.cookie == minted and session.set_cookie is not None and session.set_cookie.returned == 1

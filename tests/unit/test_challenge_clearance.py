"""The clearance cookie: who it clears, for what, for how long, and under which keys."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scrapeshield.challenge.binding import ClientBinding
from scrapeshield.challenge.clearance import cookie_values, issue_cookie, set_cookie_value, verify_cookie
from scrapeshield.challenge.keys import KeyRing
from scrapeshield.clock import FakeClock

OLD, NEW = "55" * 32, "66" * 32
KEYS = KeyRing.from_lines([OLD])
UA = "Mozilla/5.0 (X11; Linux x86_64) Chrome/156"
HOME = ClientBinding.of("127.0.0.1", UA)
HOME_V6 = ClientBinding.of("2001:db8:1:2::10", UA)
TTL = 3600


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cookie(clock) -> str:
    return issue_cookie(KEYS, HOME, "search", TTL, clock.now())


def reason(value: str | None, binding: ClientBinding = HOME, rule: str = "search", now: float | None = None,
           keys: KeyRing = KEYS) -> str:
    return verify_cookie(keys, value, binding, rule, FakeClock().now() if now is None else now).reason


def test_issued_cookie_clears_its_client_for_its_rule(cookie):
    assert reason(cookie) == "ok"


def test_cookie_clears_the_whole_slash_24(cookie):
    assert reason(cookie, ClientBinding.of("127.0.0.99", UA)) == "ok"


def test_no_cookie_is_missing():
    assert reason(None) == "missing"


def test_tampered_cookie_is_bad_signature(cookie):
    kind, kid, payload, mac = cookie.split(".")
    forged = f"{kind}.{kid}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{mac}"

    assert reason(forged) == "bad_signature"


def test_cookie_made_with_another_key_is_bad_signature(clock):
    forged = issue_cookie(KeyRing.from_lines(["77" * 32]), HOME, "search", TTL, clock.now())

    assert reason(forged) == "bad_signature"


@pytest.mark.parametrize("value", ["x", "c.a.b", "c.a.b.c.d", "p" + "." * 3, "é.a.b.c"])
def test_garbage_cookie_is_malformed(value):
    assert reason(value) == "malformed"


def test_challenge_token_is_not_a_cookie(clock):
    from scrapeshield.challenge.pow import issue

    token = issue(KEYS, HOME, "search", 8, "/", clock.now()).token

    assert reason(token) == "malformed"


def test_expired_cookie_is_refused(cookie, clock):
    clock.advance(TTL)

    assert reason(cookie, now=clock.now()) == "expired"


def test_cookie_from_another_network_is_wrong_client(cookie):
    assert reason(cookie, ClientBinding.of("127.0.1.1", UA)) == "wrong_client"


def test_cookie_with_another_user_agent_is_wrong_ua(cookie):
    assert reason(cookie, ClientBinding.of("127.0.0.1", "curl/8.5")) == "wrong_ua"


def test_cookie_for_another_rule_is_wrong_rule(cookie):
    assert reason(cookie, rule="checkout") == "wrong_rule"


def test_cookie_signed_with_old_key_is_accepted_while_old_key_is_listed_second(cookie):
    assert reason(cookie, keys=KeyRing.from_lines([NEW, OLD])) == "ok"


def test_cookie_signed_with_old_key_is_refused_once_old_key_is_removed(cookie):
    assert reason(cookie, keys=KeyRing.from_lines([NEW])) == "bad_signature"


# -- merging: no re-challenge loops ------------------------------------------------------------------
def test_second_rule_solved_by_the_same_client_keeps_the_first(cookie, clock):
    both = issue_cookie(KEYS, HOME, "checkout", TTL, clock.now(), carry=cookie)

    assert reason(both, rule="search") == reason(both, rule="checkout") == "ok"


def test_same_rule_over_the_other_address_family_clears_both_families(cookie, clock):
    dual = issue_cookie(KEYS, HOME_V6, "search", TTL, clock.now(), carry=cookie)

    assert reason(dual, HOME) == reason(dual, HOME_V6) == "ok"


def test_clearance_from_another_network_of_the_same_family_is_not_carried(cookie, clock):
    elsewhere = ClientBinding.of("198.51.100.7", UA)

    moved = issue_cookie(KEYS, elsewhere, "checkout", TTL, clock.now(), carry=cookie)

    assert reason(moved, elsewhere, rule="search") == "wrong_rule"
    assert reason(moved, HOME, rule="checkout") == "wrong_client"


def test_clearance_of_another_user_agent_is_not_carried(cookie, clock):
    other = ClientBinding.of("127.0.0.1", "curl/8.5")

    fresh = issue_cookie(KEYS, other, "checkout", TTL, clock.now(), carry=cookie)

    assert reason(fresh, other, rule="search") == "wrong_rule"


def test_expired_or_forged_carry_is_ignored(cookie, clock):
    clock.advance(TTL + 1)

    fresh = issue_cookie(KEYS, HOME, "checkout", TTL, clock.now(), carry=cookie)
    forged = issue_cookie(KEYS, HOME, "checkout", TTL, clock.now(), carry=cookie[:-3] + "xyz")

    assert reason(fresh, rule="search", now=clock.now()) == "wrong_rule"
    assert reason(forged, rule="search", now=clock.now()) == "wrong_rule"


# -- HTTP -------------------------------------------------------------------------------------------
def test_set_cookie_is_httponly_lax_site_wide_with_max_age():
    assert set_cookie_value("shield_clearance", "v", 3600, secure=False) == (
        "shield_clearance=v; Max-Age=3600; Path=/; HttpOnly; SameSite=Lax")


def test_set_cookie_is_secure_over_tls():
    assert set_cookie_value("shield_clearance", "v", 3600, secure=True).endswith("; Secure")


def test_every_value_of_the_cookie_is_found_in_a_cookie_header():
    header = 'a=1; shield_clearance=one; shield_clearance_x=no; shield_clearance="two"'

    assert cookie_values(header) == ["one", "two"]


# -- a cookie's reading is remembered per value; expiry, client and rule are judged every time ------
def test_a_remembered_clearance_still_expires_and_binds_on_every_request(cookie, clock):
    assert reason(cookie, now=clock.now()) == "ok"  # read, then remembered
    assert reason(cookie, now=clock.now() + TTL - 1) == "ok"
    assert reason(cookie, now=clock.now() + TTL) == "expired"
    assert reason(cookie, ClientBinding.of("127.0.1.1", UA)) == "wrong_client"
    assert reason(cookie, rule="checkout") == "wrong_rule"
    assert reason(cookie, keys=KeyRing.from_lines([NEW])) == "bad_signature"  # a memo answers for one key ring


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.sampled_from(["c." + "a" * 5000, "c.x.y.z"])), st.integers(0, 300))
def test_a_remembered_clearance_reading_is_the_reading_afresh(text: str, cut: int) -> None:
    from scrapeshield.challenge import clearance

    genuine = issue_cookie(KEYS, HOME, "search", TTL, 0.0)
    for value in (text, genuine[:cut] + text[:3] + genuine[cut + 3:]):
        fresh = clearance._read_sealed.__wrapped__(KEYS, value)  # type: ignore[attr-defined]
        for _ in range(2):  # read, then remembered
            assert clearance._read(KEYS, value) == fresh
    assert clearance._read_sealed.cache_info().currsize <= 4096

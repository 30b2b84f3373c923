"""The session cookie codec: mint, encode, strict decoding, bounded reading of hostile headers."""
from __future__ import annotations

import base64
import json
import secrets
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scrapeshield.challenge.keys import KeyRing
from scrapeshield.challenge.tokens import seal
from scrapeshield.session import cookie
from scrapeshield.session.cookie import SessionCookie

KEYS = KeyRing((secrets.token_bytes(32),))
OTHER_KEYS = KeyRing((secrets.token_bytes(32),))
STACK = "t13d1516h2_8daaf6152771_e5627efa2ab1|browser"
NOW = 1_800_000_000.0
TTL = 3600.0


def _header(value: str) -> str:
    return f"{cookie.COOKIE_NAME}={value}"


def test_a_minted_cookie_reads_back_as_the_same_session() -> None:
    minted = cookie.mint("203.0.113.0/24", STACK, NOW)
    presented = cookie.read(KEYS, _header(minted.encode(KEYS)), STACK, NOW + 10, TTL)
    assert presented.cookie == minted and presented.reason == "ok"
    assert len(minted.id) == 16 and minted.issued == int(NOW) and not minted.returned


def test_ids_are_random() -> None:
    assert len({cookie.mint("203.0.113.0/24", STACK, NOW).id for _ in range(1000)}) == 1000


def test_a_cookie_signed_by_a_key_this_replica_lacks_is_no_session() -> None:
    value = cookie.mint("203.0.113.0/24", STACK, NOW).encode(OTHER_KEYS)
    assert cookie.read(KEYS, _header(value), STACK, NOW, TTL).cookie is None


def test_rotation_keeps_sessions_signed_by_the_previous_key() -> None:
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    value = cookie.mint("203.0.113.0/24", STACK, NOW).encode(KeyRing((old,)))
    assert cookie.read(KeyRing((new, old)), _header(value), STACK, NOW, TTL).cookie is not None


def test_an_expired_cookie_is_no_session() -> None:
    value = cookie.mint("203.0.113.0/24", STACK, NOW).encode(KEYS)
    presented = cookie.read(KEYS, _header(value), STACK, NOW + TTL, TTL)
    assert presented.cookie is None and presented.reason == "expired"


def test_a_cookie_issued_far_in_the_future_is_no_session() -> None:
    value = cookie.mint("203.0.113.0/24", STACK, NOW + 3600).encode(KEYS)
    assert cookie.read(KEYS, _header(value), STACK, NOW, 7200).cookie is None


def test_a_cookie_of_another_stack_is_no_session_but_is_reported() -> None:
    minted = cookie.mint("203.0.113.0/24", "-|library", NOW)
    presented = cookie.read(KEYS, _header(minted.encode(KEYS)), STACK, NOW, TTL)
    assert presented.cookie is None and presented.reason == "other_stack" and presented.other_stack == minted


def test_a_non_canonical_payload_with_a_valid_signature_is_refused() -> None:
    minted = cookie.mint("203.0.113.0/24", STACK, NOW)
    fields = [minted.id, minted.issued, minted.net, minted.stack, 0]
    # the same values, spaced JSON: signed, but not the one encoding a session has
    spaced = base64.urlsafe_b64encode(json.dumps(fields).encode()).rstrip(b"=").decode()
    head = f"s.{KEYS.signing_id}.{spaced}"
    _, mac = KEYS.sign(head.encode())
    value = f"{head}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    assert cookie.decode(KEYS, value) == "malformed"


@pytest.mark.parametrize("fields", [
    ["short", int(NOW), "4AAAAAAAAAAAA", "AAAAAAAAAAAA", 0],            # id
    ["A" * 16, NOW, "4AAAAAAAAAAAA", "AAAAAAAAAAAA", 0],                # float time
    ["A" * 16, True, "4AAAAAAAAAAAA", "AAAAAAAAAAAA", 0],               # bool time
    ["A" * 16, int(NOW), "5AAAAAAAAAAAA", "AAAAAAAAAAAA", 0],           # family
    ["A" * 16, int(NOW), "4AAAAAAAAAAAA", "AAAAAAAAAAAA", 3],           # returned: 0, 1 or 2 (HISTORY)
    ["A" * 16, int(NOW), "4AAAAAAAAAAAA", "AAAAAAAAAAAA"],              # arity
    ["A" * 16, int(NOW), "4AAAAAAAAAAAA", "AAAAAAAAAAAA", 0, "extra"],
    ["A" * 15 + "=", int(NOW), "4AAAAAAAAAAAA", "AAAAAAAAAAAA", 0],     # alphabet: URL-safe base64 only
    ["\u00e9" * 16, int(NOW), "4AAAAAAAAAAAA", "AAAAAAAAAAAA", 0],      # letters, but not ASCII ones
    ["A" * 16, int(NOW), "4AAAAAAAAAAA\uff11", "AAAAAAAAAAAA", 0],     # a digit, but not an ASCII one
    ["A" * 16, int(NOW), "4AAAAAAAAAAAA", "AAAAAAAAAA.A", 0],
    ["A" * 16, int(NOW), "4AAAAAAAAAAAA", "AAAAAAAAAAAAA", 0],           # a tag's length
])
def test_signed_fields_of_the_wrong_shape_are_refused(fields: list[object]) -> None:
    assert cookie.decode(KEYS, seal(KEYS, "s", fields)) == "malformed"


def test_another_kind_of_token_is_not_a_session() -> None:
    assert cookie.decode(KEYS, seal(KEYS, "c", ["A" * 16, int(NOW), "4AAAAAAAAAAAA", "AAAAAAAAAAAA", 0])) == "malformed"


def test_thousands_of_cookies_and_a_100kb_header_are_read_within_bounds() -> None:
    genuine = cookie.mint("203.0.113.0/24", STACK, NOW).encode(KEYS)
    many = "; ".join(f"c{i}=v{i}" for i in range(5000)) + "; " + _header(genuine)
    huge = "x=" + "a" * 100_000 + "; " + _header(genuine)
    decoys = "; ".join(_header("s.x.y.z") for _ in range(5000)) + "; " + _header(genuine)
    t0 = time.perf_counter()
    results = [cookie.read(KEYS, h, STACK, NOW, TTL) for h in (many, huge, decoys)]
    assert time.perf_counter() - t0 < 1.0  # generous: bounded work, not a benchmark
    # past the scanned prefix, or past the first few same-name values, nothing more is looked at
    assert all(r.cookie is None for r in results)
    assert len(cookie.cookie_values(decoys)) == cookie.MAX_COOKIE_VALUES


def test_the_set_cookie_header_is_http_only_lax_and_secure_only_over_tls() -> None:
    plain = cookie.set_cookie_header("v", 60, secure=False)
    tls = cookie.set_cookie_header("v", 60, secure=True)
    assert plain == "shield_session=v; Max-Age=60; Path=/; HttpOnly; SameSite=Lax"
    assert tls == plain + "; Secure"


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_any_text_decodes_to_a_reason_or_a_session_never_an_exception(value: str) -> None:
    result = cookie.decode(KEYS, value)
    assert isinstance(result, (str, SessionCookie))
    assert cookie.read(KEYS, _header(value), STACK, NOW, TTL).cookie is None


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64), st.integers(0, 200))
def test_any_bit_flip_of_a_genuine_cookie_is_refused(noise: bytes, position: int) -> None:
    genuine = cookie.mint("203.0.113.0/24", STACK, NOW).encode(KEYS)
    i = position % len(genuine)
    tampered = genuine[:i] + noise.decode("latin-1") + genuine[i + 1:]
    if tampered == genuine:
        return
    assert cookie.read(KEYS, _header(tampered), STACK, NOW, TTL).cookie is None


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12),
                          st.text(max_size=40)), max_size=40))
def test_the_session_is_found_among_any_other_cookies(others: list[tuple[str, str]]) -> None:
    minted = cookie.mint("203.0.113.0/24", STACK, NOW)
    pairs = [f"{k}={v.replace(';', '')}" for k, v in others if k != cookie.COOKIE_NAME]
    header = "; ".join([*pairs[:10], _header(minted.encode(KEYS)), *pairs[10:]])
    assert cookie.read(KEYS, header, STACK, NOW, TTL).cookie == minted


URL_SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


@settings(max_examples=300, deadline=None)
@given(st.text(URL_SAFE, min_size=16, max_size=16), st.integers(0, (1 << 40) - 1), st.sampled_from("46"),
       st.text(URL_SAFE, min_size=12, max_size=12), st.text(URL_SAFE, min_size=12, max_size=12),
       st.sampled_from([0, 1, cookie.HISTORY]))
def test_a_cookie_is_sealed_exactly_as_the_json_token_format_seals_its_fields(
        sid: str, issued: int, family: str, net: str, stack: str, returned: int) -> None:
    """The payload written directly is the one `seal` writes through the JSON encoder, and it
    decodes back to the same cookie (remembered as issued, too)."""
    session = SessionCookie(sid, issued, family + net, stack, returned)
    assert session.encode(KEYS) == seal(KEYS, cookie.KIND, [sid, issued, family + net, stack, returned])
    decoder = cookie.Decoder(KEYS)
    value = decoder.encode(session)
    assert cookie.decode(KEYS, value) == session == decoder(value)


@pytest.mark.parametrize("session", [
    SessionCookie("A" * 16, 1, "4" + "b" * 12, "c\"é" * 4, 1),  # text JSON must escape
    SessionCookie("A" * 15, -1, "x", "c" * 12, 3),
])
def test_a_cookie_decode_would_refuse_is_sealed_through_the_json_encoder_and_never_remembered(
        session: SessionCookie) -> None:
    decoder = cookie.Decoder(KEYS)
    value = decoder.encode(session)
    assert value == seal(KEYS, cookie.KIND, session._fields()) and len(decoder) == 0


def test_a_session_cookie_is_a_value_equal_by_its_fields() -> None:
    a = SessionCookie("A" * 16, 7, "4" + "b" * 12, "c" * 12, 1)
    same = SessionCookie("A" * 16, 7, "4" + "b" * 12, "c" * 12, 1)
    assert a == same and hash(a) == hash(same) and len({a, same}) == 1
    for other in (SessionCookie("B" * 16, 7, a.net, a.stack, 1), SessionCookie(a.id, 8, a.net, a.stack, 1),
                  SessionCookie(a.id, 7, "6" + "b" * 12, a.stack, 1), SessionCookie(a.id, 7, a.net, "d" * 12, 1),
                  SessionCookie(a.id, 7, a.net, a.stack, 2)):
        assert a != other
    assert a != (a.id, a.issued, a.net, a.stack, a.returned)
    assert repr(a) == f"SessionCookie(id='{'A' * 16}', issued=7, net='4{'b' * 12}', stack='{'c' * 12}', returned=1)"


def test_a_new_session_s_first_cookie_is_remembered_only_once_it_comes_back() -> None:
    decoder = cookie.Decoder(KEYS)
    minted = cookie.mint("203.0.113.0/24", "stack", NOW)
    value = decoder.encode(minted)
    assert len(decoder) == 0  # a client keeping no cookies gets one per request: none is kept
    assert decoder(value) == minted and len(decoder) == 1  # it came back: decoded once, then remembered
    returned = SessionCookie(minted.id, minted.issued, minted.net, minted.stack, 1)
    again = decoder.encode(returned)
    assert len(decoder) == 2 and decoder(again) == returned

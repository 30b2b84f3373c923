"""Proof-of-work tokens: issue, solve (here, in Python), verify once."""
from __future__ import annotations

import asyncio
import hashlib
from itertools import count

import pytest

from scrapeshield.challenge.binding import ClientBinding
from scrapeshield.challenge.keys import KeyRing
from scrapeshield.challenge.pow import MAX_DIFFICULTY, Challenge, issue, leading_zero_bits, proof_ok, verify
from scrapeshield.clock import FakeClock
from scrapeshield.store.memory import MemoryStore

KEYS = KeyRing.from_lines(["11" * 32])
UA = "Mozilla/5.0 (X11; Linux x86_64) Chrome/156"
HOME = ClientBinding.of("127.0.0.1", UA)
BITS = 8


def solve(challenge: Challenge) -> str:
    """Brute force exactly as the page does: the first nonce whose SHA-256 has enough zero bits."""
    return next(str(n) for n in count() if proof_ok(challenge.seed, str(n).encode(), challenge.difficulty))


def wrong_nonce(challenge: Challenge) -> str:
    return next(str(n) for n in count() if not proof_ok(challenge.seed, str(n).encode(), challenge.difficulty))


async def check(token: str, nonce: str, binding: ClientBinding = HOME, now: float | None = None,
                store: MemoryStore | None = None, keys: KeyRing = KEYS):
    now = FakeClock().now() if now is None else now
    return await verify(keys, token, nonce, binding, now, (store or MemoryStore()).spend_once)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def challenge(clock) -> Challenge:
    return issue(KEYS, HOME, "search", BITS, "/search?q=shoes", clock.now())


# -- the proof ------------------------------------------------------------------------------------
def test_proof_is_leading_zero_bits_of_sha256_of_seed_then_nonce():
    seed = bytes(range(16))
    for n in range(2000):
        digest = hashlib.sha256(seed + str(n).encode()).digest()
        for bits in (0, 1, 4, 8, 9):
            assert proof_ok(seed, str(n).encode(), bits) == (leading_zero_bits(digest) >= bits)


def test_leading_zero_bits_counts_from_the_most_significant_bit_of_the_first_byte():
    assert leading_zero_bits(b"\x00\x00\x80" + b"\xff" * 29) == 16
    assert leading_zero_bits(b"\x00\x01" + b"\x00" * 30) == 15
    assert leading_zero_bits(b"\x80" + b"\x00" * 31) == 0


def test_difficulty_outside_0_to_max_is_refused_at_issue():
    with pytest.raises(ValueError):
        issue(KEYS, HOME, "r", MAX_DIFFICULTY + 1, "/", 0.0)


def test_each_challenge_gets_fresh_randomness(clock):
    a = issue(KEYS, HOME, "search", BITS, "/", clock.now())
    b = issue(KEYS, HOME, "search", BITS, "/", clock.now())

    assert a.seed != b.seed and a.token != b.token


# -- verification ---------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_solved_challenge_verifies_with_its_rule_and_return_path(challenge, clock):
    result = await check(challenge.token, solve(challenge), now=clock.now() + 3)

    assert (result.ok, result.reason, result.rule, result.return_to) == (True, "ok", "search", "/search?q=shoes")


@pytest.mark.asyncio
async def test_wrong_nonce_is_bad_proof(challenge):
    assert (await check(challenge.token, wrong_nonce(challenge))).reason == "bad_proof"


@pytest.mark.asyncio
@pytest.mark.parametrize("nonce", ["", "12 34", "1" * 33, "abc/", None, "١٢٣"])
async def test_nonce_outside_its_alphabet_is_bad_proof(challenge, nonce):
    assert (await check(challenge.token, nonce)).reason == "bad_proof"


@pytest.mark.asyncio
async def test_tampered_payload_is_bad_signature(challenge):
    kind, kid, payload, mac = challenge.token.split(".")
    forged = ".".join([kind, kid, payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1], mac])

    assert (await check(forged, solve(challenge))).reason == "bad_signature"


@pytest.mark.asyncio
async def test_lowered_difficulty_cannot_be_forged_without_the_key(challenge):
    easy = issue(KeyRing.from_lines(["22" * 32]), HOME, "search", 0, "/", FakeClock().now())

    assert (await check(easy.token, "0")).reason == "bad_signature"


@pytest.mark.asyncio
@pytest.mark.parametrize("token", ["", "x", "p.a.b", "p.a.b.c.d", "p.kid.payload.!!!", "c" * 5000, 17])
async def test_garbage_token_is_malformed(token):
    assert (await check(token, "0")).reason == "malformed"


@pytest.mark.asyncio
async def test_expired_challenge_is_refused(challenge, clock):
    clock.advance(301)

    assert (await check(challenge.token, solve(challenge), now=clock.now())).reason == "expired"


@pytest.mark.asyncio
async def test_other_network_is_wrong_client(challenge):
    elsewhere = ClientBinding.of("127.0.1.1", UA)

    assert (await check(challenge.token, solve(challenge), elsewhere)).reason == "wrong_client"


@pytest.mark.asyncio
async def test_other_address_in_the_same_slash_24_passes(challenge):
    neighbour = ClientBinding.of("127.0.0.200", UA)

    assert (await check(challenge.token, solve(challenge), neighbour)).ok


@pytest.mark.asyncio
async def test_ipv6_binding_is_the_slash_64(clock):
    c = issue(KEYS, ClientBinding.of("2001:db8:1:2::10", UA), "r", BITS, "/", clock.now())

    assert (await check(c.token, solve(c), ClientBinding.of("2001:db8:1:2:ffff::1", UA))).ok
    assert (await check(c.token, solve(c), ClientBinding.of("2001:db8:1:3::10", UA))).reason == "wrong_client"


@pytest.mark.asyncio
async def test_other_user_agent_is_wrong_ua(challenge):
    other = ClientBinding.of("127.0.0.1", "python-requests/2.32")

    assert (await check(challenge.token, solve(challenge), other)).reason == "wrong_ua"


@pytest.mark.asyncio
async def test_solution_accepted_once_is_refused_as_replayed(challenge):
    store, nonce = MemoryStore(), solve(challenge)

    first = await check(challenge.token, nonce, store=store)
    second = await check(challenge.token, nonce, store=store)

    assert (first.reason, second.reason) == ("ok", "replayed")


@pytest.mark.asyncio
async def test_twenty_concurrent_submissions_of_one_solution_clear_exactly_one(challenge):
    store, nonce = MemoryStore(), solve(challenge)

    results = await asyncio.gather(*(check(challenge.token, nonce, store=store) for _ in range(20)))

    assert sorted(r.reason for r in results) == ["ok"] + ["replayed"] * 19


@pytest.mark.asyncio
async def test_failed_proof_does_not_use_up_the_challenge(challenge):
    store = MemoryStore()
    await check(challenge.token, wrong_nonce(challenge), store=store)

    assert (await check(challenge.token, solve(challenge), store=store)).ok


@pytest.mark.asyncio
async def test_challenge_signed_with_a_rotated_out_key_still_verifies_while_listed(clock):
    old = KeyRing.from_lines(["33" * 32])
    c = issue(old, HOME, "r", BITS, "/", clock.now())

    assert (await check(c.token, solve(c), keys=KeyRing.from_lines(["44" * 32, "33" * 32]))).ok
    assert (await check(c.token, solve(c), keys=KeyRing.from_lines(["44" * 32]))).reason == "bad_signature"


def test_unsafe_return_path_is_replaced_at_issue(clock):
    assert issue(KEYS, HOME, "r", BITS, "//evil.com/x", clock.now()).return_to == "/"

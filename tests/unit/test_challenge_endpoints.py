"""ChallengeService: the challenge response, the /.shield/ endpoints and clearance checks."""
from __future__ import annotations

from itertools import count
from urllib.parse import urlencode

import pytest

from scrapeshield.challenge.binding import ClientBinding
from scrapeshield.challenge.endpoints import ChallengeConfig, ChallengeService, ShieldResponse
from scrapeshield.challenge.keys import KeyRing
from scrapeshield.challenge.pow import issue, proof_ok
from scrapeshield.challenge.wait import issue_wait
from scrapeshield.clock import FakeClock
from scrapeshield.store.memory import MemoryStore

KEYS = KeyRing.from_lines(["99" * 32])
UA = "Mozilla/5.0 (X11; Linux x86_64) Chrome/156"
HOME = ClientBinding.of("127.0.0.1", UA)
BITS = 8


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service() -> ChallengeService:
    return ChallengeService(KEYS)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def header(resp: ShieldResponse, name: str) -> str | None:
    return next((v for k, v in resp.headers if k.lower() == name.lower()), None)


def solution_form(now: float, return_to: str = "/shop?page=2", rule: str = "shop", nonce: str | None = None) -> bytes:
    c = issue(KEYS, HOME, rule, BITS, return_to, now)
    if nonce is None:
        nonce = next(str(n) for n in count() if proof_ok(c.seed, str(n).encode(), BITS))
    return urlencode({"token": c.token, "nonce": nonce, "engine": "js/workers2", "ms": "12"}).encode()


async def post(service, store, body: bytes, now: float, binding=HOME, tls=False, cookie=None) -> ShieldResponse:
    return await service.handle("POST", "/.shield/verify", "", body, binding, tls, now, store.spend_once, cookie)


def cookie_of(resp: ShieldResponse) -> str:
    set_cookie = header(resp, "Set-Cookie")
    assert set_cookie is not None
    return set_cookie.split(";", 1)[0]


# -- the challenge response -------------------------------------------------------------------------
def test_challenge_is_a_403_html_page_marked_as_a_challenge(service, clock):
    resp = service.challenge_response("shop", BITS, "/shop", HOME, "text/html,*/*;q=0.8", False, clock.now())

    assert resp.status == 403
    assert header(resp, "Shield-Action") == "challenge"
    assert header(resp, "Content-Type") == "text/html; charset=utf-8"
    assert header(resp, "Content-Length") == str(len(resp.body))
    assert b"shield-form" in resp.body


def test_challenge_status_is_configurable(clock):
    service = ChallengeService(KEYS, ChallengeConfig(status=429))

    assert service.challenge_response("shop", BITS, "/", HOME, None, False, clock.now()).status == 429


def test_client_that_does_not_accept_html_gets_a_short_text_answer(service, clock):
    resp = service.challenge_response("api", BITS, "/api/items", HOME, "application/json", False, clock.now())

    assert (resp.status, header(resp, "Content-Type")) == (403, "text/plain; charset=utf-8")
    assert b"<" not in resp.body


def test_issued_challenges_are_counted(service, clock):
    service.challenge_response("shop", BITS, "/", HOME, "text/html", True, clock.now())

    assert service.counters["issued.pow"] == service.counters["issued.wait"] == 1


# -- verify -----------------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_valid_solution_redirects_303_to_the_return_path_with_the_cookie(service, store, clock):
    resp = await post(service, store, solution_form(clock.now()), clock.now() + 1)

    assert resp.status == 303
    assert header(resp, "Location") == "/shop?page=2"
    assert header(resp, "Set-Cookie").endswith("; Max-Age=3600; Path=/; HttpOnly; SameSite=Lax")
    assert header(resp, "Cache-Control") == "no-store"
    assert service.counters["pow.ok"] == 1


@pytest.mark.asyncio
async def test_cookie_is_secure_when_the_request_came_over_tls(service, store, clock):
    resp = await post(service, store, solution_form(clock.now()), clock.now(), tls=True)

    assert header(resp, "Set-Cookie").endswith("; Secure")


@pytest.mark.asyncio
async def test_cookie_from_verify_clears_the_rule_it_was_solved_for(service, store, clock):
    resp = await post(service, store, solution_form(clock.now()), clock.now())

    assert service.check_clearance(cookie_of(resp), HOME, "shop", clock.now())
    assert not service.check_clearance(cookie_of(resp), HOME, "login", clock.now())
    assert (service.counters["cookie.ok"], service.counters["cookie.wrong_rule"]) == (1, 1)


@pytest.mark.asyncio
async def test_solving_a_second_rule_keeps_the_first_clearance(service, store, clock):
    first = cookie_of(await post(service, store, solution_form(clock.now(), rule="shop"), clock.now()))
    second = cookie_of(await post(service, store, solution_form(clock.now(), rule="login"), clock.now(), cookie=first))

    assert service.check_clearance(second, HOME, "shop", clock.now())
    assert service.check_clearance(second, HOME, "login", clock.now())


@pytest.mark.asyncio
async def test_wrong_proof_is_refused_without_a_cookie_or_redirect(service, store, clock):
    resp = await post(service, store, solution_form(clock.now(), nonce="zzz"), clock.now())

    assert (resp.status, header(resp, "Set-Cookie"), header(resp, "Location")) == (403, None, None)
    assert service.counters["pow.bad_proof"] == 1


@pytest.mark.asyncio
async def test_replayed_solution_goes_back_to_the_page_without_a_cookie(service, store, clock):
    body = solution_form(clock.now())
    await post(service, store, body, clock.now())

    resp = await post(service, store, body, clock.now())

    assert (resp.status, header(resp, "Location"), header(resp, "Set-Cookie")) == (303, "/shop?page=2", None)
    assert service.counters["pow.replayed"] == 1


@pytest.mark.asyncio
async def test_expired_solution_goes_back_to_the_page_for_a_fresh_challenge(service, store, clock):
    body = solution_form(clock.now())
    clock.advance(600)

    resp = await post(service, store, body, clock.now())

    assert (resp.status, header(resp, "Set-Cookie")) == (303, None)
    assert service.counters["pow.expired"] == 1


@pytest.mark.asyncio
async def test_solution_from_another_network_earns_no_cookie_only_a_fresh_challenge(service, store, clock):
    resp = await post(service, store, solution_form(clock.now()), clock.now(), ClientBinding.of("10.9.8.7", UA))

    assert (resp.status, header(resp, "Location"), header(resp, "Set-Cookie")) == (303, "/shop?page=2", None)
    assert service.counters["pow.wrong_client"] == 1


@pytest.mark.asyncio
async def test_solution_sent_with_another_user_agent_is_refused(service, store, clock):
    resp = await post(service, store, solution_form(clock.now()), clock.now(), ClientBinding.of("127.0.0.1", "curl"))

    assert (resp.status, header(resp, "Set-Cookie")) == (403, None)
    assert service.counters["pow.wrong_ua"] == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("body", [b"", b"token=&nonce=", b"\xff\xfe", b"token=" + b"a" * 10_000])
async def test_broken_forms_are_malformed(service, store, clock, body):
    resp = await post(service, store, body, clock.now())

    assert resp.status == 403
    assert service.counters["pow.malformed"] == 1


# -- wait (no JavaScript) -----------------------------------------------------------------------------
async def get_wait(service, store, token: str, now: float) -> ShieldResponse:
    return await service.handle("GET", "/.shield/verify", urlencode({"wait": token}), b"", HOME, False, now,
                                store.spend_once)


@pytest.mark.asyncio
async def test_wait_token_clears_after_the_wait(service, store, clock):
    wait = issue_wait(KEYS, HOME, "docs", 5, "/docs", clock.now())
    clock.advance(5)

    resp = await get_wait(service, store, wait.token, clock.now())

    assert (resp.status, header(resp, "Location")) == (303, "/docs")
    assert service.check_clearance(cookie_of(resp), HOME, "docs", clock.now())


@pytest.mark.asyncio
async def test_wait_token_used_early_gets_the_wait_page_again_for_the_time_left(service, store, clock):
    wait = issue_wait(KEYS, HOME, "docs", 5, "/docs", clock.now())
    clock.advance(2)

    resp = await get_wait(service, store, wait.token, clock.now())

    assert resp.status == 403 and header(resp, "Set-Cookie") is None
    assert f'content="3;url=/.shield/verify?wait={wait.token}"'.encode() in resp.body
    assert service.counters["wait.too_early"] == 1


@pytest.mark.asyncio
async def test_wait_token_is_single_use(service, store, clock):
    wait = issue_wait(KEYS, HOME, "docs", 0, "/docs", clock.now())
    await get_wait(service, store, wait.token, clock.now())

    resp = await get_wait(service, store, wait.token, clock.now())

    assert header(resp, "Set-Cookie") is None
    assert service.counters["wait.replayed"] == 1


@pytest.mark.asyncio
async def test_proof_of_work_token_is_not_a_wait_token(service, store, clock):
    c = issue(KEYS, HOME, "shop", BITS, "/", clock.now())

    resp = await get_wait(service, store, c.token, clock.now())

    assert resp.status == 403
    assert service.counters["wait.malformed"] == 1


# -- the rest of the prefix -------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_other_paths_under_the_prefix_are_404(service, store, clock):
    resp = await service.handle("GET", "/.shield/admin", "", b"", HOME, False, clock.now(), store.spend_once)

    assert resp.status == 404
    assert service.counters["endpoint.not_found"] == 1


@pytest.mark.asyncio
async def test_other_methods_on_verify_are_405(service, store, clock):
    resp = await service.handle("PUT", "/.shield/verify", "", b"", HOME, False, clock.now(), store.spend_once)

    assert (resp.status, header(resp, "Allow")) == (405, "GET, POST")


def test_reserved_prefix_covers_the_folder_and_its_bare_name(service):
    assert service.is_reserved("/.shield/verify") and service.is_reserved("/.shield")
    assert not service.is_reserved("/.shieldx") and not service.is_reserved("/shop")


def test_config_refuses_a_cookie_name_that_would_break_the_header():
    with pytest.raises(ValueError):
        ChallengeConfig(cookie_name="a=b; Domain=evil")


@pytest.mark.asyncio
async def test_store_outage_during_verify_is_a_503_to_retry_not_a_clearance(service, clock):
    from scrapeshield.store.base import StoreError

    async def store_down(token_id: str, expires: float, now: float) -> bool:
        raise StoreError("redis unreachable")

    resp = await service.handle("POST", "/.shield/verify", "", solution_form(clock.now()), HOME, False,
                                clock.now(), store_down)

    assert (resp.status, header(resp, "Retry-After"), header(resp, "Set-Cookie")) == (503, "5", None)
    assert service.counters["pow.store_unavailable"] == 1

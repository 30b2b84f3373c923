"""Sessions end to end: a real `scrapeshield run`, real httpx/curl_cffi clients."""
from __future__ import annotations

import httpx
from challenge_helpers import parse_challenge, solve
from session_helpers import CHROME_JA4, FRONT_PROXY

from harness import ShieldProcess, bind_client

CHROME_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/131.0.0.0 Safari/537.36")


def _session_set_cookie(r: httpx.Response) -> str | None:
    return next((v for v in r.headers.get_list("set-cookie") if v.startswith("shield_session=")), None)


def _solve_and_submit(client: httpx.Client, page: str) -> httpx.Response:
    token, seed, bits = parse_challenge(page)
    r = client.post("/.shield/verify", data={"token": token, "nonce": solve(seed, bits)})
    assert r.status_code == 303, (r.status_code, r.text[:200])
    return r


def test_the_first_response_sets_a_session_cookie_http_only_lax_and_not_secure_over_http(shield: ShieldProcess) -> None:
    with bind_client("127.0.1.1", base_url=shield.proxy_url) as client:
        first, second, third = (client.get(f"/products/{n}") for n in (1, 2, 3))
    set_cookie = _session_set_cookie(first)
    assert first.status_code == 200 and set_cookie is not None
    attrs = [a.strip() for a in set_cookie.split(";")]
    assert "HttpOnly" in attrs and "SameSite=Lax" in attrs and "Path=/" in attrs and "Secure" not in attrs
    # the client came back with it: the second response marks it returned (same id), then nothing is set
    assert _value(second) is not None and _value(second) != _value(first)
    assert third.status_code == 200 and _session_set_cookie(third) is None


def _value(r: httpx.Response) -> str | None:
    header = _session_set_cookie(r)
    return header.split(";", 1)[0].partition("=")[2] if header else None


def test_over_tls_the_session_cookie_is_secure(shield: ShieldProcess) -> None:
    with httpx.Client(base_url=shield.https_url, verify=False, trust_env=False, timeout=10) as client:
        r = client.get("/products/1")
    set_cookie = _session_set_cookie(r)
    assert set_cookie is not None and "Secure" in [a.strip() for a in set_cookie.split(";")]


def test_the_session_key_part_counts_each_session_apart_and_falls_back_to_the_address(shield: ShieldProcess) -> None:
    # given two browsers with their own cookie jars behind one address
    with bind_client("127.0.2.1", base_url=shield.proxy_url) as a, \
            bind_client("127.0.2.1", base_url=shield.proxy_url) as b:
        # when the first, holding its session, spends its 3/m on /
        a.get("/products/1")
        statuses_a = [a.get("/").status_code for _ in range(4)]
        # then the second still has its own budget, once it holds its session
        b.get("/products/1")
        statuses_b = [b.get("/").status_code for _ in range(3)]
    assert statuses_a == [200, 200, 200, 429]
    assert statuses_b == [200, 200, 200]
    # and a client that never keeps the cookie is counted by its address
    with bind_client("127.0.2.2", base_url=shield.proxy_url) as refuser:
        statuses = []
        for _ in range(4):
            statuses.append(refuser.get("/").status_code)
            refuser.cookies.clear()
    assert statuses == [200, 200, 200, 429]


def test_a_forged_session_cookie_counts_as_absent(shield: ShieldProcess) -> None:
    with bind_client("127.0.3.1", base_url=shield.proxy_url) as client:
        genuine = _value(client.get("/products/1"))
    assert genuine is not None
    kind, kid, payload, mac = genuine.split(".")
    forged = f"{kind}.{kid}.{payload}.{mac[:-2]}AA"
    with bind_client("127.0.3.1", base_url=shield.proxy_url) as client:
        r = client.get("/products/1", headers={"Cookie": f"shield_session={forged}"})
    # a new session is minted: the forged one was never a session
    assert r.status_code == 200 and _value(r) not in (None, forged)
    assert _value(r).split(".")[2] != payload  # type: ignore[union-attr]


def test_a_session_cookie_from_another_stack_counts_as_absent(shield: ShieldProcess) -> None:
    with bind_client("127.0.3.2", base_url=shield.proxy_url, headers={"User-Agent": "curl/8.5.0"}) as tool:
        issued = _value(tool.get("/products/1"))
    assert issued is not None
    with bind_client("127.0.3.2", base_url=shield.proxy_url, headers={"User-Agent": CHROME_UA}) as browser:
        r = browser.get("/products/1", headers={"Cookie": f"shield_session={issued}"})
    assert r.status_code == 200
    assert _value(r) is not None and _value(r) != issued  # minted afresh for this stack


def test_clearance_is_bound_to_the_session_it_was_earned_in(shield: ShieldProcess) -> None:
    with bind_client("127.0.4.1", base_url=shield.proxy_url) as client:
        page = client.get("/user/1")
        assert page.status_code == 403 and page.headers["shield-action"] == "challenge"
        _solve_and_submit(client, page.text)
        assert client.get("/user/1", headers={"Referer": f"{shield.proxy_url}/"}).status_code == 200
        clearance = client.cookies.get("shield_clearance")
    assert clearance
    # the same clearance cookie in another session (a fresh jar on the same network) is worthless
    with bind_client("127.0.4.1", base_url=shield.proxy_url) as other:
        other.get("/products/1")  # gets its own session
        r = other.get("/user/1", headers={"Cookie": f"shield_clearance={clearance}; "
                                                     f"shield_session={other.cookies.get('shield_session')}"})
    assert r.status_code == 403 and r.headers["shield-action"] == "challenge"


def test_a_spent_record_budget_means_solving_again(shield: ShieldProcess) -> None:
    with bind_client("127.0.5.1", base_url=shield.proxy_url) as client:
        _solve_and_submit(client, client.get("/user/10").text)
        # every record fetched under the clearance spends one of its 2
        referer = {"Referer": f"{shield.proxy_url}/user/10"}
        assert [client.get(f"/user/{n}", headers=referer).status_code for n in (11, 12)] == [200, 200]
        spent = client.get("/user/13")
        assert spent.status_code == 403 and spent.headers["shield-action"] == "challenge"
        # pages that are not records do not spend it
        assert client.get("/").status_code == 200
        # a new solve brings a new budget
        _solve_and_submit(client, spent.text)
        assert [client.get(f"/user/{n}").status_code for n in (13, 14)] == [200, 200]
        assert client.get("/user/15").headers.get("shield-action") == "challenge"


def test_front_proxy_fingerprint_headers_are_believed_only_from_a_trusted_peer(shield: ShieldProcess) -> None:
    headers = {"CloudFront-Viewer-JA4-Fingerprint": CHROME_JA4,
               "CloudFront-Viewer-JA3-Fingerprint": "773906b0efdefa24a7f2b8eb6985bf37"}
    with bind_client(FRONT_PROXY, base_url=shield.proxy_url) as trusted:
        from_trusted = trusted.get("/products/1", headers=headers)
    with bind_client("127.0.6.1", base_url=shield.proxy_url) as untrusted:
        from_untrusted = untrusted.get("/products/1", headers=headers)
    assert from_trusted.status_code == 403 and from_trusted.headers["shield-action"] == "block"
    assert from_untrusted.status_code == 200


# -- the default policy ---------------------------------------------------------------------------

def test_default_policy_challenges_a_library_tls_stack_claiming_chrome_on_its_first_request(
        default_shield: ShieldProcess) -> None:
    import requests

    headers = {"User-Agent": CHROME_UA, "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    with httpx.Client(verify=False, trust_env=False, timeout=10) as client:
        by_httpx = client.get(f"{default_shield.https_url}/products/1", headers=headers)
    by_requests = requests.get(f"{default_shield.https_url}/products/2", headers=headers, verify=False, timeout=10,
                               proxies={"http": "", "https": ""})
    assert by_httpx.status_code == 403 and by_httpx.headers["shield-action"] == "challenge"
    assert by_requests.status_code == 403 and by_requests.headers["shield-action"] == "challenge"


def test_default_policy_lets_a_chrome_tls_stack_with_a_chrome_ua_through(default_shield: ShieldProcess) -> None:
    from curl_cffi import requests as curl_requests

    with curl_requests.Session(impersonate="chrome", verify=False, timeout=10, proxies={}) as session:
        first = session.get(f"{default_shield.https_url}/products/1")
        second = session.get(f"{default_shield.https_url}/products/2")
    assert first.status_code == 200 and second.status_code == 200
    assert "shield_session" in session.cookies

"""What real clients look like to a running shield: class, family, TLS stack and signals.

One shield logs every request (a non-terminal `log` rule writes a decision-log line with the
`fp` object); each test sends one client over TLS to its own `/echo/...` path and reads that
line back. Expectations come from what each client *is*, never from stored hashes: JA3 and JA4
of OpenSSL-linked clients depend on this machine's OpenSSL build.
"""
from __future__ import annotations

import pytest
from fp_clients import (
    CHROME_UA,
    RunningShield,
    chromium_page,
    echoed_headers,
    ja4_alpn,
    via_aiohttp,
    via_curl,
    via_curl_cffi,
    via_httpx,
    via_requests,
)

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]

POLICY = """\
version: 1
name: fingerprint-e2e-clients
rules:
  - name: all
    action: log
"""


def test_python_requests_is_a_library_on_an_openssl_handshake(shield: RunningShield) -> None:
    answer = via_requests(f"{shield.url}/echo/clients/requests")

    fp = shield.log.fp("/echo/clients/requests")
    assert answer.status == 200
    assert (fp["ua_class"], fp["ua_family"], fp["tls_family"], fp["signals"]) == (
        "library", "python-requests", "openssl", [])
    assert fp["httpsig"].startswith("h1:h1:lhfcr:")  # HTTP/1.1, no browser headers at all


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_httpx_is_a_library_on_an_openssl_handshake(shield: RunningShield, http2: bool) -> None:
    path = f"/echo/clients/httpx-{'h2' if http2 else 'h1'}"

    answer = via_httpx(shield.url + path, http2=http2)

    fp = shield.log.fp(path)
    assert answer.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    assert (fp["ua_class"], fp["ua_family"], fp["tls_family"], fp["signals"]) == ("library", "httpx", "openssl", [])
    assert fp["httpsig"].startswith("h2:h2:lhfcr:" if http2 else "h1:h1:lhfcr:")


def test_httpx_over_http2_keeps_the_handshake_of_http1(shield: RunningShield) -> None:
    # httpx offers ALPN "http/1.1,h2" in that order: JA4 names the first, h1, in both modes.
    via_httpx(f"{shield.url}/echo/clients/httpx-ja4-h1", http2=False)
    via_httpx(f"{shield.url}/echo/clients/httpx-ja4-h2", http2=True)

    h1 = shield.log.fp("/echo/clients/httpx-ja4-h1")
    h2 = shield.log.fp("/echo/clients/httpx-ja4-h2")
    assert h1["ja4"] == h2["ja4"]
    assert ja4_alpn(h2["ja4"]) == "h1"
    assert h1["httpsig"] != h2["httpsig"]  # the protocol actually spoken differs


def test_aiohttp_is_a_library_on_an_openssl_handshake(shield: RunningShield) -> None:
    via_aiohttp(f"{shield.url}/echo/clients/aiohttp")

    fp = shield.log.fp("/echo/clients/aiohttp")
    assert (fp["ua_class"], fp["ua_family"], fp["tls_family"], fp["signals"]) == ("library", "aiohttp", "openssl", [])


@pytest.mark.parametrize("http2", [False, True], ids=["default", "http2"])
def test_curl_is_a_library_on_an_openssl_handshake(shield: RunningShield, http2: bool) -> None:
    path = f"/echo/clients/curl-{'h2' if http2 else 'default'}"

    answer = via_curl(shield.url + path, http2=http2)

    fp = shield.log.fp(path)
    assert answer.http_version == "HTTP/2"  # curl offers h2 over TLS by default, and the shield takes it
    assert (fp["ua_class"], fp["ua_family"], fp["tls_family"], fp["signals"]) == ("library", "curl", "openssl", [])
    assert ja4_alpn(fp["ja4"]) == "h2"


def test_requests_with_a_chrome_user_agent_contradicts_its_own_handshake(shield: RunningShield) -> None:
    via_requests(f"{shield.url}/echo/clients/requests-chrome-ua", headers={"User-Agent": CHROME_UA})

    fp = shield.log.fp("/echo/clients/requests-chrome-ua")
    assert (fp["ua_class"], fp["ua_family"], fp["tls_family"]) == ("browser", "chrome", "openssl")
    assert {"ua_tls_mismatch", "chromium_without_client_hints", "browser_h1_only_alpn"} <= set(fp["signals"])


def test_headless_chromium_page_view_is_headless_on_a_chromium_handshake(shield: RunningShield, browser) -> None:
    # given: a page with its stylesheet, script and images
    since = shield.log.mark()
    with chromium_page(browser) as page:
        # when: Chromium navigates to it and loads everything
        response = page.goto(f"{shield.url}/products/1")
        page.wait_for_load_state("networkidle")

    # then: the navigation and every asset come from one headless Chromium stack, with no signal
    assert response is not None and response.status == 200
    page_fp = shield.log.fp("/products/1", since=since)
    assets = [e["fp"] for e in shield.log.entries(since) if e["path"].startswith("/static/") and e["rule"] == "all"]
    assert (page_fp["ua_class"], page_fp["ua_family"], page_fp["tls_family"], page_fp["signals"]) == (
        "headless", "headlesschrome", "chromium", [])
    assert ja4_alpn(page_fp["ja4"]) == "h2"
    assert page_fp["httpsig"].startswith("h2:h2:LHF")  # Accept-Language, client hints, sec-fetch-*
    assert len(assets) >= 3
    assert {(a["ua_class"], a["tls_family"], a["ja4"]) for a in assets} == {("headless", "chromium", page_fp["ja4"])}
    assert all(a["signals"] == [] for a in assets)
    # a browser shows several header stacks (navigation, subresources); assets carry a Referer
    assert all(a["httpsig"] != page_fp["httpsig"] and a["httpsig"].split(":")[2].endswith("R") for a in assets)


def test_chromium_with_a_plain_chrome_user_agent_is_a_browser_without_signals(shield: RunningShield, browser) -> None:
    with chromium_page(browser, user_agent=CHROME_UA) as page:
        page.goto(f"{shield.url}/echo/clients/chromium-chrome-ua")

    fp = shield.log.fp("/echo/clients/chromium-chrome-ua")
    assert (fp["ua_class"], fp["ua_family"], fp["tls_family"], fp["signals"]) == ("browser", "chrome", "chromium", [])


def test_curl_cffi_chrome_is_a_browser_on_a_chromium_handshake_offering_h2(shield: RunningShield) -> None:
    answer = via_curl_cffi(f"{shield.url}/echo/clients/cffi-chrome", "chrome")

    fp = shield.log.fp("/echo/clients/cffi-chrome")
    assert answer.http_version == "HTTP/2"
    assert (fp["ua_class"], fp["ua_family"], fp["tls_family"], fp["signals"]) == ("browser", "chrome", "chromium", [])
    assert ja4_alpn(fp["ja4"]) == "h2"


@pytest.mark.parametrize("target", ["firefox", "safari"])
def test_curl_cffi_firefox_and_safari_read_as_their_own_families(shield: RunningShield, target: str) -> None:
    via_curl_cffi(f"{shield.url}/echo/clients/cffi-{target}", target)

    fp = shield.log.fp(f"/echo/clients/cffi-{target}")
    assert (fp["ua_class"], fp["ua_family"], fp["tls_family"], fp["signals"]) == ("browser", target, target, [])
    assert fp["httpsig"].startswith("h2:h2:LhF")  # neither browser sends client hints


def test_chrome_like_ja4_is_stable_across_connections_while_ja3_varies(shield: RunningShield) -> None:
    paths = [f"/echo/clients/cffi-chrome-conn{i}" for i in range(3)]

    for path in paths:  # a new session each: three handshakes
        via_curl_cffi(shield.url + path, "chrome")

    fps = [shield.log.fp(path) for path in paths]
    assert len({fp["ja4"] for fp in fps}) == 1
    assert len({fp["ja3"] for fp in fps}) > 1  # BoringSSL shuffles extension order per handshake


# --- curl_cffi chrome next to the real browser ----------------------------------------------------------

def test_curl_cffi_chrome_navigation_matches_real_chromium_in_every_fingerprint(shield: RunningShield,
                                                                                browser) -> None:
    # given: real Chromium with a non-headless Chrome UA, as a careful scraper would run it
    with chromium_page(browser, user_agent=CHROME_UA) as page:
        page.goto(f"{shield.url}/echo/compare/chromium")
    # when: curl_cffi fetches a page the way its chrome target does
    via_curl_cffi(f"{shield.url}/echo/compare/cffi-chrome", "chrome")

    # then: JA4, TLS stack, header stack and signals are the same; only the per-handshake JA3 differs
    real = shield.log.fp("/echo/compare/chromium")
    fake = shield.log.fp("/echo/compare/cffi-chrome")
    same = ("ua_class", "ua_family", "ja4", "tls_family", "httpsig", "signals")
    assert {k: fake[k] for k in same} == {k: real[k] for k in same}


def test_curl_cffi_chrome_api_call_keeps_the_navigation_header_set(shield: RunningShield, browser) -> None:
    # given: the browser's fetch() of a JSON API, after a navigation
    with chromium_page(browser, user_agent=CHROME_UA) as page:
        page.goto(f"{shield.url}/echo/api/chromium-page")
        real_api = page.evaluate("""async () => await (await fetch('/echo/api/chromium',
                                      {headers: {Accept: 'application/json'}})).text()""")
    # when: curl_cffi makes "the same" API call and a page fetch
    fake_api = via_curl_cffi(f"{shield.url}/echo/api/cffi-chrome", "chrome", headers={"Accept": "application/json"})
    via_curl_cffi(f"{shield.url}/echo/api/cffi-chrome-page", "chrome")

    # then: the browser's API call has its own header stack; curl_cffi's is its navigation stack
    real_nav, real_fetch = shield.log.fp("/echo/api/chromium-page"), shield.log.fp("/echo/api/chromium")
    fake_nav, fake_fetch = shield.log.fp("/echo/api/cffi-chrome-page"), shield.log.fp("/echo/api/cffi-chrome")
    assert real_fetch["httpsig"] != real_nav["httpsig"]
    assert fake_fetch["httpsig"] == fake_nav["httpsig"]
    real_headers = echoed_headers(real_api)
    fake_headers = fake_api.echoed_headers()
    assert (real_headers["sec-fetch-mode"], real_headers["sec-fetch-dest"]) == ("cors", "empty")
    assert (fake_headers["accept"], fake_headers["sec-fetch-mode"], fake_headers["sec-fetch-dest"]) == (
        "application/json", "navigate", "document")
    # ... which no signal reports yet: both read as clean Chrome
    assert real_fetch["signals"] == fake_fetch["signals"] == []


def test_curl_cffi_chrome_sends_a_reload_cache_control_that_httpsig_leaves_out(shield: RunningShield,
                                                                                  browser) -> None:
    with chromium_page(browser, user_agent=CHROME_UA) as page:
        page.goto(f"{shield.url}/echo/reload/chromium")
        real = echoed_headers(page.inner_text("body"))
    fake = via_curl_cffi(f"{shield.url}/echo/reload/cffi-chrome", "chrome").echoed_headers()

    # a first navigation of real Chrome has no Cache-Control; curl_cffi's has Chrome's *reload* value
    assert "cache-control" not in real
    assert fake["cache-control"] == "max-age=0"
    # httpsig leaves cache-control out on purpose (reloads), so the signatures stay equal
    assert shield.log.fp("/echo/reload/cffi-chrome")["httpsig"] == shield.log.fp("/echo/reload/chromium")["httpsig"]


def test_curl_cffi_chrome_forced_to_http1_is_caught_by_its_alpn_offer(shield: RunningShield) -> None:
    answer = via_curl_cffi(f"{shield.url}/echo/clients/cffi-chrome-h1", "chrome", http1=True)

    fp = shield.log.fp("/echo/clients/cffi-chrome-h1")
    assert answer.http_version == "HTTP/1.1"
    assert fp["tls_family"] == "chromium"
    assert ja4_alpn(fp["ja4"]) == "h1"
    assert fp["signals"] == ["browser_h1_only_alpn"]  # real Chrome always offers h2

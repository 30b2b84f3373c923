"""An expired clearance cookie is refused by the running proxy (wall clock, so a 2 s cookie TTL)."""
from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from challenge_helpers import GATE_POLICY, challenge_and_solve, metric_values, path_count, start_shield

from harness import ShieldProcess, bind_client, origin_stats

pytestmark = pytest.mark.e2e

TTL = 2


@pytest.fixture(scope="module")
def short_shield(tmp_path_factory: pytest.TempPathFactory, demo_origin: str) -> Iterator[ShieldProcess]:
    policy = GATE_POLICY + f"challenge: {{cookie_ttl: {TTL}s}}\n"
    proc = start_shield(tmp_path_factory.mktemp("challenge-ttl"), demo_origin, policy)
    try:
        yield proc
    finally:
        proc.stop()


def test_expired_cookie_is_refused(short_shield, demo_origin):
    headers = {"User-Agent": "ChallengeE2E/1.0"}
    with bind_client("127.0.0.3", base_url=short_shield.proxy_url, headers=headers) as c:
        form = challenge_and_solve(c, "/products/401")
        r = c.post("/.shield/verify", data=form)
        assert r.status_code == 303 and f"Max-Age={TTL}" in r.headers["set-cookie"]
        issued = time.time()
        value = r.headers["set-cookie"].split(";", 1)[0].split("=", 1)[1]
        sent = {"Cookie": f"shield_clearance={value}"}
        c.cookies.clear()
        assert c.get("/products/402", headers=sent).status_code == 200  # valid while fresh

        m0 = metric_values(short_shield.admin_url)
        before = origin_stats(demo_origin)
        time.sleep(max(0.0, issued + TTL + 0.3 - time.time()))
        r = c.get("/products/403", headers=sent)
        assert r.status_code == 403 and r.headers["shield-action"] == "challenge"
    assert path_count(origin_stats(demo_origin), "/products/403") == path_count(before, "/products/403")
    m1 = metric_values(short_shield.admin_url)
    assert m1["cookie.expired"] - m0.get("cookie.expired", 0) == 1

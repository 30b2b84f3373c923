"""Issue #15's findings 1, 2, 4 and 7, re-run against a real `scrapeshield run` on loopback.

One shield serves the module: `records` allows 11 requests per client (`1/m burst 10`) under
`fail: open`, behind a trusted proxy (127.0.0.1). Each test speaks from its own loopback address.
"""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hostile_policies import alias_bomb, large_policy
from raw_http import raw_get

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "challenge_e2e"))
from challenge_helpers import parse_challenge, solve

from harness import ShieldProcess

pytestmark = pytest.mark.e2e

RULES = """\
  - name: records
    match: {path: /user/*}
    limits: ["1/m burst 10"]
    exceed: throttle
  - name: gate
    match: {path: /echo/gate/*}
    action: challenge
    difficulty: 8
"""
POLICY = f"""\
version: 1
name: abuse
fail: open
trusted_proxies: [127.0.0.1/32]
rules:
{RULES}"""
ALLOWED = 11  # burst 10, plus the one token a full bucket starts with
TRIES = 30


@pytest.fixture(scope="module")
def shield(demo_origin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShieldProcess]:
    workdir = tmp_path_factory.mktemp("abuse")
    with ShieldProcess(demo_origin, policy_text=POLICY, workdir=workdir,
                       extra_args=["--reload-interval", "0.1"]) as running:
        yield running


def records_through(shield: ShieldProcess, paths: list[str], headers: list[tuple[str, str]] = (),  # type: ignore[assignment]
                    source_ip: str = "127.0.0.1") -> int:
    answers = [raw_get(shield.host, shield.port, p, headers, source_ip) for p in paths]
    assert all(a.status for a in answers), "every request is answered"
    return sum(not a.from_shield for a in answers)


def metric(shield: ShieldProcess, name: str) -> float:
    text = httpx.get(f"{shield.admin_url}/metrics", timeout=5, trust_env=False).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


# -- finding 1: forwarding-chain bypass ---------------------------------------------------------------

@pytest.mark.parametrize(("client", "stuffing"), [
    ("198.51.100.11", ", ".join(f"203.0.113.{i}" for i in range(70))),  # 70 hops
    ("198.51.100.12", "1" * 9000),  # 9 KB
    ("198.51.100.13", "not-an-address;;, [::1, for=x, _hidden, unknown, " * 20),  # garbage
], ids=["70-hops", "9-KB", "garbage"])
def test_a_stuffed_forwarding_chain_gets_no_record_past_the_limit(shield: ShieldProcess, client: str,
                                                                  stuffing: str) -> None:
    # given one client behind our trusted proxy (127.0.0.1), whose chain it stuffed before the proxy's hop
    errors_before = metric(shield, "scrapeshield_errors_total")
    # when it asks for 30 records
    got = records_through(shield, [f"/user/{n}" for n in range(TRIES)],
                          [("X-Forwarded-For", f"{stuffing}, {client}")])
    # then it gets the limit's 11, as without the stuffing, and nothing was a "malformed request"
    assert got == ALLOWED
    assert metric(shield, "scrapeshield_errors_total") == errors_before


# -- finding 2: path spelling bypass -----------------------------------------------------------------

@pytest.mark.parametrize(("spelling", "source_ip"), [
    ("/user/{n}", "127.0.1.1"),
    ("/%75ser/{n}", "127.0.1.2"),
    ("/static/../user/{n}", "127.0.1.3"),
    ("//user//{n}", "127.0.1.4"),
    ("/%2e%2e/user/{n}", "127.0.1.5"),
    ("/user%2F{n}", "127.0.1.6"),
])
def test_every_path_spelling_meets_the_same_limit(shield: ShieldProcess, spelling: str, source_ip: str) -> None:
    # given a client of its own (not behind the proxy), when it asks for 30 records in one spelling
    got = records_through(shield, [spelling.format(n=n) for n in range(TRIES)], source_ip=source_ip)
    # then it gets the same 11 as with `/user/N`
    assert got == ALLOWED


# -- finding 4: alias bombs, and multi-MB reloads -----------------------------------------------------

def test_check_refuses_the_alias_bomb_at_once_with_its_position(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb())
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "scrapeshield", "check", str(bomb)],
                          capture_output=True, text=True, timeout=60)
    took = time.perf_counter() - t0
    assert proc.returncode == 1
    assert f"{bomb}:5:" in proc.stdout and "alias bomb" in proc.stdout
    assert took < 10  # the process start-up; the refusal itself is a millisecond (tests/unit/test_policy_loader.py)


def _status(shield: ShieldProcess) -> dict:  # type: ignore[type-arg]
    return httpx.get(f"{shield.admin_url}/status", timeout=5, trust_env=False).json()  # type: ignore[no-any-return]


def _wait(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _replace_policy(shield: ShieldProcess, text: str) -> None:
    tmp = shield.policy.with_suffix(".new")
    tmp.write_text(text)
    tmp.replace(shield.policy)  # atomic: the poll never sees half a file


def test_a_running_shield_refuses_the_alias_bomb_on_reload_and_keeps_its_policy(shield: ShieldProcess) -> None:
    version = _status(shield)["policy"]["version"]
    original = shield.policy.read_text()
    try:
        _replace_policy(shield, alias_bomb())
        assert _wait(lambda: "alias bomb" in (_status(shield)["policy"]["last_reload_error"] or ""), 5)
        assert _status(shield)["policy"]["version"] == version
        assert records_through(shield, [f"/user/{n}" for n in range(TRIES)], source_ip="127.0.2.1") == ALLOWED
    finally:
        _replace_policy(shield, original)
        assert _wait(lambda: _status(shield)["policy"]["last_reload_error"] is None, 10)


def test_a_normal_client_is_answered_within_a_second_during_a_multi_megabyte_reload(shield: ShieldProcess) -> None:
    # given a 3 MB valid policy (15,000 rules) with the same `records` rule
    big = large_policy(3_000_000).replace("rules:\n", "rules:\n" + RULES, 1)
    original = shield.policy.read_text()
    version = _status(shield)["policy"]["version"]
    latencies: list[float] = []
    admin_latencies: list[float] = []
    stop = threading.Event()

    def normal_client() -> None:
        with httpx.Client(base_url=shield.proxy_url, timeout=30, trust_env=False) as client:
            while not stop.is_set():
                t0 = time.perf_counter()
                assert client.get("/").status_code == 200
                latencies.append(time.perf_counter() - t0)
                time.sleep(0.05)

    def admin_client() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            httpx.get(f"{shield.admin_url}/healthz", timeout=30, trust_env=False)
            admin_latencies.append(time.perf_counter() - t0)
            time.sleep(0.1)

    threads = [threading.Thread(target=normal_client), threading.Thread(target=admin_client)]
    for t in threads:
        t.start()
    try:
        # when the policy file is replaced, and until the new version is live
        time.sleep(0.3)
        _replace_policy(shield, big)
        t0 = time.perf_counter()
        assert _wait(lambda: _status(shield)["policy"]["version"] != version, 120), "the big policy never loaded"
        reload_seconds = time.perf_counter() - t0
    finally:
        stop.set()
        for t in threads:
            t.join()
        _replace_policy(shield, original)
        assert _wait(lambda: _status(shield)["policy"]["rules"] == 2, 60)
    # then the client and the admin port were answered throughout (BENCHMARKS.md has the figures)
    print(f"reload {reload_seconds:.1f} s; client max {max(latencies):.3f} s over {len(latencies)} requests; "
          f"admin max {max(admin_latencies):.3f} s")
    assert len(latencies) > 5
    assert max(latencies) < 2.0  # generous (2 shared cores): the target, and the typical figure, is < 1 s
    assert max(admin_latencies) < 2.0


# -- finding 7: non-canonical token encoding, end to end ------------------------------------------------

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def test_a_clearance_cookie_with_changed_unused_bits_is_refused(shield: ShieldProcess) -> None:
    # given a browser-like client that solved the gate's challenge and holds its clearance cookie
    with httpx.Client(base_url=shield.proxy_url, timeout=10, trust_env=False,
                      headers={"Accept": "text/html"}) as client:
        page = client.get("/echo/gate/1")
        assert page.status_code == 403 and page.headers["shield-action"] == "challenge"
        token, seed, bits = parse_challenge(page.text)
        verified = client.post("/.shield/verify", data={"token": token, "nonce": solve(seed, bits)})
        assert verified.status_code == 303
        (name, cookie), = client.cookies.items()
        assert client.get("/echo/gate/2").status_code == 200
        # when only the two unused low bits of its MAC's last character change (the same MAC bytes)
        head, _, mac = cookie.rpartition(".")
        tampered = f"{head}.{mac[:-1]}{B64URL[B64URL.index(mac[-1]) ^ 1]}"
        client.cookies.clear()
        answer = client.get("/echo/gate/3", headers={"Cookie": f"{name}={tampered}"})
    # then it no longer clears: the challenge again
    assert answer.status_code == 403 and answer.headers["shield-action"] == "challenge"

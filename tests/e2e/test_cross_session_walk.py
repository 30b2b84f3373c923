"""End to end, #11: a fleet that walks record ids with a fresh session every few records is priced
through `cross_session_walk` -- its new identities are challenged -- while a crowd of people on the
same browser build, browsing random profiles with established sessions, is never challenged.

A real `scrapeshield run` with the shipped default policy (sessions count as fresh for 3 s here
instead of 10 s, so that the crowd's sessions are established within the test), real HTTP
clients from their own loopback addresses, each person and each fleet identity from its own /24.
The fleet behaves as well as it can otherwise: it opens the home page and an asset first (a
session with a history, no cold record), follows same-site links (no deep record), keeps its
cookies, and mints fewer sessions than a burst -- nothing but the walk across its sessions gives
it away.
"""
from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from harness import CHROME_HEADERS, ShieldProcess

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CHROME = CHROME_HEADERS
PEOPLE = 12
FLEET_RECORDS = 30
PER_IDENTITY = 5  # the fleet's fresh session every 5 records: 6 identities, far below a mint burst
FRESH_FOR = 3.0  # seconds a session counts as fresh (the default policy says 10 s)


@pytest.fixture
def shield(shield_factory: Callable[..., ShieldProcess], tmp_path: Path) -> ShieldProcess:
    text = (REPO / "policies" / "default.yaml").read_text()
    text, n = re.subn(r"^(\s+fresh_for:) 10s", rf"\1 {FRESH_FOR:g}s", text, flags=re.M)
    assert n == 1, "policies/default.yaml changed: set fresh_for here"
    return shield_factory(policy_text=text, decision_log=tmp_path / "decisions.jsonl")


def client(ip: str, shield: ShieldProcess) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=ip), base_url=shield.proxy_url,
                        trust_env=False, timeout=10.0, headers=CHROME)


def visit(c: httpx.Client, path: str) -> httpx.Response:
    return c.get(path, headers={"Referer": f"{c.base_url}/"})


def arrive(c: httpx.Client) -> httpx.Response:
    """The home page and one of its assets, as a browser loads them: the session cookie the page
    set comes back with the asset, so the session has a history before the first click."""
    home = c.get("/")
    c.get("/static/app.js", headers={"Referer": f"{c.base_url}/", "Sec-Fetch-Dest": "script"})
    return home


def test_a_fleet_walking_ids_over_fresh_sessions_is_challenged_and_the_crowd_on_its_browser_is_not(
        shield: ShieldProcess) -> None:
    rng = random.Random(4)
    people = [client(f"127.0.{30 + p}.1", shield) for p in range(PEOPLE)]
    for person in people:  # people arrive, get their session, read the home page
        assert arrive(person).status_code == 200
    time.sleep(FRESH_FOR + 0.2)  # ... and are established by the time the fleet starts

    crowd: list[int] = []
    fleet: list[httpx.Response] = []
    arrivals: list[httpx.Response] = []
    identity: httpx.Client | None = None
    for i in range(FLEET_RECORDS):
        if i % PER_IDENTITY == 0:  # a fresh identity: new address, new cookie jar, home page first
            if identity is not None:
                identity.close()
            identity = client(f"127.0.{60 + i // PER_IDENTITY}.1", shield)
            arrivals.append(arrive(identity))
        fleet.append(visit(identity, f"/user/{5001 + i}"))
        for person in rng.sample(people, 2):  # the crowd keeps browsing random profiles meanwhile
            crowd.append(visit(person, f"/user/{rng.randint(1, 100_000)}").status_code)
    assert identity is not None
    identity.close()
    for person in people:
        person.close()

    # The crowd, on the fleet's very browser build, never noticed.
    assert crowd == [200] * len(crowd)
    # The fleet got its first records (nothing but a walk across sessions gives it away, and a walk
    # needs a few ids) and then paid: challenged, by the stack-pressure the walk raised.
    actions = [r.headers.get("Shield-Action") for r in fleet]
    assert actions[:8] == [None] * 8, actions
    challenged = [i for i, a in enumerate(actions) if a == "challenge"]
    assert challenged and challenged[0] < 25, actions  # measured: from its 20th record on (without the walk
    # detector, cross_walk_enabled: false, all 30 records go through)
    assert actions.count(None) <= 24, actions  # from then on it pays for (nearly) every record
    assert any(r.status_code == 403 for r in arrivals)  # and its next fresh identities pay on arrival
    lines = [json.loads(line) for line in Path(str(shield.decision_log)).read_text().splitlines() if line.strip()]
    rules = {line["rule"] for line in lines if line["action"] == "challenge"}
    assert rules <= {"score:stack-pressure", "score:net-pressure"} and "score:stack-pressure" in rules, rules

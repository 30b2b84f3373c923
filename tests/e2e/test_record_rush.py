"""End to end: a fleet identity that shows a person's history, then reads its free records in a
rush and is dropped, makes the next new identity from its /24 solve on its first page
(`record_rush` in the default policy's `net-pressure`) -- while a person with standing on the
same /24, and a new visitor from another network, are never asked.

A real `scrapeshield run` with the shipped default policy (sessions count as fresh for 3 s here
instead of 10 s, so that sessions are established within the test), real HTTP clients from
their own loopback addresses. The identity behaves as well as it can otherwise: the home page
and an asset, a click to a product (a person's history), past `fresh_for`, then records by
random id (no walk), each named from a page of this site, no faster than `records-per-ip`
allows -- and fewer than `records-per-session`'s burst, so no per-session rule ever sees it.
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
FRESH_FOR = 3.0  # seconds a session counts as fresh (the default policy says 10 s)
RECORDS = 30  # records-per-session's burst; the identity is dropped at its first refusal
GAP_S = 0.6  # under records-per-ip's 2 a second


def policy_text(rush: bool = True) -> str:
    text = (REPO / "policies" / "default.yaml").read_text()
    text, n = re.subn(r"^(\s+fresh_for:) 10s", rf"\1 {FRESH_FOR:g}s", text, flags=re.M)
    assert n == 1, "policies/default.yaml changed: set fresh_for here"
    if not rush:
        text, n = re.subn(r"^\s+record_rush: \d+\n", "", text, flags=re.M)
        assert n == 1
    return text


def client(ip: str, shield: ShieldProcess) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=ip), base_url=shield.proxy_url,
                        trust_env=False, timeout=10.0, headers=CHROME)


def with_history(c: httpx.Client) -> None:
    """What a browser does for a person: the home page, its asset, a click to a product."""
    assert c.get("/").status_code == 200
    c.get("/static/app.js", headers={"Referer": f"{c.base_url}/", "Sec-Fetch-Dest": "script"})
    assert c.get("/products/3", headers={"Referer": f"{c.base_url}/"}).status_code == 200


def read(c: httpx.Client, record: int) -> httpx.Response:
    return c.get(f"/user/{record}", headers={"Referer": f"{c.base_url}/products/3"})


def run(shield: ShieldProcess) -> tuple[list[int], httpx.Response, list[int], httpx.Response]:
    rng = random.Random(9)
    person, identity = client("127.0.91.10", shield), client("127.0.91.20", shield)
    with_history(person)
    with_history(identity)
    time.sleep(FRESH_FOR + 0.2)
    fleet = []
    for _ in range(RECORDS):
        fleet.append(read(identity, rng.randrange(1, 100_000)).status_code)
        if fleet[-1] != 200:
            break
        time.sleep(GAP_S)
    identity.close()
    # the next identity from the same /24: a new address, a new cookie jar, the home page first
    with client("127.0.91.21", shield) as nxt:
        arrival = nxt.get("/")
    # the person with standing on that /24 keeps reading; a new visitor from elsewhere arrives
    person_reads = [read(person, rng.randrange(1, 100_000)).status_code for _ in range(3)]
    person.close()
    with client("127.0.92.10", shield) as visitor:
        elsewhere = visitor.get("/")
    return fleet, arrival, person_reads, elsewhere


def test_a_rushed_identity_prices_the_next_one_from_its_network_and_nobody_else(
        shield_factory: Callable[..., ShieldProcess], tmp_path: Path) -> None:
    shield = shield_factory(policy_text=policy_text(), decision_log=tmp_path / "decisions.jsonl")
    fleet, arrival, person_reads, elsewhere = run(shield)
    # the identity read its free records (its skipped record assets may end them at the 27th: the
    # harvest score's no_assets)
    assert fleet[:24] == [200] * 24, fleet
    assert arrival.status_code == 403 and arrival.headers.get("Shield-Action") == "challenge"
    lines = [json.loads(line) for line in Path(str(shield.decision_log)).read_text().splitlines() if line.strip()]
    assert [line["rule"] for line in lines if line["action"] != "allow"][-1:] == ["score:net-pressure"]
    assert person_reads == [200] * 3
    assert elsewhere.status_code == 200


def test_without_record_rush_the_next_identity_walks_in(shield_factory: Callable[..., ShieldProcess],
                                                        tmp_path: Path) -> None:
    # the same traffic under the default policy without the weight: what the test above guards
    shield = shield_factory(policy_text=policy_text(rush=False))
    fleet, arrival, _, _ = run(shield)
    assert fleet[:24] == [200] * 24, fleet
    assert arrival.status_code == 200

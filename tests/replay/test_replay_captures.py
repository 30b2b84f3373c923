"""The shipped policy against real traffic: captures recorded through the shield (tests/captures/).

These assert behaviour a site owner cares about, not rule names, so they keep holding while the
default policy grows new signals: people in browsers get through, a crawler harvesting the shop
is stopped early.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from replaytools import DEFAULT_POLICY, capture, replay_decisions, replay_report
from scrapeshield.cli import main
from scrapeshield.replay.core import iter_http_flows

HERE = Path(__file__).resolve().parent
CLIENTS = {  # capture -> (source address, User-Agent) as recorded by tests/captures/record.py
    "curl": ("127.0.0.2", r"^curl/"),
    "requests": ("127.0.0.3", r"^python-requests/"),
    "httpx": ("127.0.0.4", r"^python-httpx/"),
    "scrapy": ("127.0.0.5", r"^Scrapy/"),
    "chromium": ("127.0.0.1", r"HeadlessChrome/"),
}


@pytest.mark.parametrize("name", sorted(CLIENTS))
def test_each_capture_is_real_client_traffic_saved_by_the_shield(name: str) -> None:
    address, user_agent = CLIENTS[name]
    flows = list(iter_http_flows(str(capture(name))))

    assert flows
    assert {f.client_conn.peername[0] for f in flows} == {address}
    assert all(re.search(user_agent, f.request.headers.get("user-agent", "")) for f in flows)
    assert all(f.response is not None and f.response.status_code < 400 for f in flows)  # recorded unhindered
    assert all("scrapeshield" in f.metadata for f in flows)  # decided by a live shield on the way
    if name != "curl":  # curl's capture mixes plain HTTP and TLS calls
        assert all(f.metadata.get("scrapeshield_tls") for f in flows)


def test_a_person_browsing_in_chromium_is_never_refused() -> None:
    decisions = replay_decisions([capture("chromium")], DEFAULT_POLICY)

    pages = [d for d in decisions if d.path.startswith(("/products/", "/user/"))]
    assert len(pages) >= 8  # the capture is a real browsing session: several products and profiles
    refused = [d.describe() for d in decisions if d.refused]
    assert refused == []


def test_the_scrapy_crawl_is_refused_before_it_has_fetched_most_of_its_pages() -> None:
    report = replay_report([capture("scrapy")], DEFAULT_POLICY)

    (crawler,) = report.clients
    assert crawler.requests >= 250  # the whole crawl is in the capture (CLOSESPIDER_PAGECOUNT=300)
    first = crawler.first_refused
    assert first is not None, f"never refused: {crawler.actions}"
    assert first.request < crawler.requests / 2
    assert crawler.actions.get("allow", 0) < crawler.requests / 2  # and it stays stopped


def test_the_documented_expectations_hold_for_all_captures_replayed_together(
        capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(capture(name)) for name in sorted(CLIENTS)]

    code = main(["replay", *files, "--policy", str(DEFAULT_POLICY),
                 "--expect", str(HERE / "default-policy.expect.yaml")])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "0 failed" in out

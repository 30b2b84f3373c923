"""The shipped good-bot data files, and verification against them."""
from __future__ import annotations

import ipaddress
import itertools
import json
import re
from pathlib import Path

import pytest
import yaml

from scrapeshield.fingerprint import classify_user_agent
from scrapeshield.fingerprint.goodbots import GoodBotRegistry, load_prefixes

GOODBOTS = Path(__file__).resolve().parents[2] / "policies" / "goodbots"
BOTS = yaml.safe_load((GOODBOTS / "bots.yaml").read_text())["bots"]
RANGE_FILES = sorted({spec["ranges"] for spec in BOTS.values()})

GOOGLEBOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
BINGBOT_UA = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"
CHROME_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


def prefixes(file: str) -> list[str]:
    doc = json.loads((GOODBOTS / file).read_text())
    return [p.get("ipv4Prefix") or p.get("ipv6Prefix") for p in doc["prefixes"]]


@pytest.fixture(scope="module")
def registry() -> GoodBotRegistry:
    return GoodBotRegistry.load(GOODBOTS)


# --- data files -------------------------------------------------------------------------

def test_every_bot_names_a_ranges_file_that_exists() -> None:
    for name, spec in BOTS.items():
        assert (GOODBOTS / spec["ranges"]).is_file(), name


def test_every_bot_has_a_compilable_user_agent_regex() -> None:
    for spec in BOTS.values():
        re.compile(spec["user_agent"])


def test_every_bot_records_its_source_url() -> None:
    for name, spec in BOTS.items():
        assert spec["source"]["url"].startswith("https://"), name


@pytest.mark.parametrize("file", RANGE_FILES)
def test_ranges_file_is_in_the_published_format(file: str) -> None:
    doc = json.loads((GOODBOTS / file).read_text())
    assert isinstance(doc["creationTime"], str)
    assert all(set(p) <= {"ipv4Prefix", "ipv6Prefix"} and len(p) == 1 for p in doc["prefixes"])


@pytest.mark.parametrize("file", RANGE_FILES)
def test_ranges_file_is_not_empty(file: str) -> None:
    assert prefixes(file)


@pytest.mark.parametrize("file", RANGE_FILES)
def test_ranges_file_has_only_valid_cidrs_without_host_bits(file: str) -> None:
    for text in prefixes(file):
        ipaddress.ip_network(text, strict=True)


@pytest.mark.parametrize("file", RANGE_FILES)
def test_ranges_file_prefix_kind_matches_its_ip_version(file: str) -> None:
    doc = json.loads((GOODBOTS / file).read_text())
    for p in doc["prefixes"]:
        if "ipv4Prefix" in p:
            assert ipaddress.ip_network(p["ipv4Prefix"]).version == 4
        else:
            assert ipaddress.ip_network(p["ipv6Prefix"]).version == 6


@pytest.mark.parametrize("file", RANGE_FILES)
def test_ranges_file_has_only_public_ranges(file: str) -> None:
    for text in prefixes(file):
        net = ipaddress.ip_network(text)
        assert net.is_global and not (net.is_private or net.is_loopback), text


@pytest.mark.parametrize("file", RANGE_FILES)
def test_ranges_file_has_no_duplicates(file: str) -> None:
    nets = [ipaddress.ip_network(t) for t in prefixes(file)]
    assert len(nets) == len(set(nets))


@pytest.mark.parametrize("file", RANGE_FILES)
def test_ranges_file_has_no_overlapping_ranges(file: str) -> None:
    nets = sorted(
        (ipaddress.ip_network(t) for t in prefixes(file)),
        key=lambda n: (n.version, int(n.network_address)),
    )
    for before, after in itertools.pairwise(nets):
        if before.version == after.version:
            assert int(after.network_address) > int(before.broadcast_address), (before, after)


@pytest.mark.parametrize("file", RANGE_FILES)
def test_ranges_file_has_no_overbroad_range(file: str) -> None:
    # Operators publish /27s, /28s, /24s ...; anything as wide as a /16 is a typo.
    for text in prefixes(file):
        net = ipaddress.ip_network(text)
        assert net.prefixlen >= (17 if net.version == 4 else 33), text


def test_loader_reports_private_and_malformed_prefixes() -> None:
    doc = {"prefixes": [{"ipv4Prefix": "10.0.0.0/8"}, {"ipv4Prefix": "66.249.64.5/27"},
                        {"ipv6Prefix": "::1/128"}, {"ipv4Prefix": "66.249.64.0/27"}]}
    networks, errors = load_prefixes(doc)
    assert [str(n) for n in networks] == ["66.249.64.0/27"]
    assert len(errors) == 3


def test_loader_rejects_an_empty_prefix_list() -> None:
    assert load_prefixes({"prefixes": []})[1]


def test_registry_load_fails_listing_every_problem(tmp_path: Path) -> None:
    (tmp_path / "bots.yaml").write_text(
        "bots:\n"
        "  a: {user_agent: 'abot', ranges: missing.json}\n"
        "  b: {user_agent: '(', ranges: b.json}\n"
    )
    with pytest.raises(ValueError) as err:
        GoodBotRegistry.load(tmp_path)
    assert "missing.json" in str(err.value) and "bots.b.user_agent" in str(err.value)


# --- verification ---------------------------------------------------------------------

def test_googlebot_ua_from_google_range_is_verified(registry: GoodBotRegistry) -> None:
    assert registry.verify(GOOGLEBOT_UA, "66.249.66.1") == "googlebot"


def test_googlebot_ua_from_google_ipv6_range_is_verified(registry: GoodBotRegistry) -> None:
    assert registry.verify(GOOGLEBOT_UA, "2001:4860:4801:10::7") == "googlebot"


def test_ipv4_mapped_ipv6_address_is_verified_as_ipv4(registry: GoodBotRegistry) -> None:
    assert registry.verify(GOOGLEBOT_UA, "::ffff:66.249.66.1") == "googlebot"


def test_googlebot_image_ua_is_covered_by_googlebot_ranges(registry: GoodBotRegistry) -> None:
    assert registry.verify("Googlebot-Image/1.0", "66.249.66.1") == "googlebot"


def test_bingbot_ua_from_bing_range_is_verified(registry: GoodBotRegistry) -> None:
    assert registry.verify(BINGBOT_UA, "157.55.39.200") == "bingbot"


def test_googlebot_ua_from_elsewhere_is_not_verified(registry: GoodBotRegistry) -> None:
    assert registry.verify(GOOGLEBOT_UA, "203.0.113.9") is None


def test_googlebot_ua_from_bing_range_is_not_verified(registry: GoodBotRegistry) -> None:
    assert registry.verify(GOOGLEBOT_UA, "157.55.39.200") is None


def test_browser_ua_from_google_range_is_not_verified(registry: GoodBotRegistry) -> None:
    assert registry.verify(CHROME_UA, "66.249.66.1") is None


def test_missing_ua_is_not_verified(registry: GoodBotRegistry) -> None:
    assert registry.verify(None, "66.249.66.1") is None


def test_unparsable_ip_is_not_verified(registry: GoodBotRegistry) -> None:
    assert registry.verify(GOOGLEBOT_UA, "not-an-ip") is None


def test_address_just_past_a_range_is_not_verified(registry: GoodBotRegistry) -> None:
    # 66.249.78.0/27 is published, 66.249.78.32/27 is too, 66.249.78.160/27 is not.
    assert registry.verify(GOOGLEBOT_UA, "66.249.78.160") is None


def test_verify_accepts_a_classified_user_agent(registry: GoodBotRegistry) -> None:
    assert registry.verify(classify_user_agent(GOOGLEBOT_UA), "66.249.66.1") == "googlebot"

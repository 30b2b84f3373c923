"""Verify "good bots" (search engine crawlers) by User-Agent claim AND published IP range.

``policies/goodbots/bots.yaml`` maps a bot name to a User-Agent regex and a ranges file
in the operator's published JSON format. ``GoodBotRegistry.verify`` returns the bot's
name only when the UA claims that bot and the client IP is inside that bot's ranges;
a UA alone never verifies.

Lookups are cheap: which bot a UA claims is memoised per UA string (most requests claim
none, so they cost one dictionary lookup), and the IP test is a bisect over merged integer
ranges per IP version.
"""
from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from scrapeshield.fingerprint.useragent import MAX_UA_LENGTH, UserAgentClass
from scrapeshield.memo import remember
from scrapeshield.netaddr import CidrSet

__all__ = ["GoodBot", "GoodBotRegistry", "load_prefixes"]

BOTS_FILE = "bots.yaml"
_CLAIM_CACHE_SIZE = 10_000

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class GoodBot:
    name: str
    user_agent: re.Pattern[str]
    ranges: CidrSet
    source: str


def load_prefixes(doc: Any) -> tuple[list[IpNetwork], list[str]]:
    """Networks from a published ranges document, plus every problem found in it."""
    errors: list[str] = []
    networks: list[IpNetwork] = []
    prefixes = doc.get("prefixes") if isinstance(doc, Mapping) else None
    if not isinstance(prefixes, list) or not prefixes:
        return [], ["no 'prefixes' list (or it is empty)"]
    for i, entry in enumerate(prefixes):
        text = None
        if isinstance(entry, Mapping):
            text = entry.get("ipv4Prefix") or entry.get("ipv6Prefix")
        if not isinstance(text, str):
            errors.append(f"prefixes[{i}]: no ipv4Prefix/ipv6Prefix string")
            continue
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError as e:
            errors.append(f"prefixes[{i}]: {e}")
            continue
        if not net.is_global:
            # A private or loopback range here would let anyone on that network
            # pass as the bot.
            errors.append(f"prefixes[{i}]: {net} is not a public range")
            continue
        networks.append(net)
    return networks, errors


class GoodBotRegistry:
    __slots__ = ("_bots", "_claims")

    def __init__(self, bots: Iterable[GoodBot]) -> None:
        self._bots: tuple[GoodBot, ...] = tuple(bots)
        # Asked on every request (the `good_bot` condition and signal): the claim per UA, as () or
        # (bot,). A dict, not functools.lru_cache: compiled, a native lookup instead of a call
        # through the C API with its argument tuple. Bounded: emptied when full.
        self._claims: dict[str, tuple[GoodBot, ...]] = {}

    @classmethod
    def load(cls, directory: str | Path) -> GoodBotRegistry:
        """Load ``bots.yaml`` and its ranges files; raise ValueError listing every problem."""
        root = Path(directory)
        errors: list[str] = []
        try:
            config = yaml.safe_load((root / BOTS_FILE).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"{root / BOTS_FILE}: {e}") from e
        entries = config.get("bots") if isinstance(config, Mapping) else None
        if not isinstance(entries, Mapping) or not entries:
            raise ValueError(f"{root / BOTS_FILE}: needs a non-empty 'bots' mapping")

        bots: list[GoodBot] = []
        for name, spec in entries.items():
            where = f"{BOTS_FILE}: bots.{name}"
            if not isinstance(spec, Mapping):
                errors.append(f"{where}: must be a mapping")
                continue
            ua_text, ranges_file = spec.get("user_agent"), spec.get("ranges")
            if not isinstance(ua_text, str) or not isinstance(ranges_file, str):
                errors.append(f"{where}: needs 'user_agent' and 'ranges' strings")
                continue
            try:
                ua_rx = re.compile(ua_text, re.IGNORECASE)
            except re.error as e:
                errors.append(f"{where}.user_agent: {e}")
                continue
            try:
                doc = json.loads((root / ranges_file).read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                errors.append(f"{where}.ranges: {ranges_file}: {e}")
                continue
            networks, problems = load_prefixes(doc)
            errors.extend(f"{ranges_file}: {p}" for p in problems)
            source = spec.get("source")
            url = source.get("url", "") if isinstance(source, Mapping) else ""
            bots.append(GoodBot(str(name), ua_rx, CidrSet.of(str(n) for n in networks), str(url)))
        if errors:
            raise ValueError("good bot data is invalid:\n  " + "\n  ".join(errors))
        return cls(bots)

    @property
    def bots(self) -> tuple[GoodBot, ...]:
        return self._bots

    def claimed_bot(self, ua: str) -> GoodBot | None:
        """The bot this User-Agent claims to be (unverified), if any."""
        claim = self._claim(ua)
        return claim[0] if claim else None

    def _claim(self, ua: str) -> tuple[GoodBot, ...]:
        if len(ua) > MAX_UA_LENGTH:
            ua = ua[:MAX_UA_LENGTH]
        claims = self._claims
        claim = claims.get(ua)
        if claim is None:
            claim = remember(claims, ua, next(((b,) for b in self._bots if b.user_agent.search(ua)), ()),
                             _CLAIM_CACHE_SIZE)
        return claim

    def verify(self, ua: str | UserAgentClass | None, ip: str | None) -> str | None:
        """The bot's name if ``ua`` claims it and ``ip`` is in its ranges, else None."""
        if isinstance(ua, UserAgentClass):
            ua = ua.ua
        return self.verify_agent(ua, ip)

    def verify_agent(self, ua: str | None, ip: str | None) -> str | None:
        """`verify` for a User-Agent string (every request's call: no type test)."""
        if not ua or not ip:
            return None
        claim = self._claim(ua)
        if not claim:
            return None
        bot = claim[0]
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if addr.version == 6 and addr.ipv4_mapped is not None:  # ::ffff:a.b.c.d
            addr = addr.ipv4_mapped
        return bot.name if bot.ranges.contains(addr) else None

"""IP parsing, CIDR sets and client-IP resolution behind trusted proxies. Pure and fast."""
from __future__ import annotations

import ipaddress
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

MAX_FORWARDED_HOPS = 64
MAX_FORWARDED_BYTES = 8192


class MalformedRequest(ValueError):
    """A request the shield cannot reason about; it gets the policy's fail action."""


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return ip.ipv4_mapped
    return ip


def normalize_ip(text: str) -> str:
    ip = parse_ip(text)
    return str(ip) if ip is not None else text


def ip_prefix(ip: str, v4_bits: int = 24, v6_bits: int = 64) -> str:
    """`203.0.113.7` -> `203.0.113.0/24`; IPv6 -> its /64 (or configured) network."""
    addr = parse_ip(ip)
    if addr is None:
        return ip
    bits = v4_bits if addr.version == 4 else v6_bits
    return str(ipaddress.ip_network(f"{addr}/{bits}", strict=False))


@dataclass(frozen=True, slots=True)
class CidrSet:
    """A set of networks as sorted, merged integer ranges per IP version: lookup is a bisect."""

    v4_starts: tuple[int, ...]
    v4_ends: tuple[int, ...]
    v6_starts: tuple[int, ...]
    v6_ends: tuple[int, ...]
    source: tuple[str, ...]

    @classmethod
    def of(cls, cidrs: Iterable[str]) -> CidrSet:
        """Raises ValueError naming the bad entry."""
        ranges: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
        source = []
        for text in cidrs:
            try:
                net = ipaddress.ip_network(text.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{text!r} is not an IP address or CIDR network") from None
            ranges[net.version].append((int(net.network_address), int(net.broadcast_address)))
            source.append(str(net))
        merged = {v: _merge(r) for v, r in ranges.items()}
        return cls(
            tuple(s for s, _ in merged[4]), tuple(e for _, e in merged[4]),
            tuple(s for s, _ in merged[6]), tuple(e for _, e in merged[6]), tuple(source),
        )

    def contains(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        if ip is None:
            return False
        if ip.version == 4:
            starts, ends = self.v4_starts, self.v4_ends
        else:
            starts, ends = self.v6_starts, self.v6_ends
        n = int(ip)
        i = bisect_right(starts, n) - 1
        return i >= 0 and n <= ends[i]

    def __bool__(self) -> bool:
        return bool(self.v4_starts or self.v6_starts)


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


EMPTY_CIDRS = CidrSet.of(())


def resolve_client_ip(peer: str, xff: Sequence[str], forwarded: Sequence[str], trusted: CidrSet) -> str:
    """The real client address.

    Forwarding headers are believed only when the socket peer is a trusted proxy. The chain is
    walked from the right (the hop nearest to us) past trusted proxies; the first untrusted hop
    is the client. `Forwarded` (RFC 7239) is used when there is no X-Forwarded-For. Absurd
    chains raise MalformedRequest.
    """
    peer_ip = parse_ip(peer)
    if not trusted or not trusted.contains(peer_ip):
        return str(peer_ip) if peer_ip is not None else peer
    hops = _hops(xff, _xff_entries) or _hops(forwarded, _forwarded_entries)
    client = str(peer_ip)
    for hop in reversed(hops):
        addr = parse_ip(hop)
        if addr is None:
            break  # garbage left of here was written by someone we do not trust
        client = str(addr)
        if not trusted.contains(addr):
            break
    return client


def _hops(values: Sequence[str], split: Callable[[str], list[str]]) -> list[str]:
    if not values:
        return []
    if sum(len(v) for v in values) > MAX_FORWARDED_BYTES:
        raise MalformedRequest("forwarding header too large")
    hops = [h for v in values for h in split(v)]
    if len(hops) > MAX_FORWARDED_HOPS:
        raise MalformedRequest(f"forwarding chain of {len(hops)} hops")
    return hops


def _xff_entries(value: str) -> list[str]:
    return [h.strip() for h in value.split(",") if h.strip()]


def _forwarded_entries(value: str) -> list[str]:
    hops = []
    for element in value.split(","):
        for pair in element.split(";"):
            name, _, val = pair.strip().partition("=")
            if name.lower() == "for":
                val = val.strip().strip('"')
                if val.startswith("["):  # "[2001:db8::1]:4711"
                    val = val[1:].partition("]")[0]
                elif val.count(":") == 1:  # "192.0.2.43:47011"
                    val = val.partition(":")[0]
                hops.append(val)
    return hops

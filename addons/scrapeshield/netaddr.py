"""IP parsing, CIDR sets and client-IP resolution behind trusted proxies. Pure and fast."""
from __future__ import annotations

import ipaddress
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from .memo import remember

# How much of a forwarding chain is read, from the right. Real chains have a handful of hops.
MAX_FORWARDED_HOPS = 64
MAX_FORWARDED_BYTES = 8192
_MAX_HOP_CHARS = 64  # "[ffff:...:ffff%zone]:65535" fits; anything longer is not an address


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address `text` spells, in one spelling per address: an IPv4-mapped IPv6 address is its
    IPv4 address, and an IPv6 zone index (`fe80::1%eth0`, `::%x`) is dropped -- it names the
    interface the address was seen on, not another client. Kept, a zone would make one address
    many keys (`ip`, `prefix`) for a client that can write the hop its address is read from."""
    if len(text) > _MAX_HOP_CHARS:
        return None
    try:
        ip = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return ip.ipv4_mapped
        if ip.scope_id is not None:
            return ipaddress.IPv6Address(ip.packed)
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


# ip_prefix() goes through the ipaddress module (~10 us); clients come back, so the hot path asks
# this memo of the same pure function: client address -> (v4 bits, v6 bits, its prefix). Bounded
# (emptied when full; longer strings than an address are never kept). A dict lookup by the address
# alone costs a fraction of an lru_cache call with three arguments.
_PREFIXES: dict[str, tuple[int, int, str]] = {}
_MAX_PREFIXES = 16384
_MAX_ADDRESS = 64


def cached_ip_prefix(ip: str, v4: int, v6: int) -> str:
    """`ip_prefix`, remembered per client address."""
    found = _PREFIXES.get(ip)
    if found is not None and found[0] == v4 and found[1] == v6:
        return found[2]
    prefix = ip_prefix(ip, v4, v6)
    if len(ip) <= _MAX_ADDRESS:
        remember(_PREFIXES, ip, (v4, v6, prefix), _MAX_PREFIXES)
    return prefix


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
    """The real client address. Total: any header value resolves to an address, never an error.

    Forwarding headers are believed only when the socket peer is a trusted proxy. The chain is
    walked from the right (the hop nearest to us) past trusted proxies; the first untrusted hop
    is the client. `Forwarded` (RFC 7239) is used when there is no X-Forwarded-For.

    Everything left of the hops our own proxies appended was written by the client, so an over-long
    or garbled chain is the client's problem, not ours: the walk reads at most the right-most
    MAX_FORWARDED_BYTES bytes and MAX_FORWARDED_HOPS hops, and stops at the first entry that is not
    an address. Where it stops without meeting an untrusted address, the client is the last
    address it did read (the peer when there is none). A client can therefore never make itself
    "unresolvable"; it can only name a trusted-range address when its real address is trusted.
    """
    peer_ip = parse_ip(peer)
    if not trusted or not trusted.contains(peer_ip):
        return str(peer_ip) if peer_ip is not None else peer
    entries = _xff_entries_from_right(xff) if xff else _forwarded_entries_from_right(forwarded)
    client = peer_ip
    for hops, entry in enumerate(entries):
        if hops >= MAX_FORWARDED_HOPS:
            break
        addr = _hop_address(entry)
        if addr is None:
            break  # garbage left of here was written by someone we do not trust
        client = addr
        if not trusted.contains(addr):
            break
    return str(client)


def _tails_from_right(values: Sequence[str], sep: str) -> Iterator[str]:
    """The `sep`-separated entries of the header values, right-most first, non-empty, stripped,
    reading no more than MAX_FORWARDED_BYTES from the right (a cut entry is dropped, not guessed)."""
    budget = MAX_FORWARDED_BYTES
    for value in reversed(values):
        cut = len(value) > budget
        tail = value[len(value) - budget:] if cut else value
        budget -= len(tail)
        pieces = tail.split(sep)
        if cut:
            pieces = pieces[1:]  # the left-most piece may be half an entry
        for piece in reversed(pieces):
            piece = piece.strip()
            if piece:
                yield piece
        if budget <= 0 or cut:
            return


def _xff_entries_from_right(values: Sequence[str]) -> Iterator[str]:
    return _tails_from_right(values, ",")


def _forwarded_entries_from_right(values: Sequence[str]) -> Iterator[str]:
    """The `for=` value of each RFC 7239 element, right-most first ("" for an element without one:
    that stops the walk, like any entry that is not an address)."""
    for element in _tails_from_right(values, ","):
        value = ""
        for pair in element.split(";", 8):
            name, _, val = pair.strip().partition("=")
            if name.lower() == "for":
                value = val.strip().strip('"')
                break
        yield value


def _hop_address(entry: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address from one hop: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]:4711`."""
    if len(entry) > _MAX_HOP_CHARS:
        return None
    if entry.startswith("["):
        entry = entry[1:].partition("]")[0]
    elif entry.count(":") == 1:
        entry = entry.partition(":")[0]
    return parse_ip(entry)

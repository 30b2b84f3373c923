"""Client keys: what a bucket, ban or score counts by. Parts compose with `+`.

`ip` is the resolved client address, `prefix` its /24 (IPv4) or /64 (IPv6) network, `header:NAME`
and `cookie:NAME` a request value, `host` the requested host. Fingerprint parts (`ja3`, `ja4`,
`httpsig`, `ua_class`) are registered by `scrapeshield.fingerprint.policy`. A key function reads
a `DecisionContext`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..memo import remember
from ..netaddr import cached_ip_prefix
from .model import KeyFunc, KeySpec
from .registry import KeyContext, KeyPart

if TYPE_CHECKING:
    from ..context import DecisionContext
    from ..fingerprint import ClientFingerprint
    from .registry import Registry

__all__ = ["KeyContext", "build_key", "register"]


def _ip(arg: str, ctx: KeyContext) -> KeyFunc:
    return lambda c: c.facts.client_ip


def _prefix(arg: str, ctx: KeyContext) -> KeyFunc:
    v4, v6 = ctx.ipv4_prefix, ctx.ipv6_prefix
    return lambda c: cached_ip_prefix(c.facts.client_ip, v4, v6)


def _header(arg: str, ctx: KeyContext) -> KeyFunc:
    lname = arg.lower()
    return lambda c: c.facts.header_map.get(lname, "-")[:256]


def _cookie(arg: str, ctx: KeyContext) -> KeyFunc:
    return lambda c: c.facts.cookies.get(arg, "-")[:256]


def _host(arg: str, ctx: KeyContext) -> KeyFunc:
    return lambda c: c.facts.host.lower()


def register(registry: Registry) -> None:
    """The built-in key parts."""
    registry.add_key_part("ip", _ip)
    registry.add_key_part("prefix", _prefix)
    registry.add_key_part("header", _header, needs_argument=True)
    registry.add_key_part("cookie", _cookie, needs_argument=True)
    registry.add_key_part("host", _host)


def build_key(parts: tuple[str, ...], ctx: KeyContext, known: Mapping[str, KeyPart]) -> KeySpec:
    """Parts must already be validated against `known` (the registry's key parts)."""
    funcs = []
    for part in parts:
        kind, _, arg = part.partition(":")
        funcs.append(known[kind].factory(arg, ctx))
    label = tuple(p + "=" for p in parts)
    if len(funcs) == 1:
        (fn,), (lab,) = funcs, label

        def key(c: DecisionContext) -> str:
            return lab + fn(c)
    elif len(funcs) == 2:
        (fn0, fn1), (lab0, lab1) = funcs, label

        def key(c: DecisionContext) -> str:  # the same string as the join below
            return lab0 + fn0(c) + "|" + lab1 + fn1(c)
    elif len(funcs) == 3:
        (fn0, fn1, fn2), (lab0, lab1, lab2) = funcs, label

        def key(c: DecisionContext) -> str:  # the same string as the join below
            return lab0 + fn0(c) + "|" + lab1 + fn1(c) + "|" + lab2 + fn2(c)
    else:
        pairs = tuple(zip(label, funcs, strict=False))

        def key(c: DecisionContext) -> str:
            return "|".join(lab + fn(c) for lab, fn in pairs)
    if all(known[part.partition(":")[0]].per_fingerprint for part in parts):
        return KeySpec(parts, _per_fingerprint(key))
    return KeySpec(parts, key)


_PER_FINGERPRINT_MAX = 8192  # fingerprints whose key a key spec remembers (emptied when full)


def _per_fingerprint(compute: KeyFunc) -> KeyFunc:
    """`compute`, remembered per fingerprint object: a client's fingerprint is one object request
    after request (the fingerprint memo), so e.g. the `stack` key costs a lookup instead of its
    parts' calls and joins, and is one string whose hash the store computes once. Keyed by
    identity, the object held in the entry so its id cannot be reused while remembered."""
    memo: dict[int, tuple[ClientFingerprint, str]] = {}

    def key(c: DecisionContext) -> str:
        fp = c.fingerprint
        found = memo.get(id(fp))
        if found is not None and found[0] is fp:
            return found[1]
        value = compute(c)
        remember(memo, id(fp), (fp, value), _PER_FINGERPRINT_MAX)
        return value
    return key

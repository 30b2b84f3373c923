"""Client keys: what a bucket, ban or score counts by. Parts compose with `+`.

`ip` is the resolved client address, `prefix` its /24 (IPv4) or /64 (IPv6) network, `header:NAME`
and `cookie:NAME` a request value, `host` the requested host. Fingerprint parts (`ja3`, `ja4`,
`httpsig`, `ua_class`) are registered by `scrapeshield.fingerprint.policy`.
"""
from __future__ import annotations

from typing import Callable

from ..facts import RequestFacts
from ..netaddr import ip_prefix
from .model import KeyFunc, KeySpec

PartFactory = Callable[[str, "KeyContext"], KeyFunc]
KEY_PARTS: dict[str, PartFactory] = {}  # "header" covers "header:NAME"


class KeyContext:
    def __init__(self, ipv4_prefix: int, ipv6_prefix: int) -> None:
        self.ipv4_prefix = ipv4_prefix
        self.ipv6_prefix = ipv6_prefix


def key_part(name: str) -> Callable[[PartFactory], PartFactory]:
    def register(fn: PartFactory) -> PartFactory:
        KEY_PARTS[name] = fn
        return fn
    return register


@key_part("ip")
def _ip(arg: str, ctx: KeyContext) -> KeyFunc:
    return lambda f: f.client_ip


_PREFIX_MEMO_MAX = 16384


@key_part("prefix")
def _prefix(arg: str, ctx: KeyContext) -> KeyFunc:
    v4, v6 = ctx.ipv4_prefix, ctx.ipv6_prefix
    # ip_prefix() goes through the ipaddress module (~10 us); clients come back, so remember the
    # answers (a pure function of the address), boundedly.
    memo: dict[str, str] = {}

    def prefix(f: RequestFacts) -> str:
        ip = f.client_ip
        value = memo.get(ip)
        if value is None:
            value = ip_prefix(ip, v4, v6)
            if len(memo) >= _PREFIX_MEMO_MAX:
                memo.clear()
            memo[ip] = value
        return value
    return prefix


@key_part("header")
def _header(arg: str, ctx: KeyContext) -> KeyFunc:
    lname = arg.lower()
    return lambda f: f.header_map.get(lname, "-")[:256]


@key_part("cookie")
def _cookie(arg: str, ctx: KeyContext) -> KeyFunc:
    return lambda f: f.cookies.get(arg, "-")[:256]


@key_part("host")
def _host(arg: str, ctx: KeyContext) -> KeyFunc:
    return lambda f: f.host.lower()


def needs_argument(part: str) -> bool:
    return part in ("header", "cookie")


def build_key(parts: tuple[str, ...], ctx: KeyContext) -> KeySpec:
    """Parts must already be validated against KEY_PARTS."""
    funcs = []
    for part in parts:
        kind, _, arg = part.partition(":")
        funcs.append(KEY_PARTS[kind](arg, ctx))
    label = tuple(p + "=" for p in parts)
    if len(funcs) == 1:
        (fn,), (lab,) = funcs, label

        def key(f: RequestFacts) -> str:
            return lab + fn(f)
    elif len(funcs) == 2:
        (fn0, fn1), (lab0, lab1) = funcs, label

        def key(f: RequestFacts) -> str:  # the same string as the join below
            return lab0 + fn0(f) + "|" + lab1 + fn1(f)
    elif len(funcs) == 3:
        (fn0, fn1, fn2), (lab0, lab1, lab2) = funcs, label

        def key(f: RequestFacts) -> str:  # the same string as the join below
            return lab0 + fn0(f) + "|" + lab1 + fn1(f) + "|" + lab2 + fn2(f)
    else:
        pairs = tuple(zip(label, funcs))

        def key(f: RequestFacts) -> str:
            return "|".join(lab + fn(f) for lab, fn in pairs)
    return KeySpec(parts, key)

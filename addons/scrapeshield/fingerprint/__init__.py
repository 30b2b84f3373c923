"""Client fingerprints: what a client is, judged from its TLS handshake, its HTTP header
stack and its User-Agent, and where those disagree.

Pure: imports nothing from mitmproxy. Two entry points, one per event:

- per connection: ``fingerprint_client_hello(body)`` -> ``TlsFingerprint`` (JA3, JA4,
  ALPN offer, SNI, TLS stack family). Cache it on the connection.
- per request: ``fingerprint_request(...)`` -> ``ClientFingerprint`` bundling the TLS
  fingerprint, the ``HttpSignature``, the ``UserAgentClass``, consistency signals and
  the verified good bot, if any. ``ClientFingerprint.field(name)`` gives the string the
  policy matches or builds bucket keys from (``key: [ja4, httpsig]``).

docs/fingerprints.md describes every field and signal and its false-positive risks.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from scrapeshield.fingerprint.consistency import SIGNALS, consistency_signals
from scrapeshield.fingerprint.goodbots import GoodBotRegistry
from scrapeshield.fingerprint.httpsig import HttpSignature, http_signature
from scrapeshield.fingerprint.ja4 import session_ja4
from scrapeshield.fingerprint.tls import (
    TLS_FAMILIES,
    ClientHelloInfo,
    TlsFingerprint,
    fingerprint_client_hello,
    parse_client_hello,
    tls_family,
)
from scrapeshield.fingerprint.useragent import UA_KINDS, UserAgentClass, classify_user_agent

__all__ = [
    "FIELDS",
    "SIGNALS",
    "TLS_FAMILIES",
    "UA_KINDS",
    "ClientFingerprint",
    "ClientHelloInfo",
    "GoodBotRegistry",
    "HttpSignature",
    "TlsFingerprint",
    "UserAgentClass",
    "classify_user_agent",
    "consistency_signals",
    "field_getter",
    "fingerprint_client_hello",
    "fingerprint_fields",
    "fingerprint_request",
    "http_signature",
    "parse_client_hello",
    "tls_family",
]

NO_VALUE = "-"  # what a field reads as when it does not apply (e.g. ja4 over plain HTTP)


@dataclass(frozen=True, slots=True)
class ClientFingerprint:
    tls: TlsFingerprint | None
    http: HttpSignature
    ua: UserAgentClass
    signals: frozenset[str]
    good_bot: str | None
    # What a session is issued to (session/stage.py): the part of the JA4 one browser keeps across
    # its full and resumed handshakes (`session_ja4`) and the UA class. Derived, kept with the rest
    # so a remembered fingerprint hands it over without string work.
    stack: str

    def field(self, name: str) -> str:
        """The named field as a string (see ``FIELDS``); raises KeyError for unknown names."""
        return _FIELD_GETTERS[name](self)


def _tls(get: Callable[[TlsFingerprint], str | None]) -> Callable[[ClientFingerprint], str]:
    def read(fp: ClientFingerprint) -> str:
        return NO_VALUE if fp.tls is None else (get(fp.tls) or NO_VALUE)

    return read


_FIELD_GETTERS: dict[str, Callable[[ClientFingerprint], str]] = {
    "ja3": _tls(lambda t: t.ja3_hash),
    "ja3_string": _tls(lambda t: t.ja3),
    "ja4": _tls(lambda t: t.ja4),
    "ja4_r": _tls(lambda t: t.ja4_r),
    "tls_family": _tls(lambda t: t.tls_family),
    "alpn_offered": _tls(lambda t: ",".join(t.alpn_offered)),
    "sni": _tls(lambda t: t.sni),
    "httpsig": lambda fp: fp.http.compact,
    "httpsig_hash": lambda fp: fp.http.hash,
    "http_version": lambda fp: fp.http.http_version,
    "ua_class": lambda fp: fp.ua.kind,
    "ua_family": lambda fp: fp.ua.family or NO_VALUE,
    "ua_major": lambda fp: NO_VALUE if fp.ua.major is None else str(fp.ua.major),
    "crawler": lambda fp: fp.ua.crawler or NO_VALUE,
    "good_bot": lambda fp: fp.good_bot or NO_VALUE,
}
FIELDS: frozenset[str] = frozenset(_FIELD_GETTERS)


def field_getter(name: str) -> Callable[[ClientFingerprint], str]:
    """What `ClientFingerprint.field(name)` calls (KeyError for unknown names): a key part binds
    it once, at compile time, instead of looking it up on every request."""
    return _FIELD_GETTERS[name]


# A client sends the same header names, User-Agent and handshake on every request: the whole
# fingerprint is remembered by what it is computed from. Looked up by the User-Agent, the values
# of the two headers read besides it and the number of header fields (a dictionary lookup), then
# compared in full with the few variants under that (header order, HTTP version, ALPN, TLS).
# Bounded: at most _MEMO_MAX fingerprints (all forgotten when full) and _MEMO_MAX_VARIANTS under
# one lookup key (the oldest forgotten), so a client rotating User-Agents or header orders costs a
# miss each, never memory.
_MEMO_MAX = 8192
_MEMO_MAX_VARIANTS = 8
_MEMO_MAX_NAMES = 64
_MEMO_MAX_UA = 512

# (User-Agent, sec-fetch-mode, whether accept names text/html, number of header fields)
_MemoKey = tuple[str | None, str | None, bool, int]


class _Remembered:
    """A fingerprint and, besides its `_MemoKey`, what it was computed from: everything `_fingerprint`
    reads (see `consistency_signals`: besides the names and the UA, only `sec-fetch-mode` and
    whether `accept` names text/html)."""

    __slots__ = ("alpn", "fingerprint", "http_version", "is_tls", "names", "tls")

    def __init__(self, names: tuple[str, ...], http_version: str, alpn: str | None, is_tls: bool,
                 tls: TlsFingerprint | None, fingerprint: ClientFingerprint) -> None:
        self.names = names
        self.http_version = http_version
        self.alpn = alpn
        self.is_tls = is_tls
        self.tls = tls
        self.fingerprint = fingerprint

    def made_of(self, http_version: str, alpn: str | None, is_tls: bool, tls: TlsFingerprint | None) -> bool:
        """Whether it was computed from these (its key and names apart). A connection's TLS
        fingerprint is one object for all its requests: compared by value only for another
        connection's."""
        mine = self.tls
        return (self.is_tls == is_tls and self.http_version == http_version and self.alpn == alpn
                and (mine is tls or (mine is not None and tls is not None and mine == tls)))


class _FingerprintMemo:
    __slots__ = ("by_key", "size")

    def __init__(self) -> None:
        self.by_key: dict[_MemoKey, list[_Remembered]] = {}
        self.size = 0

    def add(self, key: _MemoKey, entry: _Remembered) -> None:
        if self.size >= _MEMO_MAX:
            self.clear()
        variants = self.by_key.get(key)
        if variants is None:
            variants = self.by_key[key] = []
        elif len(variants) >= _MEMO_MAX_VARIANTS:
            del variants[0]
            self.size -= 1
        variants.append(entry)
        self.size += 1

    def clear(self) -> None:
        self.by_key.clear()
        self.size = 0

    def __len__(self) -> int:
        return self.size


_MEMO = _FingerprintMemo()


def fingerprint_fields(
    fields: Sequence[tuple[str, str]],
    headers: dict[str, str],
    *,
    http_version: str,
    alpn: str | None,
    is_tls: bool,
    tls: TlsFingerprint | None = None,
) -> ClientFingerprint:
    """`fingerprint_request` of a request's header fields as sent: ``fields`` the (name, value)
    pairs in wire order, ``headers`` the same by lowercase name (`RequestFacts.header_map`). A
    remembered fingerprint's names are compared with the fields' in place: a request from a
    client seen before builds no tuple of its names."""
    user_agent = headers.get("user-agent")
    if len(fields) > _MEMO_MAX_NAMES or (user_agent is not None and len(user_agent) > _MEMO_MAX_UA):
        names = tuple([name for name, _ in fields])
        return _fingerprint(names, headers, http_version, alpn, is_tls, tls, user_agent, None, None)
    key = _memo_key(user_agent, headers, len(fields))
    variants = _MEMO.by_key.get(key)
    if variants is not None:
        for entry in variants:
            if entry.made_of(http_version, alpn, is_tls, tls) and _same_names(entry.names, fields):
                return entry.fingerprint
    names = tuple([name for name, _ in fields])
    fp = _fingerprint(names, headers, http_version, alpn, is_tls, tls, user_agent, None, None)
    _MEMO.add(key, _Remembered(names, http_version, alpn, is_tls, tls, fp))
    return fp


def _memo_key(user_agent: str | None, headers: Mapping[str, str], count: int) -> _MemoKey:
    accept = headers.get("accept")
    return user_agent, headers.get("sec-fetch-mode"), accept is not None and "text/html" in accept, count


# Compiled (mypyc), this module's `__file__` is the extension module's, not its source.
_COMPILED: Final = not __file__.endswith(".py")


def _same_names(names: tuple[str, ...], fields: Sequence[tuple[str, str]]) -> bool:
    """Whether the fields' names are `names` (as many, and in this order). Compiled, a loop over
    the fields (~0.2 us for 14 headers; a tuple of their names and its comparison take twice
    that); interpreted, the loop costs 0.8 us and the tuple, built and compared in C, 0.4 us."""
    if len(names) != len(fields):
        return False
    if _COMPILED:
        return all(field[0] == names[i] for i, field in enumerate(fields))
    return names == tuple([name for name, _ in fields])


def fingerprint_request(
    header_names: Sequence[str],
    headers: Mapping[str, str],
    *,
    http_version: str,
    alpn: str | None,
    is_tls: bool,
    tls: TlsFingerprint | None = None,
    client_ip: str | None = None,
    goodbots: GoodBotRegistry | None = None,
) -> ClientFingerprint:
    """Fingerprint one request.

    ``header_names``: header names in wire order, original case. ``headers``: the same
    headers looked up by lowercase name (mitmproxy's ``Headers`` is fine). ``alpn``: the
    negotiated ALPN. ``tls``: the connection's ``TlsFingerprint``, if it was TLS and the
    ClientHello parsed. Good bots are verified only when a registry and an IP are given.
    """
    user_agent = headers.get("user-agent")
    if goodbots is not None or len(header_names) > _MEMO_MAX_NAMES or \
            (user_agent is not None and len(user_agent) > _MEMO_MAX_UA):
        return _fingerprint(header_names, headers, http_version, alpn, is_tls, tls, user_agent, client_ip, goodbots)
    names = header_names if isinstance(header_names, tuple) else tuple(header_names)
    key = _memo_key(user_agent, headers, len(names))
    variants = _MEMO.by_key.get(key)
    if variants is not None:
        for entry in variants:
            if entry.made_of(http_version, alpn, is_tls, tls) and entry.names == names:
                return entry.fingerprint
    fp = _fingerprint(names, headers, http_version, alpn, is_tls, tls, user_agent, None, None)
    _MEMO.add(key, _Remembered(names, http_version, alpn, is_tls, tls, fp))
    return fp


def _fingerprint(header_names: Sequence[str], headers: Mapping[str, str], http_version: str, alpn: str | None,
                 is_tls: bool, tls: TlsFingerprint | None, user_agent: str | None, client_ip: str | None,
                 goodbots: GoodBotRegistry | None) -> ClientFingerprint:
    http = http_signature(header_names, http_version, alpn)
    ua = classify_user_agent(user_agent)
    signals = consistency_signals(ua, tls, headers, is_tls, http)
    good_bot = goodbots.verify(user_agent, client_ip) if goodbots is not None else None
    stack = session_ja4(tls.ja4 if tls is not None and tls.ja4 else NO_VALUE) + "|" + ua.kind
    return ClientFingerprint(tls, http, ua, signals, good_bot, stack)

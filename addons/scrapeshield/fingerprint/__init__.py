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

from scrapeshield.fingerprint.consistency import SIGNALS, consistency_signals
from scrapeshield.fingerprint.goodbots import GoodBotRegistry
from scrapeshield.fingerprint.httpsig import HttpSignature, http_signature
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
    "fingerprint_client_hello",
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


# A client sends the same header names, User-Agent and handshake on every request: the whole
# fingerprint is remembered by what it is computed from (bounded; emptied when full, so a client
# rotating User-Agents costs a miss each, never memory).
_MEMO: dict[tuple[object, ...], ClientFingerprint] = {}
_MEMO_MAX = 8192
_MEMO_MAX_NAMES = 64
_MEMO_MAX_UA = 512


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
    # Everything the fingerprint reads (see `consistency_signals`: besides the names and the UA, only
    # `sec-fetch-mode` and whether `accept` names text/html).
    key = (names, user_agent, headers.get("sec-fetch-mode"), "text/html" in headers.get("accept", ""),
           http_version, alpn, is_tls, tls)
    fp = _MEMO.get(key)
    if fp is None:
        fp = _fingerprint(names, headers, http_version, alpn, is_tls, tls, user_agent, None, None)
        if len(_MEMO) >= _MEMO_MAX:
            _MEMO.clear()
        _MEMO[key] = fp
    return fp


def _fingerprint(header_names: Sequence[str], headers: Mapping[str, str], http_version: str, alpn: str | None,
                 is_tls: bool, tls: TlsFingerprint | None, user_agent: str | None, client_ip: str | None,
                 goodbots: GoodBotRegistry | None) -> ClientFingerprint:
    http = http_signature(header_names, http_version, alpn)
    ua = classify_user_agent(user_agent)
    signals = consistency_signals(ua, tls, headers, is_tls, http)
    good_bot = goodbots.verify(user_agent, client_ip) if goodbots is not None else None
    return ClientFingerprint(tls, http, ua, signals, good_bot)

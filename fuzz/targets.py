"""Fuzz targets: what must hold for ANY input to the parts that read client or operator input.

Each target has a structured form (`check_*`, called by the hypothesis tests in tests/fuzz/) and a
bytes form (`TARGETS[name]`, called by the atheris harness `fuzz/run.py` and by the corpus replay
test). A target returns normally when the property holds and raises AssertionError (or whatever
escaped) when it does not. The properties:

- policy:     compiling never raises anything but PolicyInvalid, and every error says file:line:col;
- forwarding: client-IP resolution is total, bounded and yields the peer or an address in the chain;
- path:       canonical paths are total, idempotent, start with `/` (or are `*`), never longer;
- cookie:     cookie parsing is total and bounded in the number of cookies it returns;
- token:      unsealing is total, a session cookie decodes and reads for any value, and strict base64
              decoding accepts only what encoding writes;
- http:       any method, path, header list and body through the mitmproxy adapter and the engine
              yields a decision that is not the fail mode: client input never switches enforcement off;
- tls:        fingerprinting a ClientHello is total: JA3/JA4 of their published shapes, or ValueError;
- accesslog:  reading access-log lines is total: each line is a record of sane types (a finite time,
              facts the engine can take) or None, in every format -- never an exception.
"""
from __future__ import annotations

import asyncio
import math
import os
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "addons") not in sys.path:
    sys.path.insert(0, str(ROOT / "addons"))

from mitmproxy import http  # noqa: E402
from mitmproxy.test import tflow  # noqa: E402

from scrapeshield.challenge.binding import ClientBinding  # noqa: E402
from scrapeshield.challenge.clearance import cookie_values, verify_cookie  # noqa: E402
from scrapeshield.challenge.keys import KeyRing  # noqa: E402
from scrapeshield.challenge.tokens import b64d, b64e, unseal  # noqa: E402
from scrapeshield.decision import Action  # noqa: E402
from scrapeshield.facts import MAX_COOKIES, parse_cookie_header  # noqa: E402
from scrapeshield.fingerprint.tls import TLS_FAMILIES, fingerprint_client_hello  # noqa: E402
from scrapeshield.netaddr import CidrSet, parse_ip, resolve_client_ip  # noqa: E402
from scrapeshield.policy.compiler import compile_bytes  # noqa: E402
from scrapeshield.policy.errors import PolicyInvalid  # noqa: E402
from scrapeshield.replay.accesslog import FORMATS, PARSERS, facts_from_record, parse_line  # noqa: E402
from scrapeshield.session import cookie as session_cookie  # noqa: E402
from scrapeshield.urlpath import canonical_path  # noqa: E402

# In the shipped policies' folder, so their relative references (goodbots, ip_lists files) resolve.
POLICY_NAME = str(ROOT / "policies" / "fuzz.yaml")
_ERROR = re.compile(re.escape(POLICY_NAME) + r":([1-9]\d*):([1-9]\d*): \S", re.DOTALL)


# -- policy compiler ----------------------------------------------------------------------------
def check_policy(data: bytes) -> None:
    try:
        compile_bytes(data, POLICY_NAME)
    except PolicyInvalid as exc:
        assert exc.errors, "PolicyInvalid without errors"
        for error in exc.errors:
            assert _ERROR.match(str(error)), f"error without file:line:col: {error}"


# -- forwarding chain ---------------------------------------------------------------------------
TRUSTED = CidrSet.of(["10.0.0.0/8", "2001:db8:ffff::/48", "127.0.0.0/8"])


def check_forwarding(peer: str, xff: Sequence[str], forwarded: Sequence[str]) -> None:
    client = resolve_client_ip(peer, xff, forwarded, TRUSTED)
    peer_ip = parse_ip(peer)
    if peer_ip is None or not TRUSTED.contains(peer_ip):
        assert client == (str(peer_ip) if peer_ip is not None else peer)
        return
    ip = parse_ip(client)
    assert ip is not None, f"resolved to a non-address {client!r}"
    assert client == str(peer_ip) or client in " ".join([*xff, *forwarded]) or _spelled_in(ip, xff, forwarded)


def _spelled_in(ip: object, xff: Sequence[str], forwarded: Sequence[str]) -> bool:
    """An address may be spelled differently in the chain (`::ffff:1.2.3.4`, upper-case IPv6)."""
    text = " ".join([*xff, *forwarded]).replace("[", " ").replace("]", " ")
    for word in re.split(r"[\s,;=\"]+", text):
        for candidate in (word, word.rpartition(":")[0], word.partition("%")[0]):  # a zone is dropped
            if candidate and parse_ip(candidate) == ip:
                return True
    return False


def _forwarding_bytes(data: bytes) -> None:
    text = data.decode("latin-1")
    peer, _, rest = text.partition("\n")
    xff_text, _, fwd_text = rest.partition("\n\n")
    check_forwarding(peer or "10.0.0.1", xff_text.split("\n") if xff_text else [],
                     fwd_text.split("\n") if fwd_text else [])


# -- paths ---------------------------------------------------------------------------------------
def check_path(raw: str) -> None:
    once = canonical_path(raw)
    assert canonical_path(once) == once, f"not idempotent: {raw!r} -> {once!r} -> {canonical_path(once)!r}"
    assert once == "*" or once.startswith("/")
    assert "//" not in once and "/./" not in once and "/../" not in once
    assert len(once) <= 3 * len(raw) + 1  # a lone `%` becomes `%25`; otherwise never longer


# -- cookies -------------------------------------------------------------------------------------
def check_cookie_header(raw: str) -> None:
    cookies = parse_cookie_header(raw)
    assert len(cookies) <= MAX_COOKIES
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in cookies.items())
    assert len(cookie_values(raw, "shield_clearance")) <= 4


# -- tokens --------------------------------------------------------------------------------------
KEYS = KeyRing.from_lines(["5a" * 32])
BINDING = ClientBinding.of("192.0.2.1", "fuzz")
_REASONS = {"malformed", "bad_signature"}
_COOKIE_REASONS = {"ok", "missing", "malformed", "bad_signature", "expired", "wrong_ua", "wrong_client", "wrong_rule"}


def check_token(text: str) -> None:
    for kind in ("clearance", "pow", "wait"):
        result = unseal(KEYS, kind, text)
        assert isinstance(result, list) or result in _REASONS
    assert verify_cookie(KEYS, text, BINDING, "rule", 0.0).reason in _COOKIE_REASONS
    check_session_cookie(text)
    try:
        data = b64d(text)
    except ValueError:
        return
    assert b64e(data) == text, f"non-canonical base64 accepted: {text!r}"


def check_session_cookie(value: str) -> None:
    """A session cookie value decodes to a session or a reason, and a Cookie header carrying it
    reads as a presented session (or none) -- for any value, genuine payloads of any shape included."""
    decoded = session_cookie.decode(KEYS, value)
    assert isinstance(decoded, session_cookie.SessionCookie) or decoded in _REASONS, decoded
    presented = session_cookie.read(KEYS, f"a=1; {session_cookie.COOKIE_NAME}={value}", "t13d|browser", 1e9, 3600.0)
    assert presented.cookie is None or isinstance(presented.cookie, session_cookie.SessionCookie)


# -- the HTTP adapter and the engine ------------------------------------------------------------
ADAPTER_POLICY = textwrap.dedent("""
    version: 1
    fail: open
    trusted_proxies: [10.0.0.0/8]
    rules:
      - {name: deny, match: {path: /admin/*}, action: block}
      - {name: bots, match: {user_agent: '(?i)bot|spider'}, action: challenge}
      - {name: api-key, match: {header: {x-api-key: '^k-'}}, key: header:x-api-key, limits: "5/s burst 5"}
      - {name: records, match: {path: [/user/*, /api/users/*]}, limits: "2/s burst 10", exceed: block, ban: 10m}
      - {name: session, key: cookie:sid, limits: "50/s burst 100"}
      - {name: raw, match: {raw_path_regex: '%2[eE]'}, action: log}
    scores:
      - {name: abuse, weights: {navigation_without_accept_language: 1}, thresholds: [{at: 1000, action: block}]}
""")


class AdapterHarness:
    """The real ShieldAddon and ShieldRuntime (memory store, no admin port) inside mitmproxy's
    test context, driven one flow at a time on one event loop."""

    def __init__(self, workdir: str) -> None:
        from mitmproxy.test import taddons

        from scrapeshield.mitm.addon import ShieldAddon
        from scrapeshield.runtime import RuntimeConfig, ShieldRuntime

        policy = Path(workdir) / "adapter.yaml"
        policy.write_text(ADAPTER_POLICY)
        default = ROOT / "policies" / "default.yaml"
        self.runtimes = [
            ShieldRuntime(RuntimeConfig(str(path), admin="", decision_log=os.devnull, reload_interval=0))
            for path in (policy, default)
        ]
        self.addons = [ShieldAddon(rt) for rt in self.runtimes]
        self.loop = asyncio.new_event_loop()
        self._context = taddons.context(self.addons[0])  # one per class; the hooks need no more
        self._context.__enter__()

    def close(self) -> None:
        self._context.__exit__(None, None, None)
        self.loop.close()

    def check(self, method: str, path: str, headers: Sequence[tuple[bytes, bytes]], body: bytes,
              peer: str = "203.0.113.7") -> None:
        for addon, runtime in zip(self.addons, self.runtimes, strict=True):
            flow = tflow.tflow()
            flow.client_conn.peername = (peer, 40000)
            try:
                flow.request.method = method
                flow.request.path = path
                flow.request.headers = http.Headers(list(headers))
                flow.request.content = body
            except (ValueError, UnicodeError):
                return  # mitmproxy itself cannot represent it: no such request reaches the addon
            errors_before = runtime.engine.errors
            self.loop.run_until_complete(self._drive(addon, flow))
            decided = flow.metadata.get("scrapeshield")
            if decided is not None:  # None: a reserved endpoint, answered in `request`
                assert decided["rule"] != "error", f"client input took the fail mode: {decided}"
                assert decided["action"] in {a.value for a in Action}
            else:
                assert flow.response is not None or flow.metadata.get("scrapeshield_reserved")
            assert runtime.engine.errors == errors_before, "the engine counted an internal error"

    @staticmethod
    async def _drive(addon: object, flow: http.HTTPFlow) -> None:
        await addon.requestheaders(flow)  # type: ignore[attr-defined]
        if flow.live and flow.error is None:
            await addon.request(flow)  # type: ignore[attr-defined]
        if flow.live and flow.error is None and flow.response is None:
            flow.response = http.Response.make(200, b"<html><a href='/user/1'>x</a></html>",
                                               {"Content-Type": "text/html"})
            addon.response(flow)  # type: ignore[attr-defined]


_HARNESS: AdapterHarness | None = None


def adapter() -> AdapterHarness:
    global _HARNESS
    if _HARNESS is None:
        import tempfile

        _HARNESS = AdapterHarness(tempfile.mkdtemp(prefix="scrapeshield-fuzz-"))
    return _HARNESS


def http_from_bytes(data: bytes) -> tuple[str, str, list[tuple[bytes, bytes]], bytes]:
    """`METHOD\\nPATH\\nName: value\\n...\\n\\nBODY`: readable corpus files, any bytes accepted."""
    head, _, body = data.partition(b"\n\n")
    lines = head.split(b"\n")
    method = lines[0].decode("latin-1")[:32] or "GET"
    path = lines[1].decode("latin-1") if len(lines) > 1 else "/"
    headers = []
    for line in lines[2:]:
        name, _, value = line.partition(b":")
        headers.append((name, value.lstrip(b" ")))
    return method, path, headers, body


def _http_bytes(data: bytes) -> None:
    method, path, headers, body = http_from_bytes(data)
    adapter().check(method, path, headers, body)


# -- TLS ClientHello ----------------------------------------------------------------------------
# JA3: version,ciphers,extensions,curves,point formats (decimal, `-`-joined, a list may be empty).
_JA3 = re.compile(r"\d+(?:,(?:\d+(?:-\d+)*)?){4}")
# JA4 (FoxIO spec): transport, version, SNI, two 2-digit counts, two ALPN characters, two hashes.
_JA4 = re.compile(r"[tqd](?:1[0-3]|s[23]|d[1-3]|00)[di]\d{4}[0-9A-Za-z]{2}_[0-9a-f]{12}_[0-9a-f]{12}")
_HEX32 = re.compile(r"[0-9a-f]{32}")


def check_client_hello(body: bytes) -> None:
    """A ClientHello body (from legacy_version on) gives a fingerprint of the published shapes --
    over TCP and as QUIC would carry it -- or ValueError; nothing else escapes."""
    for quic in (False, True):
        try:
            fp = fingerprint_client_hello(body, quic=quic)
        except ValueError:
            return
        assert _JA3.fullmatch(fp.ja3), f"ja3 {fp.ja3!r}"
        assert _HEX32.fullmatch(fp.ja3_hash), f"ja3 hash {fp.ja3_hash!r}"
        assert _JA4.fullmatch(fp.ja4), f"ja4 {fp.ja4!r}"
        assert (fp.ja4[0] == "q") == quic, f"ja4 transport {fp.ja4!r} (quic={quic})"
        assert fp.ja4_r.startswith(fp.ja4[:11]), f"ja4_r {fp.ja4_r!r} against {fp.ja4!r}"
        assert fp.tls_family in TLS_FAMILIES, fp.tls_family
        assert fp.sni is None or isinstance(fp.sni, str)
        assert all(isinstance(p, str) for p in fp.alpn_offered)


# -- access logs ------------------------------------------------------------------------------
def check_log_lines(fmt: str, lines: Sequence[str]) -> None:
    """Lines of one log, read in order by one parser of `fmt` (CloudFront's `#Fields:` header
    names the columns of the lines after it)."""
    parse = PARSERS[fmt]()
    for line in lines:
        rec = parse_line(parse, line)
        if rec is None:
            continue
        assert math.isfinite(rec.time), rec
        assert rec.status is None or type(rec.status) is int, rec
        assert all(isinstance(v, str) for v in (rec.client, rec.method, rec.host, rec.target, rec.user_agent,
                                                rec.referer, rec.scheme)), rec
        facts = facts_from_record(rec)
        assert isinstance(facts.header_map, dict) and facts.path.startswith(("/", "*"))


def _log_bytes(data: bytes) -> None:
    """`FORMAT\nLINE\nLINE...` (an unknown first line: the lines of a combined log)."""
    text = data.decode("utf-8", "replace")
    head, _, rest = text.partition("\n")
    if head.strip() in FORMATS:
        check_log_lines(head.strip(), rest.split("\n"))
    else:
        check_log_lines("combined", text.split("\n"))


TARGETS: dict[str, Callable[[bytes], None]] = {
    "policy": check_policy,
    "forwarding": _forwarding_bytes,
    "path": lambda data: check_path(data.decode("latin-1")),
    "cookie": lambda data: check_cookie_header(data.decode("latin-1")),
    "token": lambda data: check_token(data.decode("latin-1")),
    "http": _http_bytes,
    "tls": check_client_hello,
    "accesslog": _log_bytes,
}
CORPUS = ROOT / "fuzz" / "corpus"

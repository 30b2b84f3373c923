"""Web-server access logs as replay input: nginx/Apache `combined`, JSON (nginx `escape=json`,
Caddy), AWS ALB and CloudFront. Read as a stream, one line at a time, so a log of any size
replays in bounded memory.

A log line keeps far less than a flow file: client address, time, method, path, status,
User-Agent, referer (Caddy's JSON also keeps every request header, but not their order).
`LOG_LIMITS` says what each format cannot carry; the replay reports it, and the facts built
from a line leave those parts empty instead of guessing them (see `facts_from_record`).
"""
from __future__ import annotations

import calendar
import gzip
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, BinaryIO, cast
from urllib.parse import unquote

from ..facts import RequestFacts

FORMATS = ("combined", "json", "alb", "cloudfront")


class LogFormatError(ValueError):
    """A log whose format cannot be recognised or is not the one asked for."""


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One request as an access log saw it."""

    client: str
    time: float  # epoch seconds
    method: str
    host: str
    target: str  # path and query as requested ("/a?b=1")
    status: int | None
    user_agent: str
    referer: str
    scheme: str = "http"
    headers: tuple[tuple[str, str], ...] | None = None  # every request header, when the log keeps them (Caddy)


# What no access log carries, and what only some do: the report names these, and the replayed
# requests lack them (so signals that need them stay silent rather than firing on every line).
NOT_IN_LOGS = (
    "TLS fingerprint (ja3, ja4, tls_family; signals ua_tls_mismatch, browser_h1_only_alpn)",
    "header order and HTTP signature (httpsig)",
)
NOT_IN_HEADERLESS_LOGS = (
    "request headers beyond User-Agent and Referer (Accept, Accept-Language, client hints, sec-fetch-*, cookies; "
    "signals chromium_without_client_hints, non_chromium_with_client_hints, navigation_without_accept_language; "
    "session keys)",
    "response bodies (referenced-asset detector)",
)
COMPUTED = ("client address and subnet keys", "method, host, path and query matching", "User-Agent class and family",
            "good-bot verification (UA + address)", "token buckets, bans and scores", "request-side detectors "
            "(timing, sequence, distinct paths, asset ratio)", "probe detector (response status)")


def log_limits(fmt: str) -> dict[str, list[str]]:
    missing = list(NOT_IN_LOGS)
    if fmt != "json-caddy":
        missing += NOT_IN_HEADERLESS_LOGS
    else:
        missing.append(NOT_IN_HEADERLESS_LOGS[1])
    return {"missing": missing, "computed": list(COMPUTED)}


# --- time -------------------------------------------------------------------------------------

_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                        "Nov", "Dec"), 1)}


class _ClfTime:
    """`10/Oct/2000:13:55:36 -0700` -> epoch seconds. Consecutive lines mostly share a second
    (and always an hour): the last answer is kept, strptime is never called."""

    __slots__ = ("_text", "_value")

    def __init__(self) -> None:
        self._text = ""
        self._value = 0.0

    def __call__(self, text: str) -> float:
        if text == self._text:
            return self._value
        try:
            day, mon, year = int(text[0:2]), _MONTHS[text[3:6]], int(text[7:11])
            hh, mm, ss = int(text[12:14]), int(text[15:17]), int(text[18:20])
            zone = text[21:26]
            offset = (int(zone[1:3]) * 3600 + int(zone[3:5]) * 60) * (-1 if zone[0] == "-" else 1) if zone else 0
        except (ValueError, KeyError, IndexError):
            raise ValueError(f"bad time {text!r}") from None
        if not (1 <= day <= 31 and hh < 24 and mm < 60 and ss < 61 and abs(offset) < 86400):
            raise ValueError(f"bad time {text!r}")  # timegm would roll `99/Jan ... 77:00` into April
        value = float(calendar.timegm((year, mon, day, hh, mm, ss, 0, 0, 0)) - offset)
        self._text, self._value = text, value
        return value


def _iso_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _split_target(method: str, target: str) -> tuple[str, str, str]:
    """An absolute-form target (ALB logs `https://host:443/p?q`) -> (scheme, host, path?query)."""
    if target.startswith(("http://", "https://")):
        scheme, _, rest = target.partition("://")
        host, slash, path = rest.partition("/")
        if host.endswith((":443", ":80")):
            host = host.rsplit(":", 1)[0]
        return scheme, host, slash + path if slash else "/"
    return "", "", target


# --- combined ---------------------------------------------------------------------------------

# nginx escapes '"' inside fields as \x22, Apache as \"; both are matched. A quoted field is matched
# by an unrolled loop: the same strings as `"((?:[^"\\]|\\.)*)"`, but plain characters run in one
# class repeat instead of one alternation each (a 4 KB request line parsed in a tenth of the time).
_QUOTED = r'"([^"\\]*(?:\\.[^"\\]*)*)"'
_COMBINED = re.compile(rf'(\S+) \S+ \S+ \[([^\]]+)\] {_QUOTED} (\d{{3}}|-) \S+(?: {_QUOTED} {_QUOTED})?')


def _combined_parser() -> Callable[[str], LogRecord | None]:
    clf_time = _ClfTime()
    match = _COMBINED.match

    def parse(line: str) -> LogRecord | None:
        m = match(line)
        if m is None:
            return None
        client, when, request, status, referer, ua = m.groups()
        method, _, rest = request.partition(" ")
        target = rest.rpartition(" ")[0] if rest.endswith(("HTTP/1.0", "HTTP/1.1", "HTTP/2.0", "HTTP/3.0")) else rest
        if not target:  # a garbage request line (TLS bytes on a plain port): nginx logs it as-is
            method, target = "GET", "/"
        scheme, host, target = _split_target(method, target)
        return LogRecord(client, clf_time(when), method or "GET", host, target or "/",
                         None if status == "-" else int(status), _unescape(ua or ""), _unescape(referer or ""),
                         scheme or "http")

    return parse


def _unescape(value: str) -> str:
    if value == "-":
        return ""
    if "\\" in value:
        return value.replace('\\x22', '"').replace('\\"', '"').replace("\\\\", "\\")
    return value


# --- JSON (nginx escape=json, Caddy) ----------------------------------------------------------

# nginx's log_format is free-form: these are the variable names operators use for each field.
_NGINX_FIELDS = {
    "client": ("remote_addr", "client_ip", "client", "ip", "realip_remote_addr"),
    "time": ("time_iso8601", "time_local", "msec", "timestamp", "time", "@timestamp", "ts"),
    "method": ("request_method", "method"),
    "target": ("request_uri", "uri", "path", "url"),
    "request": ("request",),
    "status": ("status", "response_status", "code"),
    "ua": ("http_user_agent", "user_agent", "useragent", "agent"),
    "referer": ("http_referer", "referer", "referrer"),
    "host": ("host", "http_host", "server_name"),
    "scheme": ("scheme",),
}


def _first(obj: dict[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        value = obj.get(name)
        if value not in (None, "", "-"):
            return value
    return None


def _json_time(value: Any, clf_time: _ClfTime) -> float:
    if isinstance(value, int | float):
        return float(value) / (1000.0 if value > 1e11 else 1.0)  # epoch seconds or milliseconds
    text = str(value)
    if text.replace(".", "", 1).isdigit():
        return float(text)  # nginx $msec
    if len(text) >= 26 and text[2] == "/":
        return clf_time(text)  # $time_local
    return _iso_time(text)


def _json_parser() -> Callable[[str], LogRecord | None]:
    clf_time = _ClfTime()

    def parse(line: str) -> LogRecord | None:
        try:
            obj = json.loads(line)
        except ValueError:
            return None
        if not isinstance(obj, dict):
            return None
        request = obj.get("request")
        if isinstance(request, dict):
            return _caddy(obj, request)
        return _nginx_json(obj, clf_time)

    return parse


def _caddy(obj: dict[str, Any], req: dict[str, Any]) -> LogRecord | None:
    raw_headers = req.get("headers") or {}
    headers: list[tuple[str, str]] = []
    if isinstance(raw_headers, dict):
        for name, values in raw_headers.items():
            headers.extend((str(name), str(v)) for v in (values if isinstance(values, list) else [values]))
    host = str(req.get("host") or "")
    if host and not any(n.lower() == "host" for n, _ in headers):
        headers.insert(0, ("Host", host))  # Go keeps Host apart from the header map
    hmap = {n.lower(): v for n, v in headers}
    client = req.get("client_ip") or req.get("remote_ip") or str(req.get("remote_addr", "")).rpartition(":")[0]
    ts = obj.get("ts")
    if not client or ts is None:
        return None
    status = obj.get("status")
    return LogRecord(str(client), float(ts), str(req.get("method") or "GET"), host, str(req.get("uri") or "/"),
                     int(status) if isinstance(status, int) else None, hmap.get("user-agent", ""),
                     hmap.get("referer", ""), "https" if req.get("tls") else "http", tuple(headers))


def _nginx_json(obj: dict[str, Any], clf_time: _ClfTime) -> LogRecord | None:
    client = _first(obj, _NGINX_FIELDS["client"])
    when = _first(obj, _NGINX_FIELDS["time"])
    if client is None or when is None:
        return None
    method = _first(obj, _NGINX_FIELDS["method"])
    target = _first(obj, _NGINX_FIELDS["target"])
    if method is None or target is None:
        request = str(_first(obj, _NGINX_FIELDS["request"]) or "")
        parts = request.split(" ")
        method = method or (parts[0] if parts[0] else "GET")
        target = target or (parts[1] if len(parts) > 1 else "/")
    status = _first(obj, _NGINX_FIELDS["status"])
    try:
        time = _json_time(when, clf_time)
        code = int(status) if status is not None else None
    except ValueError:
        return None
    scheme, host, target = _split_target(str(method), str(target))
    return LogRecord(str(client), time, str(method), host or str(_first(obj, _NGINX_FIELDS["host"]) or ""),
                     target or "/", code, str(_first(obj, _NGINX_FIELDS["ua"]) or ""),
                     str(_first(obj, _NGINX_FIELDS["referer"]) or ""),
                     scheme or str(_first(obj, _NGINX_FIELDS["scheme"]) or "http"))


# --- AWS ALB ------------------------------------------------------------------------------------

# type time elb client:port target:port t1 t2 t3 elb_status target_status rx tx "request" "user_agent" ...
_ALB = re.compile(rf'(\S+) (\S+) \S+ (\S+) \S+ \S+ \S+ \S+ (\S+) \S+ \S+ \S+ {_QUOTED} {_QUOTED}')


def _alb_parser() -> Callable[[str], LogRecord | None]:
    def parse(line: str) -> LogRecord | None:
        m = _ALB.match(line)
        if m is None:
            return None
        _type, when, client, status, request, ua = m.groups()
        parts = request.split(" ")
        method = parts[0] if parts[0] and parts[0] != "-" else "GET"
        scheme, host, target = _split_target(method, parts[1] if len(parts) > 1 else "/")
        try:
            time = _iso_time(when)
        except ValueError:
            return None
        return LogRecord(client.rpartition(":")[0] or client, time, method, host, target or "/",
                         int(status) if status.isdigit() else None, _unescape(ua), "", scheme or "http")

    return parse


# --- CloudFront -----------------------------------------------------------------------------------

class _CloudFrontParser:
    """Tab-separated, columns named by the `#Fields:` header; User-Agent and referer URL-encoded."""

    def __init__(self) -> None:
        self.columns: dict[str, int] = {}

    def __call__(self, line: str) -> LogRecord | None:
        if line.startswith("#"):
            if line.startswith("#Fields:"):
                self.columns = {name: i for i, name in enumerate(line[8:].split())}
            return None
        if not self.columns:
            return None
        f = line.rstrip("\r\n").split("\t")
        col = self.columns

        def get(name: str) -> str:
            i = col.get(name)
            value = f[i] if i is not None and i < len(f) else "-"
            return "" if value == "-" else value

        try:
            time = _iso_time(f"{get('date')}T{get('time')}+00:00")
        except ValueError:
            return None
        query = get("cs-uri-query")
        status = get("sc-status")
        protocol = get("cs-protocol")
        return LogRecord(get("c-ip"), time, get("cs-method") or "GET", get("x-host-header") or get("cs(Host)"),
                         (get("cs-uri-stem") or "/") + (f"?{query}" if query else ""),
                         int(status) if status.isdigit() else None, unquote(unquote(get("cs(User-Agent)"))),
                         unquote(get("cs(Referer)")), "https" if protocol in ("https", "wss") else "http")


PARSERS: dict[str, Callable[[], Callable[[str], LogRecord | None]]] = {
    "combined": _combined_parser, "json": _json_parser, "alb": _alb_parser, "cloudfront": _CloudFrontParser,
}


# --- reading ------------------------------------------------------------------------------------

FLOWS = "flows"  # a mitmproxy flow file, not an access log
_FLOW_START = re.compile(rb"^\d{1,9}:")  # a tnetstring length prefix


def open_log(path: str) -> tuple[BinaryIO, BinaryIO]:
    """(the stream of lines, the raw file whose position tracks progress); gzip is read through."""
    raw = cast(BinaryIO, open(path, "rb"))  # noqa: SIM115 - the caller closes it
    magic = raw.read(2)
    raw.seek(0)
    if magic == b"\x1f\x8b":
        return cast(BinaryIO, gzip.GzipFile(fileobj=raw, mode="rb")), raw
    return raw, raw


def sniff(path: str) -> str:
    """The format of a file from its first lines: FLOWS or one of FORMATS."""
    stream, raw = open_log(path)
    head = b""
    try:  # in pieces: a compressed file cut off while written still shows what it begins with
        while len(head) < 64 * 1024 and (piece := stream.read(8192)):
            head += piece
    except (OSError, EOFError) as exc:
        if not head:
            raise LogFormatError(f"{path}: cannot read: {exc}") from None
    finally:
        stream.close()
        raw.close()
    if _FLOW_START.match(head):
        return FLOWS
    lines = [ln for ln in head.decode("utf-8", "replace").splitlines() if ln.strip()][:20]
    if not lines:
        raise LogFormatError(f"{path}: empty file")
    if any(ln.startswith(("#Version:", "#Fields:")) for ln in lines):
        return "cloudfront"
    for fmt in ("json", "combined", "alb"):
        parse = PARSERS[fmt]()
        if sum(parse_line(parse, ln) is not None for ln in lines) * 2 > len(lines):
            return fmt
    raise LogFormatError(f"{path}: not a flow file and no known access log format "
                         f"(first line: {lines[0][:120]!r}); name one with --log-format {{{','.join(FORMATS)}}}")


@dataclass(slots=True)
class LogReadStats:
    """What reading one log found, for the report."""

    path: str
    format: str
    lines: int = 0
    records: int = 0
    skipped: int = 0
    first_skipped: tuple[int, str] | None = None  # (line number, text) of the first unreadable line
    caddy: bool = False
    cut_off: str | None = None  # why reading stopped early: a compressed log cut off while written

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"file": self.path, "format": "json-caddy" if self.caddy else self.format,
                                  "lines": self.lines, "requests": self.records, "skipped": self.skipped}
        if self.first_skipped is not None:
            out["first_skipped"] = {"line": self.first_skipped[0], "text": self.first_skipped[1][:200]}
        if self.cut_off is not None:
            out["cut_off"] = self.cut_off
        return out

    def where_cut(self) -> str:
        """Where and why reading stopped early (only when `cut_off`)."""
        return f"cut off after line {self.lines} ({self.cut_off})"


def parse_line(parse: Callable[[str], LogRecord | None], line: str) -> LogRecord | None:
    """One line through a format's parser (`PARSERS[fmt]()`): its record, or None for a line the
    format cannot read -- a field of the wrong type or value (a time that is no time or not finite,
    a status that is no number, JSON of another shape) included. Never raises: a log is written by
    servers and partly by clients, and one bad line is counted and skipped, never the end of a replay."""
    try:
        rec = parse(line)
    except (ValueError, TypeError, OverflowError):
        return None
    if rec is None or not math.isfinite(rec.time):
        return None
    return rec


def iter_records(path: str, fmt: str, stats: LogReadStats,
                 progress: Callable[[int], None] | None = None) -> Iterator[LogRecord]:
    """The records of one log in file order. `progress(bytes_read_of_the_file)` every few thousand lines."""
    parse = PARSERS[fmt]()
    stream, raw = open_log(path)
    try:
        for n, data in enumerate(cast(IO[bytes], stream), 1):
            stats.lines = n
            if progress is not None and not n & 0x1FFF:
                progress(raw.tell())
            line = data.decode("utf-8", "replace").rstrip("\r\n")
            if not line or (fmt != "cloudfront" and line.isspace()):
                continue
            rec = parse_line(parse, line)
            if rec is None:
                if not (fmt == "cloudfront" and line.startswith("#")):
                    stats.skipped += 1
                    if stats.first_skipped is None:
                        stats.first_skipped = (n, line)
                continue
            stats.records += 1
            if rec.headers is not None:
                stats.caddy = True
            yield rec
    except (OSError, EOFError) as exc:
        if not stats.lines:
            raise LogFormatError(f"{path}: cannot read: {exc}") from None
        stats.cut_off = str(exc)  # what came before was replayed: the report says where it stopped
    finally:
        if progress is not None:
            progress(raw.tell())
        stream.close()
        raw.close()


def facts_from_record(rec: LogRecord) -> RequestFacts:
    """What the engine can know of a logged request. Only the headers the log kept are present,
    and a TLS request without its handshake is replayed as plain HTTP: a signal that needs what
    the log dropped (client hints over TLS, the ClientHello) stays silent instead of firing on
    every line."""
    if rec.headers is not None:
        headers: tuple[tuple[str, str], ...] = rec.headers
    else:
        hs = [("Host", rec.host)] if rec.host else []
        if rec.user_agent:
            hs.append(("User-Agent", rec.user_agent))
        if rec.referer:
            hs.append(("Referer", rec.referer))
        headers = tuple(hs)
    path, _, query = rec.target.partition("?")
    return RequestFacts(peer_ip=rec.client, method=rec.method, scheme="http", host=rec.host,
                        path=path or "/", query=query, headers=headers, timestamp=rec.time)

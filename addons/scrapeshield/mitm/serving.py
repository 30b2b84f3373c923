"""The listening side of the shield: our socket, mitmproxy's connection handling, connection limits.

mitmproxy normally creates its own listening sockets. `scrapeshield run` turns that off
(`server=False`) and serves mitmproxy's reverse-proxy mode on a socket it made itself, through
mitmproxy's public `ServerInstance.make(...).handle_stream`: so the socket can be one of a
SO_REUSEPORT group (workers), carry a burst-sized backlog, and every connection passes through
here first. That is where the limits mitmproxy does not have are kept:

- connections per client address (429 and close at accept);
- a header read timeout: from accept, or from the end of the previous response, to a complete
  request head (slow-drip and partial requests are closed);
- an idle keep-alive timeout between requests;
- the bytes a client may send before its request head is complete (URL + headers), so a huge or
  endless head is refused (414/431) before mitmproxy buffers it;
- header count and size, URL length and request body size on the parsed request (431, 414, 413),
  for HTTP/2 too; bodies above a threshold are streamed, never buffered whole, and the reserved
  prefix (/.shield/) only takes small bodies with a declared length (413, 411).

Every refusal says `Shield-Action: reject` and is counted in `scrapeshield_connection_limits_total`.

Timeouts are kept by one sweep, not a timer per connection: each connection's deadline falls in a
slot of `SWEEP_TICK` seconds, and every tick the sweep closes what is due, `CLOSE_BATCH` at a time
with the event loop let through in between. 20,000 slow-drip connections opened within seconds
all reach the header timeout within seconds too; closed in one go they would hold the loop for
seconds (and a normal client with it). A connection closed before it sent a complete head never
reaches mitmproxy at all (building its connection handler is most of what a connection costs),
and after a mass close the C heap is trimmed (`malloc_trim`), so the memory those connections
held goes back to the system.

Until its first head is complete a connection is one `asyncio.Protocol` object on its transport
(`_Connection`), not streams, a task and coroutines: 15 objects for the cyclic garbage collector
instead of 38, so a full GC pass with 20,000 slow connections open stops the process ~0.1 s, not
~0.4 s (collector.py). mitmproxy gets asyncio streams on the same transport once it has the head.
"""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import math
import socket
from collections import Counter as Tally
from collections.abc import Callable
from typing import Any, cast

from mitmproxy import ctx, http
from mitmproxy.net.http.http1 import assemble_response
from mitmproxy.proxy.mode_servers import ServerInstance
from prometheus_client import CollectorRegistry, Counter, Gauge

from ..connlimits import ConnectionLimits
from . import errorpages

log = logging.getLogger("scrapeshield.serving")

_KNOWN_VERSIONS = frozenset({"HTTP/1.0", "HTTP/1.1", "HTTP/2.0", "HTTP/3"})
_OPAQUE_EARLY_BYTES = 1 << 20  # TLS/HTTP/2: head, handshake and any body sent before the head is parsed
_H2_PREFACE = b"PRI * HTTP/2.0"
SWEEP_TICK = 0.1  # seconds: how late a timeout may close its connection
CLOSE_BATCH = 200  # connections closed by the sweep before the event loop gets a turn
TRIM_AFTER_CLOSES = 1000  # connections closed since the last malloc_trim that make another worth it
TRIM_INTERVAL = 10.0  # seconds between two malloc_trim calls at most
_STILL_FALLING = 50  # connections closed in the last tick that mean a mass close is still going on

class _Connection(asyncio.Protocol):
    """One accepted client connection, keyed by its peer address.

    Until its first request head is complete (or a TLS hello is in) this object is the transport's
    protocol itself: the head is gathered here, in one bytearray, and a slow-drip client costs
    this object and its transport -- no stream, task or coroutine -- which keeps a full GC pass
    over 20,000 of them short (collector.py). Then it is handed to mitmproxy through asyncio
    streams (`ShieldServing.hand_over`) and stays the record of the connection's limits.
    """

    __slots__ = (
        "address",
        "cancelled",
        "flows",
        "handed",
        "head_bytes",
        "head_done",
        "held",
        "line_done",
        "opaque",
        "peer",
        "reason",
        "registered",
        "serving",
        "slot",
        "task",
        "transport",
    )

    def __init__(self, serving: ShieldServing) -> None:
        self.serving = serving
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[Any, ...] = ()
        self.address = ""
        self.task: asyncio.Task[None] | None = None  # serving it through mitmproxy, once handed
        self.flows: set[str] = set()  # requests whose head is in and whose answer is not yet out
        self.head_bytes = 0  # bytes received since the last complete request head
        self.line_done = False  # the request line of the head being read has ended
        self.head_done = False  # the head being read has ended (clear text only)
        self.held = bytearray()  # an incomplete request head, not yet given to mitmproxy
        self.opaque: bool | None = None  # TLS, HTTP/2 frames or a WebSocket: no heads to see in the bytes
        self.slot: int | None = None  # the sweep slot of its deadline (None: no deadline, a request is in)
        self.reason = ""  # what the deadline is: header_timeout or idle_timeout
        self.handed = False  # mitmproxy has the connection (a first head or TLS hello came in)
        self.cancelled = False  # its task was cancelled by close_connection
        self.registered = False  # counted in the open connections and per address

    # asyncio.Protocol, until handed to mitmproxy (then its StreamReaderProtocol gets these)
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport: asyncio's is an asyncio.Transport, uvloop's has its methods without the base class
        self.transport = cast(asyncio.Transport, transport)
        _no_delay(transport)
        self.serving.connected(self)

    def data_received(self, data: bytes) -> None:
        self.serving.first_bytes(self, data)

    def eof_received(self) -> bool | None:
        return self.serving.first_eof(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.serving.forget(self)

    @property
    def closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()


class _HeadBoundReader:
    """mitmproxy reads the client through this: request heads are bounded, and held until complete.

    In clear text a request head ends at the first empty line. Until then the bytes are kept here,
    not handed to mitmproxy: a slow-drip client costs one small read per drip instead of a pass
    through mitmproxy's layers, and a head over the limits is refused (414/431) before anything
    parses it. A body sent right behind its head is passed on untouched. Over TLS the head cannot
    be seen in the ciphertext: everything up to the parsed head counts, against a looser bound.
    The first head of a connection is gathered before mitmproxy has it (`ShieldServing.first_bytes`);
    this reader keeps the heads that follow on a keep-alive connection.
    """

    __slots__ = ("_conn", "_reader", "_serving", "first")

    def __init__(self, reader: asyncio.StreamReader, conn: _Connection, serving: ShieldServing, first: bytes) -> None:
        self._reader, self._conn, self._serving = reader, conn, serving
        self.first = first  # read before mitmproxy was given the connection

    async def read(self, n: int = -1) -> bytes:
        if self.first:
            data, self.first = self.first, b""
            return data
        conn = self._conn
        while True:
            data = await self._reader.read(n)
            if not data or conn.flows or conn.head_done or conn.closing:
                if conn.held:  # the end of the stream, with part of a head still held
                    data, conn.held = bytes(conn.held) + data, bytearray()
                return data
            passed = self._serving.gather_head(conn, data)
            if passed is not None:
                return passed


class ShieldServing:
    """Serves mitmproxy's configured mode on `sock` and keeps the connection limits.

    Needs mitmproxy's own listener off (`server=False`) and sits before the ShieldAddon, so an
    over-limit request is refused before the engine sees it.
    """

    def __init__(self, sock: socket.socket, limits: ConnectionLimits, registry: CollectorRegistry | None = None,
                 is_reserved: Callable[[str], bool] = lambda path: path.startswith("/.shield/")) -> None:
        self.sock = sock
        self.is_reserved = is_reserved  # the shield's own endpoints: small bodies only
        self.limits = limits
        self._instance: ServerInstance[Any] | None = None
        self._server: asyncio.Server | None = None
        self._connections: dict[tuple[Any, ...], _Connection] = {}
        self._per_address: Tally[str] = Tally()
        self._slots: dict[int, dict[_Connection, None]] = {}  # sweep slot -> connections due then
        self._next_slot = 0
        self._sweeper: asyncio.Task[None] | None = None
        self._closed_since_trim = 0
        self._open_peak = 0  # most connections open at once since the last trim
        self._open_last_tick = 0
        self._trimmed_at = -TRIM_INTERVAL
        self._trim = _malloc_trim()
        self.trims = 0
        self.draining = False
        registry = registry if registry is not None else CollectorRegistry()
        self.refusals = Counter("scrapeshield_connection_limits", "Requests and connections refused or closed by a "
                                "connection limit, by reason", ["reason"], registry=registry)
        self.open_connections = Gauge("scrapeshield_open_connections", "Client connections open now",
                                      registry=registry)
        self.open_connections.set_function(lambda: len(self._connections))
        errorpages.on_protocol_error = self._protocol_error

    # -- lifecycle -----------------------------------------------------------------------------
    async def running(self) -> None:
        if self._instance is not None:
            return
        proxyserver = ctx.master.addons.get("proxyserver")
        self._instance = ServerInstance.make(ctx.options.mode[0], proxyserver)
        self._next_slot = self._slot_of(asyncio.get_running_loop().time())
        self._sweeper = asyncio.create_task(self._sweep())

    async def accept(self) -> None:
        """Start accepting clients: called once every addon is running (mitm/master.py), after the
        start-up objects are frozen out of the garbage collector's sight (collector.py)."""
        if self._server is not None or self._instance is None:
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), sock=self.sock,
                                                backlog=self.limits.backlog)
        host, port = self.sock.getsockname()[:2]
        log.info("serving %s on %s:%s", self._instance.mode.description, host, port)

    async def drain(self) -> None:
        """Graceful stop: accept nothing new, let in-flight requests finish, close idle connections."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.drain_timeout
        while self._connections and loop.time() < deadline:
            for conn in list(self._connections.values()):
                if not conn.flows:
                    self.close_connection(conn)
            await asyncio.sleep(0.05)
        if self._connections:
            log.warning("graceful stop: %d connections still busy after %.0fs", len(self._connections),
                        self.limits.drain_timeout)

    def status(self) -> dict[str, Any]:
        return {"connections": {"open": len(self._connections), "addresses": len(self._per_address),
                                "draining": self.draining, "heap_trims": self.trims}}

    # -- connections ---------------------------------------------------------------------------
    def connected(self, conn: _Connection) -> None:
        transport = conn.transport
        assert transport is not None
        peer = transport.get_extra_info("peername")
        if not peer or self._instance is None:
            transport.close()
            return
        address = peer[0]
        if self._per_address[address] >= self.limits.max_connections_per_address:
            self.refusals.labels("too_many_connections").inc()
            transport.write(errorpages.plain_response(429))
            transport.close()
            return
        conn.peer, conn.address, conn.registered = peer, address, True
        self._connections[peer] = conn
        if len(self._connections) > self._open_peak:
            self._open_peak = len(self._connections)
        self._per_address[address] += 1
        self._arm(conn, self.limits.header_timeout, "header_timeout")

    def first_bytes(self, conn: _Connection, data: bytes) -> None:
        """Bytes before mitmproxy has the connection: gathered until a first head is complete (or a
        TLS hello or HTTP/2 preface is in), then the connection is handed over with them."""
        if conn.handed or conn.closing:
            return
        first = self.gather_head(conn, data)
        if first:
            self.hand_over(conn, first)

    def first_eof(self, conn: _Connection) -> bool | None:
        """The client ended its side before a first head was complete: mitmproxy gets what there
        is (and answers it as the protocol error it is); with nothing sent, the connection closes."""
        if not conn.held or conn.closing:
            return None  # the transport closes itself
        first, conn.held = bytes(conn.held), bytearray()
        return self.hand_over(conn, first).eof_received()

    def gather_head(self, conn: _Connection, data: bytes) -> bytes | None:
        """Takes in `data` read from the client while no request is in: the bytes to pass on to
        mitmproxy -- a complete head, TLS or HTTP/2 bytes, or b"" when the head broke a limit
        (the connection is then refused) -- or None while the head is still incomplete."""
        if conn.opaque is None:  # a TLS handshake record, or HTTP/2 with prior knowledge
            conn.opaque = data[0] == 0x16 or data.startswith(_H2_PREFACE)
        if conn.opaque:
            conn.head_bytes += len(data)
            if self.head_overrun(conn):
                self.reject_connection(conn, 431, "head_too_large")
                return b""
            return data
        held = conn.held
        searched_from = max(0, len(held) - 3)
        held += data
        end = held.find(b"\r\n\r\n", searched_from)
        if not conn.line_done and held.find(b"\n", searched_from, end if end >= 0 else len(held)) >= 0:
            conn.line_done = True
        conn.head_bytes = end + 4 if end >= 0 else len(held)
        status = self.head_overrun(conn)
        if status:
            conn.held = bytearray()
            self.reject_connection(conn, status, "url_too_long" if status == 414 else "head_too_large")
            return b""
        if end < 0:
            return None
        conn.head_done = True
        conn.held = bytearray()
        return bytes(held)

    def hand_over(self, conn: _Connection, first: bytes) -> asyncio.StreamReaderProtocol:
        """From here mitmproxy serves the connection: asyncio streams on its transport, read
        through a `_HeadBoundReader` that starts with `first`, in a task of its own."""
        transport = conn.transport
        assert transport is not None and self._instance is not None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        conn.handed = True
        conn.task = loop.create_task(self._serve(conn, _HeadBoundReader(reader, conn, self, first), writer))
        return protocol

    async def _serve(self, conn: _Connection, reader: _HeadBoundReader, writer: asyncio.StreamWriter) -> None:
        assert self._instance is not None
        try:
            await self._instance.handle_stream(reader, writer)  # type: ignore[arg-type]
        except asyncio.CancelledError:
            if not conn.cancelled:  # ours (close_connection) ends the connection quietly; others propagate
                raise
        finally:
            self.forget(conn)

    def forget(self, conn: _Connection) -> None:
        """The connection is over: out of the open connections, the per-address counts and the sweep."""
        if not conn.registered:
            return
        conn.registered = False
        self._disarm(conn)
        self._connections.pop(conn.peer, None)
        self._closed_since_trim += 1
        address = conn.address
        self._per_address[address] -= 1
        if self._per_address[address] <= 0:
            del self._per_address[address]

    # -- timeouts: one sweep --------------------------------------------------------------------
    @staticmethod
    def _slot_of(when: float) -> int:
        return math.ceil(when / SWEEP_TICK)  # never before its deadline

    def _arm(self, conn: _Connection, seconds: float, reason: str) -> None:
        self._disarm(conn)
        slot = max(self._slot_of(asyncio.get_running_loop().time() + seconds), self._next_slot)
        self._slots.setdefault(slot, {})[conn] = None
        conn.slot, conn.reason = slot, reason

    def _disarm(self, conn: _Connection) -> None:
        if conn.slot is not None:
            due = self._slots.get(conn.slot)
            if due is not None:
                due.pop(conn, None)
                if not due:
                    del self._slots[conn.slot]
            conn.slot = None

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_TICK)
            now = self._slot_of(loop.time())
            closed = 0
            while self._next_slot <= now:
                slot = self._next_slot
                self._next_slot += 1
                due = self._slots.pop(slot, None)
                for conn in list(due or ()):
                    if conn.slot != slot:  # re-armed or done while an earlier batch let the loop run
                        continue
                    conn.slot = None
                    try:
                        expired = self._expire(conn)
                    except Exception:  # one connection's fault must not stop every timeout
                        log.exception("closing a timed-out connection from %s failed", conn.address)
                        continue
                    if expired:
                        closed += 1
                        if closed % CLOSE_BATCH == 0:
                            await asyncio.sleep(0)  # let the loop answer the others between batches
            await self._trim_after_mass_close(loop)

    async def _trim_after_mass_close(self, loop: asyncio.AbstractEventLoop) -> None:
        """Once a mass close is over -- many connections closed, fewer than half the peak still
        open, hardly any closed in the last tick -- give the C heap's free pages back: what
        20,000 slow connections held would otherwise stay in RSS for good."""
        open_now = len(self._connections)
        falling, self._open_last_tick = self._open_last_tick - open_now, open_now
        if (self._trim is None or self._closed_since_trim < TRIM_AFTER_CLOSES or 2 * open_now > self._open_peak
                or falling >= _STILL_FALLING or loop.time() < self._trimmed_at + TRIM_INTERVAL):
            return
        self._closed_since_trim, self._open_peak, self._trimmed_at = 0, open_now, loop.time()
        await loop.run_in_executor(None, self._trim, 0)  # a thread: it may walk a large heap (ctypes drops the GIL)
        self.trims += 1

    def _expire(self, conn: _Connection) -> bool:
        """Close a connection whose deadline passed; False when it is busy after all."""
        if conn.flows:
            return False
        transport = conn.transport
        assert transport is not None
        if transport.get_write_buffer_size():  # still sending the last answer
            self._arm(conn, self.limits.idle_timeout, conn.reason)
            return False
        self.refusals.labels(conn.reason).inc()
        if not conn.handed:  # a partial head, never given to mitmproxy: nothing to flush, no handler to end
            transport.abort()
            return True
        self.close_connection(conn)
        return True

    def close_connection(self, conn: _Connection) -> None:
        if conn.transport is None or conn.transport.is_closing():
            return
        conn.transport.close()  # flushes what is buffered, then closes; mitmproxy's reader sees EOF
        if conn.handed and conn.task is not None:  # a half-closed connection would otherwise wait for tcp_timeout
            asyncio.get_running_loop().call_later(1.0, self._cancel, conn)

    @staticmethod
    def _cancel(conn: _Connection) -> None:
        if conn.task is not None and not conn.task.done():
            conn.cancelled = True
            conn.task.cancel()

    def head_overrun(self, conn: _Connection) -> int:
        if not conn.line_done and not conn.opaque and conn.head_bytes > self.limits.max_url + 16:
            return 414
        bound = self.limits.max_url + self.limits.max_header_bytes + 64
        if conn.head_bytes > (max(bound, _OPAQUE_EARLY_BYTES) if conn.opaque else bound):
            return 431
        return 0

    def reject_connection(self, conn: _Connection, status: int, reason: str) -> None:
        self.refusals.labels(reason).inc()
        if not conn.opaque and conn.transport is not None:  # clear text only: it would garble TLS or HTTP/2
            conn.transport.write(errorpages.plain_response(status))
        self.close_connection(conn)

    def _protocol_error(self, status: int) -> None:
        self.refusals.labels("protocol_error").inc()

    # -- requests ------------------------------------------------------------------------------
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        conn = self.connection_of(flow)
        if conn is not None:
            conn.flows.add(flow.id)
            self._disarm(conn)
        if flow.response is not None:
            return
        status, reason = self._request_over_limit(flow.request)
        if status:
            self.refusals.labels(reason).inc()
            flow.response = http.Response.make(status, errorpages.page_body(status), {
                "Content-Type": "text/plain; charset=utf-8", "Shield-Action": errorpages.SHIELD_ACTION,
                "Cache-Control": "no-store", "Connection": "close"})
            return
        if flow.request.headers.get("content-length") is None and _has_body(flow.request):
            flow.request.stream = _BoundedStream(self.limits.max_body, self, conn)

    def _request_over_limit(self, request: http.Request) -> tuple[int, str]:
        limits = self.limits
        if request.http_version not in _KNOWN_VERSIONS:
            return 400, "http_version"
        if request.method == "CONNECT":
            return 400, "connect"
        if request.authority and request.http_version.startswith("HTTP/1"):
            return 400, "absolute_form"  # a proxy request (`GET http://host/`): this is no forward proxy
        if len(request.path) > limits.max_url:
            return 414, "url_too_long"
        fields = request.headers.fields
        if len(fields) > limits.max_headers:
            return 431, "too_many_headers"
        if sum(len(k) + len(v) + 4 for k, v in fields) > limits.max_header_bytes:
            return 431, "head_too_large"
        reserved = self.is_reserved(request.path)
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                return 400, "bad_content_length"
            if size > (limits.max_reserved_body if reserved else limits.max_body):
                return 413, "body_too_large"
        elif reserved and _has_body(request):
            return 411, "length_required"  # a chunked body would have to be streamed to the upstream
        return 0, ""

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if self.draining and flow.response is not None and flow.request.http_version == "HTTP/1.1":
            flow.response.headers["Connection"] = "close"

    def response(self, flow: http.HTTPFlow) -> None:
        if self.draining and flow.response is not None and flow.request.http_version == "HTTP/1.1":
            flow.response.headers["Connection"] = "close"
        self._flow_done(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._flow_done(flow)

    def connection_of(self, flow: http.HTTPFlow) -> _Connection | None:
        return self._connections.get(flow.client_conn.peername)

    def _flow_done(self, flow: http.HTTPFlow) -> None:
        conn = self.connection_of(flow)
        if conn is None:
            return
        conn.flows.discard(flow.id)
        if flow.response is not None and flow.response.status_code == 101:
            conn.opaque = True  # a WebSocket (or other upgrade) now: frames, no heads; mitmproxy's timeouts apply
            self._disarm(conn)
            return
        if not conn.flows:
            conn.head_bytes, conn.line_done, conn.head_done = 0, False, False
            self._arm(conn, self.limits.idle_timeout, "idle_timeout")


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim: hands free heap pages back to the system. None elsewhere (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def _has_body(request: http.Request) -> bool:
    return "chunked" in request.headers.get("transfer-encoding", "").lower()


def _body_size(request: http.Request) -> int | None:
    """The declared body size; None when the body is chunked (size unknown)."""
    if _has_body(request):
        return None
    try:
        return int(request.headers.get("content-length", "0") or 0)
    except ValueError:
        return None


class RefusedBodies:
    """Answers a request refused at its head without waiting for (or buffering) its body.

    Added after every addon that may answer in `requestheaders` (the ShieldAddon, ShieldServing).
    mitmproxy would read the whole body before sending an answer set there -- and cannot stream a
    body it has an answer for -- so a refused upload would be buffered, or fail. Over clear-text
    HTTP/1 the answer is written here and the connection closed (as nginx does for a 413); over
    TLS or HTTP/2 a small body is read and dropped as usual, a large or chunked one is cut off.
    """

    def __init__(self, serving: ShieldServing) -> None:
        self.serving = serving

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is None or not flow.live:
            return
        size = _body_size(flow.request)
        if size == 0:
            return
        conn = self.serving.connection_of(flow)
        if conn is not None and conn.opaque is False and flow.request.http_version in ("HTTP/1.1", "HTTP/1.0"):
            response.headers["Connection"] = "close"
            if conn.transport is not None:
                conn.transport.write(assemble_response(response))
            conn.flows.discard(flow.id)
            self.serving.close_connection(conn)
            flow.kill()
        elif size is None or size > self.serving.limits.stream_threshold:
            flow.kill()


class _BoundedStream:
    """A chunked request body streamed to the upstream; the connection is cut past the limit."""

    __slots__ = ("_conn", "_limit", "_seen", "_serving")

    def __init__(self, limit: int, serving: ShieldServing, conn: _Connection | None) -> None:
        self._limit, self._serving, self._conn, self._seen = limit, serving, conn, 0

    def __call__(self, chunk: bytes) -> bytes:
        self._seen += len(chunk)
        if self._seen > self._limit and self._conn is not None:
            conn, self._conn = self._conn, None
            self._serving.refusals.labels("body_too_large").inc()
            conn.flows.clear()
            self._serving.close_connection(conn)
            return b""
        return chunk


def _no_delay(transport: asyncio.BaseTransport) -> None:
    """TCP_NODELAY on an accepted connection, whatever socket it was accepted on (an inherited
    descriptor, uvloop): with Nagle on, a response's body waits for the client's delayed ACK of
    its head, ~40 ms on every keep-alive request (see workers/reuseport.py `listen_socket`)."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # the peer is already gone: nothing to speed up
        pass

"""Accepted connections have TCP_NODELAY: with Nagle on, a response written in two pieces (head,
then body) waits for the client's delayed ACK, ~40 ms on every keep-alive request (a single
keep-alive client got 23 requests/s through the shield before this, BENCHMARKS.md)."""
from __future__ import annotations

import asyncio
import socket

from scrapeshield.mitm.serving import _no_delay
from scrapeshield.workers.reuseport import listen_socket


class Accepted(asyncio.Protocol):
    def __init__(self, made: asyncio.Future[asyncio.BaseTransport]) -> None:
        self.made = made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made.set_result(transport)


async def _accept_one(sock: socket.socket, fix: bool) -> int:
    """TCP_NODELAY on the server side of one connection accepted on `sock` (after `_no_delay` if `fix`)."""
    loop = asyncio.get_running_loop()
    made: asyncio.Future[asyncio.BaseTransport] = loop.create_future()
    server = await loop.create_server(lambda: Accepted(made), sock=sock)
    host, port = sock.getsockname()[:2]
    _reader, writer = await asyncio.open_connection(host, port)
    try:
        transport = await asyncio.wait_for(made, 5)
        if fix:
            _no_delay(transport)
        return int(transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    finally:
        writer.close()
        server.close()


def test_the_shields_listening_socket_says_tcp_so_asyncio_turns_nagle_off() -> None:
    sock = listen_socket("127.0.0.1", 0)
    assert sock.proto == socket.IPPROTO_TCP
    assert asyncio.run(_accept_one(sock, fix=False)) != 0


def test_a_connection_accepted_on_any_socket_gets_tcp_nodelay() -> None:
    # given a listening socket made without saying TCP (an inherited descriptor may be one)
    plain = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    plain.bind(("127.0.0.1", 0))
    plain.listen(8)
    plain.setblocking(False)
    assert asyncio.run(_accept_one(plain, fix=False)) == 0  # what asyncio leaves it at
    plain = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    plain.bind(("127.0.0.1", 0))
    plain.listen(8)
    plain.setblocking(False)
    # when the shield's connection sets it up, Nagle is off
    assert asyncio.run(_accept_one(plain, fix=True)) != 0

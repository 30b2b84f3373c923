"""Listening sockets for N worker processes on one port, with client-affine placement.

Every worker gets its own listening socket in one SO_REUSEPORT group; a classic-BPF program
attached to the group (SO_ATTACH_REUSEPORT_CBPF) picks the socket -- hence the worker -- from the
client's source address, so one client's connections always land on the same worker and its
`ip` and `prefix` keys stay exact on a per-process memory store:

    IPv4:  A = saddr >> 8; return A % N                          (a /24 lands on one worker)
    IPv6:  A = saddr[0:4] ^ saddr[4:8]; return A % N              (a /64 lands on one worker)

A socket bound to `::` also takes IPv4 clients (v4-mapped), whose SYNs carry an IPv4 header, so
the IPv6 program first reads the IP version nibble and takes the IPv4 branch for them.

The supervisor creates the whole group before starting any worker and keeps its copy of every
socket open: a worker that dies leaves its socket (and its accept queue) in place, so the
placement does not move, and connections the kernel queued meanwhile are accepted by the
restarted worker instead of being lost or reshuffled. If a program's index is out of range the
kernel falls back to its own hash, so a mistake degrades to plain SO_REUSEPORT, never to refusals.
"""
from __future__ import annotations

import ctypes
import socket
from collections.abc import Sequence

SO_ATTACH_REUSEPORT_CBPF = 51  # <asm-generic/socket.h>
SKF_NET_OFF = -0x100000  # <linux/filter.h>: offsets from the network header

# <linux/bpf_common.h> / <linux/filter.h> opcodes
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_LD_B_ABS = 0x30  # BPF_LD | BPF_B | BPF_ABS
_ALU_RSH_K = 0x74  # BPF_ALU | BPF_RSH | BPF_K
_ALU_MOD_K = 0x94  # BPF_ALU | BPF_MOD | BPF_K
_ALU_XOR_X = 0xAC  # BPF_ALU | BPF_XOR | BPF_X
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_TAX = 0x07  # BPF_MISC | BPF_TAX
_RET_A = 0x16  # BPF_RET | BPF_A

DEFAULT_BACKLOG = 4096  # the kernel clamps it to net.core.somaxconn


class SockFilter(ctypes.Structure):
    _fields_ = (("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32))


class SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter)))


Instruction = tuple[int, int, int, int]  # code, jt, jf, k


def _k(offset: int) -> int:
    return offset & 0xFFFFFFFF  # negative offsets (SKF_NET_OFF + n) as the u32 the kernel reads


def ipv4_program(workers: int) -> list[Instruction]:
    """The four instructions: source address, drop the host byte, modulo the worker count."""
    return [
        (_LD_W_ABS, 0, 0, _k(SKF_NET_OFF + 12)),  # IPv4 source address
        (_ALU_RSH_K, 0, 0, 8),
        (_ALU_MOD_K, 0, 0, workers),
        (_RET_A, 0, 0, 0),
    ]


def dual_stack_program(workers: int) -> list[Instruction]:
    """For a socket bound to an IPv6 address: IPv6 clients by /64, v4-mapped clients by /24."""
    return [
        (_LD_B_ABS, 0, 0, _k(SKF_NET_OFF + 0)),  # version << 4 | ...
        (_ALU_RSH_K, 0, 0, 4),
        (_JEQ_K, 4, 0, 6),  # IPv6: skip the 4 IPv4 instructions below
        *ipv4_program(workers),
        (_LD_W_ABS, 0, 0, _k(SKF_NET_OFF + 8)),  # first half of the /64 (source starts at byte 8)
        (_TAX, 0, 0, 0),
        (_LD_W_ABS, 0, 0, _k(SKF_NET_OFF + 12)),  # second half of the /64
        (_ALU_XOR_X, 0, 0, 0),
        (_ALU_MOD_K, 0, 0, workers),
        (_RET_A, 0, 0, 0),
    ]


def attach_placement(sock: socket.socket, workers: int) -> None:
    """Attach the placement program to `sock`'s reuseport group (every socket of it is bound)."""
    program = ipv4_program(workers) if sock.family == socket.AF_INET else dual_stack_program(workers)
    filters = (SockFilter * len(program))(*(SockFilter(*insn) for insn in program))
    fprog = SockFprog(len(program), ctypes.cast(filters, ctypes.POINTER(SockFilter)))
    # The kernel copies the program during the call; `filters` stays alive until it returns.
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, bytes(fprog))


def listen_socket(host: str, port: int, backlog: int = DEFAULT_BACKLOG, *, reuse_port: bool = False) -> socket.socket:
    """A bound, listening, non-blocking TCP socket (IPv6 if `host` is an IPv6 address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose `proto` says TCP, and an
    # accepted socket inherits it. Without it a response written in two pieces (head, then body)
    # waits for the client's delayed ACK: ~40 ms on every keep-alive request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6 and host in ("::", ""):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def worker_group(host: str, port: int, workers: int, backlog: int = DEFAULT_BACKLOG) -> list[socket.socket]:
    """`workers` listening sockets on one address, index i for worker i, placement attached."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(workers):
            sockets.append(listen_socket(host, port, backlog, reuse_port=True))
            port = sockets[0].getsockname()[1]  # port 0: the others join the port the first one got
        attach_placement(sockets[0], workers)
    except BaseException:
        close_all(sockets)
        raise
    return sockets


def worker_for(address: str, workers: int) -> int:
    """Which worker the placement program sends `address` to (for tests and operators)."""
    packed = socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
    if len(packed) == 4:
        return (int.from_bytes(packed, "big") >> 8) % workers
    if packed[:12] == b"\0" * 10 + b"\xff\xff":  # v4-mapped: the SYN carries an IPv4 header
        return (int.from_bytes(packed[12:], "big") >> 8) % workers
    return (int.from_bytes(packed[0:4], "big") ^ int.from_bytes(packed[4:8], "big")) % workers


def close_all(sockets: Sequence[socket.socket]) -> None:
    for sock in sockets:
        sock.close()

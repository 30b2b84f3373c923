"""Connection limits of the listening side: values, defaults, and their `scrapeshield run` flags.

Pure: the supervisor validates these before it starts a worker, and mitm/serving.py keeps them.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

_SIZE_SUFFIXES = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3}


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float = 10.0  # seconds from accept (or the previous answer) to a complete request head
    idle_timeout: float = 60.0  # seconds a keep-alive connection may sit between requests
    max_header_bytes: int = 32 * 1024  # all header fields together (nginx: 4 x 8k buffers)
    max_headers: int = 100
    max_url: int = 8 * 1024
    max_body: int = 10 * 1024**2  # declared or streamed request body of a forwarded request
    max_reserved_body: int = 16 * 1024  # /.shield/: the verify endpoint needs a few hundred bytes
    stream_threshold: int = 256 * 1024  # bodies above this are streamed to the upstream, not buffered
    max_connections_per_address: int = 256
    backlog: int = 4096  # the kernel clamps it to net.core.somaxconn
    drain_timeout: float = 10.0  # graceful stop: how long in-flight requests may still take

    def __post_init__(self) -> None:
        for name in ("header_timeout", "idle_timeout", "drain_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be a number of seconds > 0")
        for name in ("max_header_bytes", "max_headers", "max_url", "max_body", "max_reserved_body",
                     "stream_threshold", "max_connections_per_address", "backlog"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")


def parse_size(text: str) -> int:
    """`16384`, `16k`, `10m`, `1g` -> bytes."""
    raw = text.strip().lower()
    digits = raw.rstrip("kmgb")
    suffix = raw[len(digits):]
    if not digits.isdigit() or suffix not in _SIZE_SUFFIXES:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 16384, 16k, 10m)")
    return int(digits) * _SIZE_SUFFIXES[suffix]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = ConnectionLimits()
    group = parser.add_argument_group("connection limits")
    group.add_argument("--header-timeout", type=float, default=d.header_timeout,
                       help="seconds to receive a complete request head, then the connection is closed")
    group.add_argument("--idle-timeout", type=float, default=d.idle_timeout,
                       help="seconds an idle keep-alive connection is kept open")
    group.add_argument("--max-header-bytes", type=parse_size, default=d.max_header_bytes,
                       help="all request header fields together (431 above)")
    group.add_argument("--max-headers", type=int, default=d.max_headers, help="request header fields (431 above)")
    group.add_argument("--max-url", type=parse_size, default=d.max_url, help="request target length (414 above)")
    group.add_argument("--max-body", type=parse_size, default=d.max_body,
                       help="request body of a forwarded request (413 above; chunked: connection cut)")
    group.add_argument("--stream-threshold", type=parse_size, default=d.stream_threshold,
                       help="request and response bodies above this are streamed, not buffered")
    group.add_argument("--max-connections-per-address", type=int, default=d.max_connections_per_address,
                       help="open connections per client address (429 and close above)")
    group.add_argument("--backlog", type=int, default=d.backlog, help="listen backlog (clamped to somaxconn)")
    group.add_argument("--drain-timeout", type=float, default=d.drain_timeout,
                       help="on SIGTERM, seconds in-flight requests may take before the process exits")


def from_args(args: argparse.Namespace) -> ConnectionLimits:
    return ConnectionLimits(
        header_timeout=args.header_timeout, idle_timeout=args.idle_timeout,
        max_header_bytes=args.max_header_bytes, max_headers=args.max_headers, max_url=args.max_url,
        max_body=args.max_body, stream_threshold=args.stream_threshold,
        max_connections_per_address=args.max_connections_per_address, backlog=args.backlog,
        drain_timeout=args.drain_timeout,
    )

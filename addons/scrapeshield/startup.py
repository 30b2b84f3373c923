"""Start-up checks for `scrapeshield run`: everything an operator can get wrong before the first
request -- an unreadable policy or secret file, a malformed store URL, a port already taken --
is found here and reported as one line naming the thing and the reason, never as a traceback.
"""
from __future__ import annotations

import argparse
import errno
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from .admin import parse_hostport

ENV_PREFIX = "SCRAPESHIELD_"


def environment_defaults(parser: argparse.ArgumentParser, environ: Mapping[str, str] = os.environ) -> None:
    """`SCRAPESHIELD_UPSTREAM=...` stands for `--upstream ...`, and so on for every option (a flag
    on the command line wins): how containers and unit files configure a process. A value goes
    through the option's type like a typed-in one. Call it after the last option is added."""
    for dest in vars(parser.parse_args([])):  # every option's destination
        if (value := environ.get(ENV_PREFIX + dest.upper())) is not None:
            parser.set_defaults(**{dest: value})
    parser.epilog = (f"Every option can also be set in the environment: {ENV_PREFIX}<OPTION>, e.g. "
                     f"{ENV_PREFIX}UPSTREAM for --upstream, {ENV_PREFIX}STORE_TIMEOUT for --store-timeout.")


class StartupError(Exception):
    """One line for the operator: what cannot be used, and why."""


@dataclass(frozen=True, slots=True)
class Listener:
    flag: str  # "--listen", "--admin"
    host: str
    port: int


def check_readable(path: str, what: str) -> None:
    """A file the shield must read at start: present, a file, readable by this user."""
    try:
        with open(path, "rb"):
            pass
    except IsADirectoryError:
        raise StartupError(f"{what} {path} is a directory, not a file") from None
    except OSError as exc:
        raise StartupError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def listeners(listen: str, admin: str) -> list[Listener]:
    """The addresses `run` will bind, parsed; a malformed one is a StartupError."""
    out = []
    for flag, text, default_host in (("--listen", listen, "0.0.0.0"), ("--admin", admin, "127.0.0.1")):
        if flag == "--admin" and not text:
            continue  # '' disables the admin listener
        try:
            host, port = parse_hostport(text, default_host)
        except ValueError as exc:
            raise StartupError(f"{flag}: {exc}") from None
        out.append(Listener(flag, host, port))
    if len(out) == 2 and out[0].port == out[1].port and out[0].port and \
            (out[0].host == out[1].host or "0.0.0.0" in (out[0].host, out[1].host)):
        raise StartupError(f"--listen and --admin both want port {out[0].port}")
    return out


def check_bindable(listener: Listener) -> None:
    """Bind and release the address, as the servers will (SO_REUSEADDR: a TIME_WAIT is no conflict).

    A race with another process taking the port in the next milliseconds is possible; this check
    exists to turn the common case -- an old instance still running -- into one clear line.
    """
    if listener.port == 0:
        return
    try:
        infos = socket.getaddrinfo(listener.host, listener.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"{listener.flag} {listener.host}:{listener.port}: cannot resolve: {exc.strerror}") from None
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(sockaddr)
        except OSError as exc:
            reason = "the port is already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            raise StartupError(f"{listener.flag} {listener.host}:{listener.port}: {reason}") from None


def check_secret_file(path: str) -> None:
    if path:
        check_readable(path, "secret file")


def check_dir_writable(path: str, what: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"cannot create {what} {path}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK):
        raise StartupError(f"{what} {path} is not writable by this user")


def preflight(args: argparse.Namespace) -> None:
    """Everything `run` needs from outside, checked before anything starts. A socket handed down
    by a supervisor (`--listen-fd`, `--admin-fd`) is already bound: only its owner checks it."""
    check_readable(args.policy, "policy")
    if args.shadow_policy:
        check_readable(args.shadow_policy, "shadow policy")
    check_secret_file(args.secret_file)
    inherited = {"--listen": getattr(args, "listen_fd", None) is not None,
                 "--admin": getattr(args, "admin_fd", None) is not None}
    for listener in listeners(args.listen, args.admin):
        if not inherited[listener.flag]:
            check_bindable(listener)
    check_dir_writable(args.confdir, "--confdir")

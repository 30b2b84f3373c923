"""`scrapeshield run | check | replay | init | explain | ban | unban | allow | unallow | bans | allows | inspect`."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .policy.registry import Registry

from . import __version__, builtin, connlimits
from .startup import StartupError, environment_defaults, preflight

DEFAULT_POLICY = "builtin:default"

log = logging.getLogger("scrapeshield")
CONTROL_COMMANDS = ("ban", "unban", "allow", "unallow", "bans", "allows", "inspect")


def _setup_logging(level: str, fmt: str = "text", worker: int | None = None) -> None:
    from .applog import configure_logging

    configure_logging(level, fmt, worker=worker)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scrapeshield", description="Anti-scraping sidecar reverse proxy.")
    parser.add_argument("--version", action="version", version=f"scrapeshield {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the shield in front of an upstream")
    run.add_argument("--upstream",  # required, checked after parsing: $SCRAPESHIELD_UPSTREAM may give it
                     help="origin URL, e.g. http://127.0.0.1:8000 (scripts/run without it fronts the demo shop)")
    run.add_argument("--listen", default="0.0.0.0:8080", help="HOST:PORT for clients (HTTP/1.1, HTTP/2, plain and TLS)")
    run.add_argument("--policy", default=DEFAULT_POLICY,
                     help="policy file, or builtin:NAME for a shipped one (default: builtin:default)")
    run.add_argument("--admin", default="127.0.0.1:9090", help="HOST:PORT for /metrics /healthz /status ('' disables)")
    run.add_argument("--store", default="memory://", help="state store: memory:// or redis://host:port/db (rediss://, unix://)")
    run.add_argument("--store-timeout", type=float, default=1.0,
                     help="seconds one store call may take; an outage is several in a row, or a failed health probe")
    run.add_argument("--shadow-policy", default="",
                     help="candidate policy evaluated beside the live one, never enforced")
    run.add_argument("--decision-log", default=os.environ.get("SCRAPESHIELD_DECISION_LOG", "-"),
                     help="file for JSON decision lines, reopened on SIGUSR1 ('-' = stderr; "
                          "default $SCRAPESHIELD_DECISION_LOG, else stderr)")
    run.add_argument("--admin-token-file", default="",
                     help="bearer token for the control API (/api/...); default $SCRAPESHIELD_ADMIN_TOKEN; "
                          "without one the control API is off")
    run.add_argument("--save", default="", help="write every flow to this mitmproxy flow file (for replay)")
    run.add_argument("--secret-file", default="",
                     help="challenge/clearance HMAC keys, one per line (first signs, all verify); "
                          "default $SCRAPESHIELD_CHALLENGE_KEYS, else ephemeral")
    run.add_argument("--cert", help="TLS certificate (PEM) for the listen port; default: self-signed")
    run.add_argument("--key", help="TLS private key (PEM) for --cert")
    run.add_argument("--confdir", default=os.path.expanduser("~/.scrapeshield"), help="where the self-signed CA lives")
    run.add_argument("--reload-interval", type=float, default=1.0,
                     help="seconds between policy file polls (0: SIGHUP only)")
    run.add_argument("--log-level", default="info")
    run.add_argument("--workers", default="1",
                     help="processes serving the listen port (N or 'auto' = one per CPU); a client's /24 "
                          "(IPv6: /64) always reaches the same one, see docs/workers.md")
    run.add_argument("--worker-hang-timeout", type=float, default=10.0,
                     help="with --workers: a worker whose admin port has not answered for this many seconds is "
                          "hung and is killed and restarted (0: never)")
    run.add_argument("--event-loop", choices=("asyncio", "uvloop"), default="asyncio",
                     help="event loop of each serving process (uvloop: see BENCHMARKS.md for what it buys)")
    run.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)  # set by the supervisor
    run.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)
    run.add_argument("--admin-fd", type=int, help=argparse.SUPPRESS)
    connlimits.add_arguments(run)
    run.add_argument("--log-format", choices=("text", "json"),
                     default=os.environ.get("SCRAPESHIELD_LOG_FORMAT", "text"),
                     help="application log on stderr: text for people, json for a log pipeline")
    environment_defaults(run)

    check = sub.add_parser("check", help="validate policy files; print every error as file:line:col: message")
    check.add_argument("files", nargs="+", help="policy files (or builtin:NAME)")
    check.add_argument("--strict", action="store_true", help="warnings (unreachable rules, ...) fail the check too")
    check.add_argument("--format", choices=("text", "json"), default="text", help="json: one document for CI")

    init = sub.add_parser("init", help="write a starter policy and a challenge secret into DIR")
    init.add_argument("dir", help="directory to create or fill (e.g. /etc/scrapeshield)")
    init.add_argument("--force", action="store_true", help="overwrite files that exist")

    replay = sub.add_parser("replay", help="run captured flows through a policy, deterministically")
    replay.add_argument("flows", nargs="+", metavar="FILE",
                        help="mitmproxy flow files (mitmdump -w / scrapeshield run --save) or access logs")
    replay.add_argument("--log-format", default="auto",
                        choices=("auto", "flows", "combined", "json", "alb", "cloudfront"),
                        help="input format (default: detected from each file's first lines)")
    replay.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                        help="progress bar on stderr (auto: for logs over 8 MB when stderr is a terminal)")
    replay.add_argument("--policy", required=True)
    replay.add_argument("--format", choices=("table", "json"), default="table")
    replay.add_argument("--expect", help="YAML expectations; exit 1 on any mismatch")

    from .controlcli import add_parsers as add_control_parsers
    from .explaincli import add_parser as add_explain_parser

    add_control_parsers(sub)
    add_explain_parser(sub, DEFAULT_POLICY)

    args = parser.parse_args(argv)
    if args.command == "check":
        from .policy.report import cmd_check as check_policies

        return check_policies(args.files, strict=args.strict, fmt=args.format)
    if args.command == "init":
        from .initdir import cmd_init

        return cmd_init(args.dir, force=args.force)
    if isinstance(getattr(args, "policy", None), str):
        try:
            args.policy = builtin.resolve_policy(args.policy)
        except LookupError as exc:
            print(f"scrapeshield: {exc.args[0]}", file=sys.stderr)
            return 2
    if args.command in CONTROL_COMMANDS:
        from .controlcli import cmd_control

        return cmd_control(args)
    if args.command == "explain":
        from .explaincli import cmd_explain

        return cmd_explain(args)
    if args.command == "replay":
        from .replay.cli import cmd_replay

        return cmd_replay(args)
    if not args.upstream:
        print("scrapeshield: cannot start: --upstream URL (or $SCRAPESHIELD_UPSTREAM) is required; "
              "scripts/run without it fronts the demo shop", file=sys.stderr)
        return 2
    _setup_logging(args.log_level, args.log_format, args.worker_index)
    from .workers.supervisor import parse_workers

    try:
        args.limits = connlimits.from_args(args)
        workers = parse_workers(args.workers)
    except ValueError as exc:
        print(f"scrapeshield: cannot start: {exc}", file=sys.stderr)
        return 2
    try:
        preflight(args)
        if workers > 1 and args.listen_fd is None:
            return asyncio.run(_supervise(args, sys.argv[1:] if argv is None else argv, workers))
        if args.event_loop == "uvloop":
            try:
                import uvloop
            except ImportError:
                print("scrapeshield: cannot start: --event-loop uvloop needs the uvloop package (pip install uvloop)",
                      file=sys.stderr)
                return 2
            return asyncio.run(_run(args), loop_factory=uvloop.new_event_loop)
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        return 0
    except StartupError as exc:
        print(f"scrapeshield: cannot start: {exc}", file=sys.stderr)
        return 2


def cmd_check(files: list[str], registry: Registry | None = None) -> int:
    """`scrapeshield check FILE...` as text (see policy/report.py)."""
    from .policy.report import cmd_check as check

    return check(files, registry=registry)


async def _supervise(args: argparse.Namespace, argv: list[str], workers: int) -> int:
    from .admin import parse_hostport
    from .challenge.keys import DEFAULT_ENV as CHALLENGE_KEYS_ENV
    from .workers.supervisor import Supervisor, WorkerPlan, worker_argv

    host, port = parse_hostport(args.listen, "0.0.0.0")
    admin = parse_hostport(args.admin) if args.admin else None
    env: tuple[tuple[str, str], ...] = ()
    if not args.secret_file and not os.environ.get(CHALLENGE_KEYS_ENV):
        # One ephemeral key for all workers (and their restarts), not one each.
        log.warning("no --secret-file or $%s: challenge keys are ephemeral (shared by the workers, lost on "
                    "restart of the whole shield)", CHALLENGE_KEYS_ENV)
        env = ((CHALLENGE_KEYS_ENV, secrets.token_hex(32)),)
    plan = WorkerPlan(count=workers, host=host, port=port, admin=admin, run_argv=tuple(worker_argv(argv)),
                      backlog=args.limits.backlog, drain_timeout=args.limits.drain_timeout, env=env,
                      hang_timeout=args.worker_hang_timeout)
    return await Supervisor(plan).run()


async def _run(args: argparse.Namespace) -> int:
    from .admin import parse_hostport
    from .challenge.keys import KeyRingError
    from .policy.errors import PolicyInvalid
    from .runtime import RuntimeConfig, ShieldRuntime

    try:
        runtime = ShieldRuntime(RuntimeConfig(
            policy_path=args.policy, store_url=args.store, decision_log=args.decision_log,
            admin="" if args.admin_fd is not None else args.admin,
            shadow_policy_path=args.shadow_policy, reload_interval=args.reload_interval,
            store_timeout=args.store_timeout, secret_file=args.secret_file,
            admin_token_file=args.admin_token_file,
        ))
    except PolicyInvalid as exc:
        first, *more = str(exc).splitlines()
        print("\n".join([f"scrapeshield: cannot start: invalid policy: {first}", *more]), file=sys.stderr)
        return 2
    except KeyRingError as exc:
        raise StartupError(f"challenge secret: {exc}") from None
    except ValueError as exc:  # a malformed --store URL (the store names it, password redacted)
        raise StartupError(f"--store: {exc}") from None
    except OSError as exc:  # e.g. the decision log's directory
        raise StartupError(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")) from None

    # mitmproxy is imported only now, so a broken policy is reported at once.
    from .mitm.master import ProxySettings, serve

    host, port = parse_hostport(args.listen, "0.0.0.0")
    save = _worker_file(args.save, args.worker_index) if args.save else args.save
    settings = ProxySettings(args.upstream, host, port, args.confdir, args.limits, save, args.cert, args.key,
                             args.listen_fd, args.admin_fd)
    try:
        return await serve(runtime, settings)
    finally:
        await runtime.stop()



def _worker_file(path: str, worker: int | None) -> str:
    """One flow file per worker (`flows.mitm` -> `flows.w0.mitm`): a file has one writer."""
    if worker is None:
        return path
    p = Path(path)
    return str(p.with_name(f"{p.stem}.w{worker}{p.suffix}"))

if __name__ == "__main__":
    sys.exit(main())

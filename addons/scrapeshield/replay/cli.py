"""`scrapeshield replay FILES... --policy FILE [--log-format F] [--format table|json] [--expect FILE]`.

FILES are mitmproxy flow files or web-server access logs (see replay/accesslog.py).

Exit status: 0 replayed (and every expectation held), 1 an expectation failed,
2 the input was unusable (invalid policy or expectations file, unreadable flow file).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from ..policy.compiler import compile_file
from ..policy.errors import PolicyInvalid
from .accesslog import FLOWS, LogFormatError, sniff
from .core import ReplayInputError, replay, run_sync
from .expect import (
    Expectation,
    ExpectationResult,
    ExpectationTracker,
    check_expectations,
    format_results,
    load_expectations,
)
from .logreplay import LogReplayRun, replay_logs_async
from .recorded import CutOff
from .report import ACTION_ORDER, REFUSED, ReplayReport, ReportBuilder, build_report

EXIT_OK, EXIT_MISMATCH, EXIT_BAD_INPUT = 0, 1, 2
MAX_TABLE_CLIENTS = 200


def cmd_replay(args: argparse.Namespace) -> int:
    expectations = None
    log_run: LogReplayRun | None = None
    cut_off: tuple[CutOff, ...] = ()
    try:
        if args.expect:
            expectations = load_expectations(args.expect)
        formats = _formats(args.flows, getattr(args, "log_format", "auto"))
        if all(f == FLOWS for f in formats):
            run = replay(args.flows, args.policy)
            report = build_report(run)
            cut_off = run.cut_off
            for cut in cut_off:  # a warning, not a failure: what the file held before the cut was replayed
                print(f"scrapeshield replay: {cut.describe()}", file=sys.stderr)
            results = check_expectations(expectations, run.decisions) if expectations is not None else None
        elif FLOWS in formats:
            raise LogFormatError("cannot mix flow files and access logs in one replay")
        else:
            report, results, log_run = _replay_logs(args, formats, expectations)
            for stats in log_run.logs:  # as for flow files: what came before the cut was replayed
                if stats.cut_off is not None:
                    print(f"scrapeshield replay: {stats.path}: {stats.where_cut()}; the lines before the cut were "
                          "replayed", file=sys.stderr)
    except PolicyInvalid as exc:  # the policy's or the expectations' errors, each as file:line:col
        print(exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ReplayInputError, LogFormatError) as exc:
        print(f"scrapeshield replay: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT

    if args.format == "json":
        out = report.to_dict()
        if cut_off:
            out["cut_off"] = [cut.to_dict() for cut in cut_off]
        if log_run is not None:
            out.update(log_run.to_dict())
        if results is not None:
            out["expectations"] = [r.to_dict() for r in results]
        sys.stdout.write(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
        if results is not None and not all(r.ok for r in results):
            sys.stderr.write(format_results(results))
    else:
        print_table(report, results, log_run=log_run)
    if results is not None and not all(r.ok for r in results):
        return EXIT_MISMATCH
    return EXIT_OK


def _formats(paths: Sequence[str], wanted: str) -> list[str]:
    if wanted != "auto":
        return [wanted] * len(paths)
    out = []
    for path in paths:
        try:
            out.append(sniff(path))
        except OSError as exc:
            raise ReplayInputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return out


def _replay_logs(args: argparse.Namespace, formats: list[str], expectations: list[Expectation] | None
                 ) -> tuple[ReplayReport, list[ExpectationResult] | None, LogReplayRun]:
    policy = compile_file(args.policy)  # the report needs it before the first line; errors come out here
    builder = ReportBuilder(policy, args.flows)
    tracker = ExpectationTracker(expectations) if expectations is not None else None
    sinks = [builder.add] if tracker is None else [builder.add, tracker.add]
    sizes = {p: os.path.getsize(p) for p in args.flows}
    show = args.progress == "on" or (args.progress == "auto" and sys.stderr.isatty() and sum(sizes.values()) > 8 << 20)
    if not show:
        log_run = run_sync(lambda: replay_logs_async(args.flows, formats, args.policy, sinks))
    else:
        with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                      TimeRemainingColumn(), console=Console(stderr=True), transient=False) as bar:
            tasks = {p: bar.add_task(os.path.basename(p), total=sizes[p]) for p in args.flows}
            log_run = run_sync(lambda: replay_logs_async(
                args.flows, formats, args.policy, sinks, lambda p, n: bar.update(tasks[p], completed=n)))
    builder.policy = log_run.policy
    return builder.report(), tracker.results() if tracker is not None else None, log_run


def print_table(report: ReplayReport, results: Sequence[ExpectationResult] | None,
                console: Console | None = None, log_run: LogReplayRun | None = None) -> None:
    # Piped output is read by people later (CI logs): do not squeeze it into 80 columns.
    console = console or Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    p = report.policy
    console.print(f"[bold]policy[/] {p['file']} ({p['name']}, version {p['version']})")
    console.print(f"[bold]replayed[/] {report.requests} requests from {len(report.flows)} file(s) over "
                  f"{report.end - report.start:.1f}s: " + _actions_text(report.actions))
    if log_run is not None:
        for stats in log_run.logs:
            d = stats.to_dict()
            skipped = f", {stats.skipped} unreadable lines skipped" if stats.skipped else ""
            first_bad = f" (first: line {stats.first_skipped[0]})" if stats.first_skipped else ""
            cut = f"; {stats.where_cut()}" if stats.cut_off else ""
            console.print(f"[bold]log[/] {stats.path}: {d['format']}, {stats.lines} lines{skipped}{first_bad}{cut}")
        console.print("[bold]not in these logs[/] (rules and signals that need them cannot match as live):")
        for item in log_run.limits()["missing"]:
            console.print(f"  - {item}", markup=False)

    clients = Table(title="Clients", title_justify="left")
    clients.add_column("client")
    clients.add_column("user agent", max_width=40, overflow="ellipsis", no_wrap=True)
    clients.add_column("requests", justify="right")
    shown = [a for a in ACTION_ORDER if a.value in report.actions]  # only what happened at all
    for action in shown:
        clients.add_column(action.value, justify="right")
    clients.add_column("first refused")
    by_interest = sorted(report.clients, key=lambda c: (-c.refused, -c.requests))
    listed = report.clients if len(report.clients) <= MAX_TABLE_CLIENTS else by_interest[:MAX_TABLE_CLIENTS]
    for c in listed:
        first = c.first.get(REFUSED)
        when = f"#{first.request} at +{first.at:.1f}s: {first.action} by {first.rule}" if first else "-"
        ua = c.user_agents[0][0] if c.user_agents else ""
        clients.add_row(c.client, ua, str(c.requests), *(_n(c.actions.get(a.value, 0)) for a in shown), when)
    console.print(clients)
    if len(listed) < len(report.clients):
        console.print(f"... {len(report.clients) - len(listed)} more clients (most refused shown first; "
                      "--format json lists every one)")

    rules = Table(title="Rules", title_justify="left")
    for col in ("rule", "matched", "decided", "monitored (not enforced)"):
        rules.add_column(col, justify="right" if col == "matched" else "left")
    for r in report.rules:
        rules.add_row(r.rule if r.in_policy else f"[dim]{r.rule}[/]", str(r.matched),
                      _actions_text(r.decided) or "-", _actions_text(r.monitored) or "-")
    console.print(rules)

    if results is not None:
        text = format_results(results)
        failed = any(not r.ok for r in results)
        console.print(text.rstrip("\n"), style="red" if failed else "green", markup=False)


def _n(value: int) -> str:
    return str(value) if value else "[dim]0[/]"


def _actions_text(actions: dict[str, int]) -> str:
    return ", ".join(f"{a} {n}" for a, n in actions.items())

"""`scrapeshield replay FLOWS... --policy FILE [--format table|json] [--expect FILE]`.

Exit status: 0 replayed (and every expectation held), 1 an expectation failed,
2 the input was unusable (invalid policy or expectations file, unreadable flow file).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from ..policy.errors import PolicyInvalid
from .core import ReplayInputError, replay
from .expect import ExpectationResult, check_expectations, format_results, load_expectations
from .report import ACTION_ORDER, REFUSED, ReplayReport, build_report

EXIT_OK, EXIT_MISMATCH, EXIT_BAD_INPUT = 0, 1, 2


def cmd_replay(args: argparse.Namespace) -> int:
    expectations = None
    try:
        if args.expect:
            expectations = load_expectations(args.expect)
        run = replay(args.flows, args.policy)
    except PolicyInvalid as exc:  # the policy's or the expectations' errors, each as file:line:col
        print(exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    except ReplayInputError as exc:
        print(f"scrapeshield replay: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT

    report = build_report(run)
    results = check_expectations(expectations, run.decisions) if expectations is not None else None
    if args.format == "json":
        out = report.to_dict()
        if results is not None:
            out["expectations"] = [r.to_dict() for r in results]
        sys.stdout.write(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
        if results is not None and not all(r.ok for r in results):
            sys.stderr.write(format_results(results))
    else:
        print_table(report, results)
    if results is not None and not all(r.ok for r in results):
        return EXIT_MISMATCH
    return EXIT_OK


def print_table(report: ReplayReport, results: Sequence[ExpectationResult] | None,
                console: Console | None = None) -> None:
    # Piped output is read by people later (CI logs): do not squeeze it into 80 columns.
    console = console or Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    p = report.policy
    console.print(f"[bold]policy[/] {p['file']} ({p['name']}, version {p['version']})")
    console.print(f"[bold]replayed[/] {report.requests} requests from {len(report.flows)} file(s) over "
                  f"{report.end - report.start:.1f}s: " + _actions_text(report.actions))

    clients = Table(title="Clients", title_justify="left")
    clients.add_column("client")
    clients.add_column("user agent", max_width=40, overflow="ellipsis", no_wrap=True)
    clients.add_column("requests", justify="right")
    shown = [a for a in ACTION_ORDER if a.value in report.actions]  # only what happened at all
    for action in shown:
        clients.add_column(action.value, justify="right")
    clients.add_column("first refused")
    for c in report.clients:
        first = c.first.get(REFUSED)
        when = f"#{first.request} at +{first.at:.1f}s: {first.action} by {first.rule}" if first else "-"
        ua = c.user_agents[0][0] if c.user_agents else ""
        clients.add_row(c.client, ua, str(c.requests), *(_n(c.actions.get(a.value, 0)) for a in shown), when)
    console.print(clients)

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

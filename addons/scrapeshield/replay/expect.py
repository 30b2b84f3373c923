"""`--expect FILE`: what a replay should show, checked like a test.

    expect:
      - client: 127.0.0.1            # selectors (all optional, all must hold):
        first_block_by: 100          #   client (addresses/CIDRs), user_agent (regex), filter (a policy match)
      - filter: {path: "/static/*"}
        all: allow                   # checks: first_block_by N, first_block_after N, all [...], never [...]
      - user_agent: Scrapy
        never: [block, drop]

Request numbers count the *selected* requests in replay order, so for a `client:` selector they
are that client's request numbers. A selector that selects nothing is a failure, never a pass.
The file is validated like a policy: every error, as file:line:col.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import yaml
from yaml.nodes import Node

from ..context import DecisionContext
from ..decision import ANSWERED, Action
from ..extensions import standard_registry
from ..netaddr import parse_ip
from ..policy.errors import PolicyError, PolicyInvalid
from ..policy.matchers import CompileEnv, compile_match
from ..policy.nodes import Reader
from .core import ReplayedDecision

SELECTORS = ("client", "user_agent", "filter")
CHECKS = ("first_block_by", "first_block_after", "all", "never")
FIELDS = ("name", *SELECTORS, *CHECKS)
ACTIONS = tuple(a.value for a in (Action.ALLOW, Action.DELAY, *ANSWERED))
SHOWN = 10  # offending requests listed per failed check

Selector = Callable[[ReplayedDecision], bool]


class ExpectInvalid(PolicyInvalid):
    """An expectations file with errors (file:line:col each)."""


@dataclass(frozen=True, slots=True)
class Expectation:
    where: str  # file:line:col of the list item
    label: str  # the `name`, or the selector and checks as written
    select: Selector
    first_block_by: int | None = None
    first_block_after: int | None = None
    all: frozenset[str] | None = None
    never: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class ExpectationResult:
    expectation: Expectation
    selected: int
    failures: tuple[str, ...]  # human-readable lines; empty when the expectation holds

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, object]:
        return {"where": self.expectation.where, "expectation": self.expectation.label, "ok": self.ok,
                "selected": self.selected, "failures": list(self.failures)}


# --- loading ------------------------------------------------------------------------------

def load_expectations(path: str) -> list[Expectation]:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ExpectInvalid([PolicyError(path, 1, 1, f"cannot read expectations: {exc.strerror or exc}")]) from None
    return parse_expectations(data, path)


def parse_expectations(data: bytes, filename: str = "<expect>") -> list[Expectation]:
    try:
        text = data.decode("utf-8")
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except UnicodeDecodeError as exc:
        raise ExpectInvalid([PolicyError(filename, 1, 1, f"not UTF-8: {exc.reason}")]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise ExpectInvalid([PolicyError(filename, line, col, f"YAML syntax: {exc.problem or exc}")]) from None
    r = Reader(filename)
    out: list[Expectation] = []
    if root is None:
        r.error(None, "expectations file is empty (want: expect: [...])")
    elif (top := r.mapping(root, "expectations file", ("expect",))) is not None:
        if "expect" not in top:
            r.error(root, "missing required field 'expect' (a list of expectations)")
        else:
            items = r.sequence(top["expect"][1], "expect", scalar_ok=False)
            if not items and not r.errors:
                r.error(top["expect"][1], "expect: the list is empty")
            for item in items:
                exp = _expectation(r, item, text)
                if exp is not None:
                    out.append(exp)
    if r.errors:
        raise ExpectInvalid(sorted(r.errors, key=lambda e: (e.line, e.col)))
    return out


def _expectation(r: Reader, node: Node, text: str) -> Expectation | None:
    f = r.mapping(node, "expectation", FIELDS)
    if f is None:
        return None
    n_errors = len(r.errors)
    mark = node.start_mark
    where = f"{r.filename}:{mark.line + 1}:{mark.column + 1}"
    selectors: list[Selector] = []
    if "client" in f:
        cnode = f["client"][1]
        cidrs = r.cidr_list(cnode, "client")
        selectors.append(lambda d: cidrs.contains(parse_ip(d.client)))
    if "user_agent" in f and (rx := r.regex(f["user_agent"][1], "user_agent")) is not None:
        search = rx.search
        selectors.append(lambda d: search(d.user_agent) is not None)
    env = CompileEnv({}, standard_registry())
    if "filter" in f and (pred := compile_match(r, f["filter"][1], env)) is not None:
        selectors.append(lambda d: d.facts is not None and pred(DecisionContext(d.facts)))

    checks: dict[str, object] = {}
    for name in ("first_block_by", "first_block_after"):
        if name in f:
            checks[name] = r.integer(f[name][1], name, 1)
    for name in ("all", "never"):
        if name in f:
            before = len(r.errors)
            items = r.sequence(f[name][1], name)
            if not items and len(r.errors) == before:
                r.error(f[name][1], f"{name}: name at least one action ({', '.join(ACTIONS)})")
            checks[name] = frozenset(a for item in items if (a := r.choice(item, name, ACTIONS)) is not None)
    if not any(c in f for c in CHECKS):
        r.error(node, f"expectation: needs a check ({', '.join(CHECKS)})")
    if len(r.errors) > n_errors:
        return None

    label = r.string(f["name"][1], "name") if "name" in f else None
    if label is None:
        written = [_source(text, f[k][0], f[k][1]) for k in FIELDS if k in f and k != "name"]
        label = ", ".join(written)
    sel = tuple(selectors)
    return Expectation(where, label, lambda d: all(s(d) for s in sel), **checks)  # type: ignore[arg-type]


def _source(text: str, knode: Node, vnode: Node) -> str:
    """`key: value` exactly as written, on one line."""
    raw = text[knode.start_mark.index:vnode.end_mark.index]
    return re.sub(r"\s*\n\s*", " ", raw).strip()


# --- checking -----------------------------------------------------------------------------

def check_expectations(expectations: Sequence[Expectation],
                       decisions: Sequence[ReplayedDecision]) -> list[ExpectationResult]:
    tracker = ExpectationTracker(expectations)
    for d in decisions:
        tracker.add(d)
    return tracker.results()


class _Progress:
    """One expectation's view of the replay so far: what a verdict needs, never every decision."""

    __slots__ = (
        "bad_all",
        "bad_all_counts",
        "bad_never",
        "bad_never_counts",
        "counts",
        "e",
        "first",
        "first_refused",
        "refused_at",
        "shown_all",
        "shown_never",
        "total",
    )

    def __init__(self, e: Expectation) -> None:
        self.e = e
        self.total = 0
        self.first: ReplayedDecision | None = None
        self.first_refused: ReplayedDecision | None = None
        self.refused_at: int | None = None
        self.bad_all = self.bad_never = 0
        self.shown_all: list[tuple[int, ReplayedDecision]] = []
        self.shown_never: list[tuple[int, ReplayedDecision]] = []
        self.counts: dict[str, int] = {}
        self.bad_all_counts: dict[str, int] = {}
        self.bad_never_counts: dict[str, int] = {}

    def add(self, d: ReplayedDecision) -> None:
        self.total += 1
        i = self.total
        if self.first is None:
            self.first = d
        action = d.effective.value
        self.counts[action] = self.counts.get(action, 0) + 1
        if self.refused_at is None and d.refused:
            self.refused_at, self.first_refused = i, d
        e = self.e
        if e.all is not None and action not in e.all:
            self.bad_all += 1
            self.bad_all_counts[action] = self.bad_all_counts.get(action, 0) + 1
            if len(self.shown_all) < SHOWN:
                self.shown_all.append((i, d))
        if e.never is not None and action in e.never:
            self.bad_never += 1
            self.bad_never_counts[action] = self.bad_never_counts.get(action, 0) + 1
            if len(self.shown_never) < SHOWN:
                self.shown_never.append((i, d))

    def result(self) -> ExpectationResult:
        e, total, first = self.e, self.total, self.first
        if first is None:
            return ExpectationResult(
                e, 0, ("expected: requests matching the selector\ngot:      no replayed request matches it",))
        failures: list[str] = []
        at, refused = self.refused_at, self.first_refused
        refusals = "/".join(a.value for a in ANSWERED)
        if e.first_block_by is not None and (at is None or at > e.first_block_by):
            got = (f"no refusal in {total} requests ({_summary(self.counts)})" if at is None or refused is None
                   else f"first refusal at request {at}: {_line(refused, first)}")
            failures.append(f"expected: first refusal ({refusals}) at or before request {e.first_block_by} of {total}\n"
                            f"got:      {got}")
        if e.first_block_after is not None and at is not None and refused is not None and at <= e.first_block_after:
            failures.append(f"expected: no refusal in the first {min(e.first_block_after, total)} of {total} requests\n"
                            f"got:      first refusal at request {at}: {_line(refused, first)}")
        if e.all is not None and self.bad_all:
            failures.append(_listing(f"every one of {total} requests: {_names(e.all)}", self.bad_all,
                                     self.bad_all_counts, self.shown_all, first))
        if e.never is not None and self.bad_never:
            failures.append(_listing(f"none of {total} requests: {_names(e.never)}", self.bad_never,
                                     self.bad_never_counts, self.shown_never, first))
        return ExpectationResult(e, total, tuple(failures))


class ExpectationTracker:
    """Expectations checked as decisions stream past (a replayed log keeps none of them)."""

    def __init__(self, expectations: Sequence[Expectation]) -> None:
        self._progress = [_Progress(e) for e in expectations]

    def add(self, d: ReplayedDecision) -> None:
        for p in self._progress:
            if p.e.select(d):
                p.add(d)

    def results(self) -> list[ExpectationResult]:
        return [p.result() for p in self._progress]


def _names(actions: frozenset[str]) -> str:
    return ", ".join(a for a in ACTIONS if a in actions)


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{a} {counts[a]}" for a in ACTIONS if a in counts)


def _line(d: ReplayedDecision, first: ReplayedDecision) -> str:
    target = d.path + (f"?{d.query}" if d.query else "")
    return (f"{d.method} {target} -> {d.effective.value} by {d.rule} ({d.reason}) "
            f"[client {d.client}, +{d.time - first.time:.3f}s]")


def _listing(expected: str, bad: int, counts: dict[str, int], shown: list[tuple[int, ReplayedDecision]],
             first: ReplayedDecision) -> str:
    lines = [f"expected: {expected}", f"got:      {bad} otherwise ({_summary(counts)})"]
    lines += [f"  request {i}: {_line(d, first)}" for i, d in shown]
    if bad > len(shown):
        lines.append(f"  ... and {bad - len(shown)} more")
    return "\n".join(lines)


def format_results(results: Sequence[ExpectationResult]) -> str:
    """The diff for people: one block per failed expectation, then a tally."""
    out = []
    for res in results:
        if res.ok:
            continue
        out.append(f"FAIL {res.expectation.where}  {res.expectation.label}")
        for failure in res.failures:
            out.extend("  " + line for line in failure.splitlines())
    failed = sum(not r.ok for r in results)
    out.append(f"expectations: {len(results) - failed} passed, {failed} failed")
    return "\n".join(out) + "\n"

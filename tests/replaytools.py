"""Replay captured traffic through a policy inside a test, so policy changes are tested like code.

    from replaytools import capture, replay_decisions, replay_report

    def test_the_crawler_is_stopped_early() -> None:
        report = replay_report([capture("scrapy")], "policies/default.yaml")
        crawler = report.clients[0]
        assert crawler.first_refused is not None and crawler.first_refused.request < crawler.requests / 2

    def test_profiles_are_never_throttled_for_the_browser() -> None:
        decisions = replay_decisions([capture("chromium")], "policies/default.yaml")
        assert not [d for d in decisions if d.path.startswith("/user/") and d.refused]

Both run `scrapeshield.replay`: the same runtime and engine as the proxy, the clock set to each
recorded request's timestamp, so the result is the same on every run. `replay_decisions` gives
one `ReplayedDecision` per request in time order (`.client`, `.client_request`, `.path`,
`.effective`, `.refused`, `.rule`, `.reason`, `.facts`, ...); `replay_report` the per-client and
per-rule summary that `scrapeshield replay --format json` prints. In tests/replay/ the fixtures
`captures` (this folder's captures) and `policy_file` (YAML text -> a file) help too.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from scrapeshield.replay import ReplayedDecision, ReplayReport, build_report, replay

REPO = Path(__file__).resolve().parents[1]
CAPTURES = REPO / "tests" / "captures"
DEFAULT_POLICY = REPO / "policies" / "default.yaml"

PathLike = str | os.PathLike[str]


def capture(name: str) -> Path:
    """The committed capture `name` ("curl", "requests", "httpx", "scrapy", "chromium"):
    tests/captures/NAME.flows, or NAME.flows.gz for the larger ones."""
    for candidate in (CAPTURES / f"{name}.flows", CAPTURES / f"{name}.flows.gz"):
        if candidate.exists():
            return candidate
    known = sorted(p.name.split(".")[0] for p in CAPTURES.glob("*.flows*"))
    raise FileNotFoundError(f"no capture {name!r} in {CAPTURES} (have: {', '.join(known)}); "
                            "record with tests/captures/record.py")


def replay_decisions(flow_files: Iterable[PathLike], policy: PathLike = DEFAULT_POLICY) -> list[ReplayedDecision]:
    """Every request of `flow_files`, in time order, with what `policy` (a file) decides about it."""
    return list(replay(flow_files, policy).decisions)


def replay_report(flow_files: Iterable[PathLike], policy: PathLike = DEFAULT_POLICY) -> ReplayReport:
    """The per-client / per-rule report of replaying `flow_files` through `policy` (a file)."""
    return build_report(replay(flow_files, policy))


def of_client(decisions: Sequence[ReplayedDecision], client: str) -> list[ReplayedDecision]:
    return [d for d in decisions if d.client == client]

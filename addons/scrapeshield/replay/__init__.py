"""Replay captured flows through a policy, deterministically (see docs/replay.md).

    from scrapeshield.replay import replay, build_report
    run = replay(["tests/captures/scrapy.flows"], "policies/default.yaml")
    print(build_report(run).to_json())
"""
from .core import ReplayedDecision, ReplayInputError, ReplayRun, replay, replay_async
from .expect import Expectation, ExpectationResult, ExpectInvalid, check_expectations, load_expectations
from .report import ClientReport, FirstEvent, ReplayReport, RuleReport, build_report

__all__ = [
    "ClientReport",
    "ExpectInvalid",
    "Expectation",
    "ExpectationResult",
    "FirstEvent",
    "ReplayInputError",
    "ReplayReport",
    "ReplayRun",
    "ReplayedDecision",
    "RuleReport",
    "build_report",
    "check_expectations",
    "load_expectations",
    "replay",
    "replay_async",
]

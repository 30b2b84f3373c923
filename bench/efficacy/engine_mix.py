#!/usr/bin/env python3
"""bench_engine.py's realistic mix through the default policy, refusals counted by client group.

The traffic is bench_engine's own (`Traffic(seed=1)`: 1,000 clients, each one browser identity --
chrome, firefox, safari -- or a tool -- curl, python-requests, Scrapy); the engine is built as
bench_engine builds it. One warm-up pass, then one counted pass of --decisions decisions.
Runs as its own process so that `--src` decides which scrapeshield is imported:

    .venv/bin/python bench/efficacy/engine_mix.py [--src /path/to/addons] [--policy FILE] [--json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]


def refusals_by_group(decisions: int, policy_path: str, tick: float = 0.005) -> dict[str, dict[str, int]]:
    import bench_engine as be  # first: it puts --src on sys.path
    from scrapeshield.clock import FakeClock
    from scrapeshield.engine import Engine
    from scrapeshield.policy.compiler import compile_file
    from scrapeshield.store.memory import MemoryStore

    policy = compile_file(policy_path)
    clock = FakeClock()
    engine = Engine(policy, MemoryStore(max_keys=policy.max_keys), clock, signal_sources=be.SIGNAL_SOURCES)
    traffic = be.Traffic(seed=1)
    counts: dict[str, Counter[str]] = defaultdict(Counter)

    async def run_pass(count: bool) -> None:
        for spec in traffic.specs(decisions):
            clock.advance(tick)
            decision = await engine.decide(be.build_facts(spec))
            group = traffic.identity[spec[0]]
            counts[group]["decisions"] += count
            if count and decision.action.value not in ("allow", "log"):
                counts[group][decision.action.value] += 1

    asyncio.run(run_pass(False))
    asyncio.run(run_pass(True))
    return {group: dict(c) for group, c in sorted(counts.items())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", help="the addons/ directory to import scrapeshield from (bench_engine reads it too)")
    ap.add_argument("--policy", help="policy file (default: <src>/../policies/default.yaml)")
    ap.add_argument("--decisions", type=int, default=20_000)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    src = Path(args.src) if args.src else BENCH.parent / "addons"
    sys.path[:0] = [str(BENCH)]
    policy = args.policy or str(src.parent / "policies" / "default.yaml")
    result = refusals_by_group(args.decisions, policy)
    if args.json:
        print(json.dumps(result))
    else:
        for group, c in result.items():
            refused = {k: v for k, v in c.items() if k != "decisions"}
            print(f"{group:<8} {c.get('decisions', 0):>6} decisions, refused: {refused or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

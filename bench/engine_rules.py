#!/usr/bin/env python3
"""Which rule refuses whom: `bench_engine.py`'s traffic and cookie jar through a policy, PASSES
passes of DECISIONS decisions (each pass ~DECISIONS x TICK seconds of fake time), the last pass
counted by client kind, action and rule. For tuning a policy against the bench's synthetic crowd:
a limit that a sustained browser rate reaches shows up only after enough passes.

    .venv/bin/python bench/engine_rules.py policies/default.yaml --passes 9
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_engine as be  # which puts addons/ on the path
from scrapeshield.clock import FakeClock
from scrapeshield.context import DecisionContext
from scrapeshield.policy.compiler import compile_file


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("policy")
    ap.add_argument("--passes", type=int, default=9)
    ap.add_argument("--decisions", type=int, default=20_000, help="decisions a pass")
    ap.add_argument("--tick", type=float, default=0.005, help="fake seconds between decisions")
    args = ap.parse_args()
    traffic, clock = be.Traffic(seed=1), FakeClock()
    engine, jar = be.build_engine(compile_file(args.policy), traffic, clock)
    refused: Counter[tuple[str, str, str]] = Counter()
    requests: Counter[str] = Counter()
    records: Counter[str] = Counter()

    async def one_pass(count: bool) -> None:
        for spec in traffic.specs(args.decisions):
            clock.advance(args.tick)
            ctx = DecisionContext(jar.facts(spec))
            decision = await engine.decide_in(ctx)
            if ctx.session is not None and ctx.session.set_cookie is not None:
                jar.took(spec[0], ctx)
            if count:
                kind = traffic.kind(spec[0])
                requests[kind] += 1
                records[spec[0]] += ctx.session is not None and ctx.session.is_record
                if decision.action.value not in ("allow", "log"):
                    refused[kind, decision.action.value, decision.rule] += 1

    for p in range(args.passes):
        asyncio.run(one_pass(p == args.passes - 1))
    span = args.decisions * args.tick
    print(f"{args.policy}: {args.passes} passes of {args.decisions:,} decisions ({span:.0f} s each), the last counted")
    for kind, n in sorted(requests.items()):
        print(f"  {kind:<17} {n:>6} requests")
    for (kind, action, rule), n in sorted(refused.items()):
        print(f"    {kind:<15} {action:<9} {rule:<28} {n:>6}")
    if records:
        busiest = max(records.values())
        print(f"  records a client in the last pass: mean {sum(records.values()) / len(records):.1f}, "
              f"most {busiest} ({busiest / span * 60:.1f} a minute)")


if __name__ == "__main__":
    main()

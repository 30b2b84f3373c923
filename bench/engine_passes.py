#!/usr/bin/env python3
"""`bench_engine.py`'s engine, traffic and cookie jar, without its timing: a warm-up, then PASSES
passes of DECISIONS decisions on one of its policy variants. For profilers that count rather than
time (callgrind), where the difference between two runs with different PASSES is the work of
(PASSES difference) x DECISIONS decisions, start-up and warm-up cancelling out:

    for p in 1 3; do valgrind --tool=callgrind --callgrind-out-file=cg_$p.out \\
        .venv/bin/python bench/engine_passes.py --variant 1 --passes $p; done
    callgrind_annotate --inclusive=yes cg_3.out | head -60   # minus cg_1.out's, / 6000

Variants are `bench_engine.default_variants` in order: 0 the shipped default, 1 default with
nothing able to trip, 2 - detectors, 3 - scores, 4 - sessions, 5 rules only.

`--rss` prints how much the process grew over the warm-up and the passes (the engine's state for
the bench's 1,000 clients: its working set, against the host's caches) and the objects the garbage
collector tracks.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_engine as be  # which puts addons/ on the path
from scrapeshield.clock import FakeClock
from scrapeshield.policy.compiler import compile_file


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=20_000, help="decisions first (the bench's own warm-up)")
    ap.add_argument("--decisions", type=int, default=3_000, help="decisions a pass")
    ap.add_argument("--passes", type=int, default=1)
    ap.add_argument("--rss", action="store_true", help="print the process's growth and the GC-tracked objects")
    args = ap.parse_args()
    label, path = be.default_variants(tempfile.mkdtemp())[args.variant]
    traffic, clock = be.Traffic(seed=1), FakeClock()
    policy = compile_file(path)
    gc.collect()
    before = _rss_mib()
    engine, jar = be.build_engine(policy, traffic, clock)
    asyncio.run(be._build_decide_pass(engine.decide_in, clock, traffic.specs(args.warmup), jar, 0.005))
    for _ in range(args.passes):
        asyncio.run(be._decide_pass(engine.decide_in, clock, traffic.specs(args.decisions), jar, 0.005))
    print(f"{label}: {args.warmup} + {args.passes} x {args.decisions} decisions")
    if args.rss:
        gc.collect()
        print(f"  grew {_rss_mib() - before:.1f} MiB (RSS), {len(gc.get_objects()):,} objects tracked by the GC, "
              f"{engine.store.tracked_keys():,} store keys")


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Where the time under one native function goes, from a `perf` profile with DWARF call stacks.

This host's `perf` has no hardware counters, but its software clock samples time, and DWARF
unwinding sees through the compiled core (mypyc) and libpython. So where callgrind counts
instructions, this says where the *time* goes, stalls on memory included:

    perf record --call-graph dwarf,16384 -e cpu-clock -F 1000 -o perf.data \\
        .venv/bin/python bench/engine_passes.py --variant 1 --passes 4 --decisions 5000
    perf script -i perf.data -F ip,sym > stacks.txt
    python3 bench/perf_tree.py stacks.txt                  # under Engine.decide_in
    python3 bench/perf_tree.py stacks.txt --root CPyDef_stage___SessionStage___begin

Prints, for the samples whose stack holds ROOT: the compiled functions by inclusive share (each
counted once a sample), then the leaf functions (inlined ones by their own name) by self share.
A sample is one millisecond of CPU at -F 1000. The warm-up pass samples too, so compare shares
within one profile, not sample counts across profiles.
"""
from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterator

DECIDE_IN = "CPyDef_core___decide_in_Engine_gen_____mypyc_generator_helper__"


def samples(path: str) -> Iterator[list[str]]:
    """Each sample's frames, leaf first, as bare symbol names."""
    frames: list[str] = []
    with open(path, errors="replace") as lines:
        for line in lines:
            parts = line.split(None, 1)
            if not parts:
                if frames:
                    yield frames
                frames = []
                continue
            name = parts[1].strip() if len(parts) > 1 else "?"
            frames.append(name.removesuffix(" (inlined)").split("+0x")[0])
    if frames:
        yield frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stacks", help="`perf script -F ip,sym` output")
    ap.add_argument("--root", default=DECIDE_IN)
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = under = 0
    for frames in samples(args.stacks):
        total += 1
        if args.root not in frames:
            continue
        under += 1
        inclusive.update(set(frames[:frames.index(args.root) + 1]))
        own[frames[0]] += 1
    print(f"{total} samples, {under} under {args.root}")
    if not under:
        return
    print("--- inclusive (compiled functions)")
    for name, n in [(f, n) for f, n in inclusive.most_common() if f.startswith("CPyDef_")][:args.top]:
        print(f"{n:6d} {100 * n / under:5.1f}%  {name}")
    print("--- self")
    for name, n in own.most_common(args.top):
        print(f"{n:6d} {100 * n / under:5.1f}%  {name}")


if __name__ == "__main__":
    main()

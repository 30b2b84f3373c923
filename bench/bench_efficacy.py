#!/usr/bin/env python3
"""Mixed-traffic efficacy: do people pass unnoticed while every harvester is stopped and pays?

Real processes on loopback: this checkout's demo shop, a `scrapeshield run` over TLS with a
default policy (this checkout's, or another checkout's with --src), a crowd of simulated people
(bench/efficacy/people.py) and, in the attack run, five scrapers at once (bench/efficacy/scrapers.py,
browser_fleet.py) on the record shapes `/people/N` and `/profile?id=N`, which the default policy
does not name. Then bench_engine.py's realistic mix through the same default policy, refusals by
client group (bench/efficacy/engine_mix.py). Prints the people and scraper tables and every
target of issue #11 as PASS/FAIL.

    .venv/bin/python bench/bench_efficacy.py                       # ~9 minutes: baseline 120 s, attack 60+300 s
    .venv/bin/python bench/bench_efficacy.py --src /tmp/other/addons --json out.json
    .venv/bin/python bench/bench_efficacy.py --people-before 10 --people-during 10 --warmup 20 --attack 40 \\
        --baseline 0 --scrapers naive,pow-fleet                    # a quick look
    .venv/bin/python bench/bench_efficacy.py --baseline 0 --scrapers mimic-fleet   # the mimic fleet, alone

Scale: records are counted over the attack window and scaled to 10 minutes by 600 / --attack.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
for _p in (str(BENCH), str(REPO / "tests"), str(REPO / "addons")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from efficacy.people import CGNAT_ADDRESSES
from efficacy.report import (
    Target,
    engine_mix_target,
    people_table,
    people_targets,
    scraper_table,
    scraper_targets,
)
from efficacy.run import ALL_KINDS, SCRAPER_KINDS, RunConfig, RunResult, default_workdir, run


def engine_mix(src: Path, decisions: int = 20_000) -> dict[str, dict[str, int]]:
    """bench_engine's realistic mix through <src>'s default policy, in its own process."""
    out = subprocess.run([sys.executable, str(BENCH / "efficacy" / "engine_mix.py"), "--src", str(src),
                          "--decisions", str(decisions), "--json"],
                         capture_output=True, text=True, check=True, timeout=300)
    result: dict[str, dict[str, int]] = json.loads(out.stdout)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people-before", type=int, default=60, help="people browsing before the attack")
    ap.add_argument("--people-during", type=int, default=50, help="people arriving during the attack")
    ap.add_argument("--office", type=int, default=0,
                    help="people of one office: one /24, arriving within --office-arrive s of the attack's start")
    ap.add_argument("--office-arrive", type=float, default=60.0, help="seconds over which the office arrives")
    ap.add_argument("--cgnat", type=int, default=0, help=f"subscribers behind {CGNAT_ADDRESSES} CGNAT addresses "
                    "of one /24, arriving like --people-during")
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds of people alone before the attack")
    ap.add_argument("--attack", type=float, default=300.0, help="seconds of attack")
    ap.add_argument("--baseline", type=float, default=120.0, help="seconds of the no-attack run (0: skip it)")
    ap.add_argument("--think", default="1,10", help="think time between pages, MIN,MAX seconds")
    ap.add_argument("--scrapers", default=",".join(SCRAPER_KINDS),
                    help=f"which scrapers, comma-separated, of {','.join(ALL_KINDS)}")
    ap.add_argument("--fleet-workers", type=int, default=os.cpu_count() or 1, help="PoW fleet processes")
    ap.add_argument("--fleet-addresses", type=int, default=200)
    ap.add_argument("--fleet-max-bits", type=int, default=26, help="the fleet gives up on harder challenges")
    ap.add_argument("--fleet-no-referer", action="store_true", help="the fleet sends no Referer (default: forged "
                    "same-site Referer on every record request)")
    ap.add_argument("--browser-addresses", type=int, default=50)
    ap.add_argument("--browser-tabs", type=int, default=2, help="browser contexts at once")
    ap.add_argument("--browser-records-per-context", type=int, default=5)
    ap.add_argument("--mimic-addresses", type=int, default=50, help="mimic fleet identities (own /24 each)")
    ap.add_argument("--mimic-pace", type=float, default=1.0, help="mean seconds between a mimic identity's records")
    ap.add_argument("--mimic-rotate-after", type=int, default=0,
                    help="a new mimic identity (cookies, history) on the address after N records or a refusal")
    ap.add_argument("--src", type=Path, default=REPO / "addons",
                    help="addons/ directory of the scrapeshield to measure (its ../policies/default.yaml too)")
    ap.add_argument("--policy", type=Path, help="the shield's policy (default: the --src checkout's policies/default.yaml; "
                    "the engine mix always runs that default)")
    ap.add_argument("--no-engine-mix", action="store_true")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--json", type=Path, help="write every figure here")
    args = ap.parse_args()

    think = tuple(float(x) for x in args.think.split(","))
    kinds = tuple(k for k in args.scrapers.split(",") if k)
    unknown = set(kinds) - set(ALL_KINDS)
    if unknown or len(think) != 2:
        ap.error(f"unknown scrapers {sorted(unknown)} (know {ALL_KINDS})" if unknown else "--think MIN,MAX")
    src = args.src.resolve()
    config = RunConfig(people_before=args.people_before, people_during=args.people_during, office=args.office,
                       office_arrive_s=args.office_arrive, cgnat=args.cgnat, warmup_s=args.warmup,
                       attack_s=args.attack, baseline_s=args.baseline, think_s=(think[0], think[1]),
                       scrapers=kinds, fleet_workers=args.fleet_workers, fleet_addresses=args.fleet_addresses,
                       fleet_max_bits=args.fleet_max_bits, fleet_referer=not args.fleet_no_referer,
                       browser_addresses=args.browser_addresses,
                       browser_tabs=args.browser_tabs, browser_records_per_context=args.browser_records_per_context,
                       mimic_addresses=args.mimic_addresses, mimic_pace_s=args.mimic_pace,
                       mimic_rotate_after=args.mimic_rotate_after,
                       seed=args.seed, shield_src=src, policy=args.policy.resolve() if args.policy else None,
                       workdir=default_workdir())
    git = subprocess.run(["git", "-C", str(src.parent), "log", "--oneline", "-1"], capture_output=True, text=True,
                         check=False).stdout.strip()
    print(f"# bench_efficacy: shield from {src} ({git or 'not a git checkout'}), policy {config.policy_path}")
    print(f"# nproc={os.cpu_count()}, load avg {os.getloadavg()[0]:.1f}, workdir {config.workdir}")
    print(f"# people {config.people_before} before + {config.people_during} during (baseline run: the same "
          f"{config.people_before + config.people_during}), office {config.office} (arriving over "
          f"{config.office_arrive_s:g} s), CGNAT {config.cgnat}, think {think[0]:g}-{think[1]:g} s; warmup "
          f"{config.warmup_s:g} s, attack {config.attack_s:g} s, baseline {config.baseline_s:g} s; scrapers {kinds}")

    t0 = time.time()
    baseline: RunResult | None = None
    if config.baseline_s > 0:
        baseline = run(config, attack=False)
    attack = run(config, attack=True)
    print(f"# runs took {time.time() - t0:.0f} s; native solver {attack.native_hashes_per_cpu_s / 1e6:.2f} "
          "M hashes per CPU-second (one core)")
    print()
    print("\n".join(people_table([r for r in (baseline, attack) if r is not None])))
    print()
    print("\n".join(scraper_table(attack)))
    targets: list[Target] = people_targets(attack, baseline) + scraper_targets(attack)
    mix: dict[str, dict[str, int]] = {}
    if not args.no_engine_mix:
        mix = engine_mix(src)
        print()
        print("bench_engine realistic mix (20,000 decisions after a warm-up pass), refusals by client group:")
        for group, counts in mix.items():
            refused = {k: v for k, v in counts.items() if k != "decisions"}
            print(f"  {group:<8} {counts.get('decisions', 0):>6} decisions, refused {refused or '-'}")
        refusals = {g: {k: v for k, v in c.items() if k != "decisions"} for g, c in mix.items()}
        targets.append(engine_mix_target(refusals))
    print()
    for target in targets:
        print(target.line())
    if args.json:
        args.json.write_text(json.dumps({
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(config).items()},
            "baseline": dataclasses.asdict(baseline) if baseline else None,
            "attack": dataclasses.asdict(attack),
            "engine_mix": mix,
            "targets": [dataclasses.asdict(t) for t in targets],
        }, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The issue's targets, evaluated on run results, and the tables BENCHMARKS.md quotes.

Records per 10 minutes, from an attack window of `attack_s` seconds: what the scraper got, plus
the rate of its second half carried on to 10 minutes (records + late / (attack_s / 2) * (600 -
attack_s)). A scraper stopped early projects to what it got; one still harvesting at the end is
projected at its latest rate (its first-minute burst is not multiplied). A window of 10 minutes
or more is scaled linearly to 10 minutes.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .people import SHARED_NETWORKS, PersonResult
from .run import RunResult
from .scrapers import ScraperResult

RECORDS_LIMIT = 100
FLEET_CPU_PER_RECORD = 0.1
FLEETS = ("pow-fleet", "browser-fleet", "mimic-fleet")
# The fleets that solve with the native solver: each pays at least FLEET_CPU_PER_RECORD a record.
SOLVING_FLEETS = ("pow-fleet", "mimic-fleet")
# bench_engine's client kinds that are people's browsers; every other kind (curl, python-requests,
# a requests.Session, Scrapy) is a tool.
BROWSERS = ("chrome", "firefox", "safari")


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name}: {self.detail}"


def records_per_10min(scraper: ScraperResult, attack_s: float) -> float:
    if attack_s >= 600:
        return scraper.records * 600.0 / attack_s
    if attack_s <= 0:
        return float(scraper.records)
    return scraper.records + scraper.late_records / (attack_s / 2) * (600.0 - attack_s)


def fleet_cpu_per_record(scraper: ScraperResult) -> float:
    """Solver CPU-seconds per record (inf when it got none: it paid for nothing)."""
    return scraper.solver_cpu_s / scraper.records if scraper.records else float("inf")


def _people(people: Iterable[PersonResult], group: str) -> list[PersonResult]:
    return [p for p in people if p.group == group]


def people_targets(attack: RunResult, baseline: RunResult | None) -> list[Target]:
    """People: no blocks or throttles; 'before' never challenged; 'during' and the shared networks' people
    (an office, a CGNAT range: they arrive during the attack) at most once; no attack, no challenge.

    Without a baseline run, "no attack" is the warm-up of the attack run: nobody challenged before it began."""
    everyone = attack.people + (baseline.people if baseline else [])
    blocked = [p for p in everyone if p.blocks]
    throttled = [p for p in everyone if p.throttles]
    before = _people(attack.people, "before")
    during = _people(attack.people, "during")
    before_hit = [p for p in before if p.challenged]
    during_hit = [p for p in during if p.challenged > 1]
    out = [
        Target("people: 0 blocks", not blocked, f"{sum(p.blocks for p in everyone)} blocks to {len(blocked)} of "
               f"{len(everyone)} people{_examples(blocked)}"),
        Target("people: 0 throttles", not throttled, f"{sum(p.throttles for p in everyone)} throttles to "
               f"{len(throttled)} of {len(everyone)} people{_examples(throttled)}"),
        Target("people browsing before the attack: never challenged", not before_hit,
               f"{len(before_hit)} of {len(before)} challenged{_examples(before_hit)}"),
        Target("people arriving during the attack: at most one challenge each", not during_hit,
               f"{len(during_hit)} of {len(during)} challenged more than once "
               f"({sum(1 for p in during if p.challenged)} challenged at all){_examples(during_hit)}"),
    ]
    for group in SHARED_NETWORKS:
        shared = _people(attack.people, group)
        if shared:
            hit = [p for p in shared if p.challenged > 1]
            out.append(Target(f"people sharing a network ({group}): at most one challenge each", not hit,
                              f"{len(hit)} of {len(shared)} challenged more than once "
                              f"({sum(1 for p in shared if p.challenged)} challenged at all){_examples(hit)}"))
    if baseline is not None:
        hit = [p for p in baseline.people if p.challenged]
        out.append(Target("no attack (baseline run): nobody challenged", not hit,
                          f"{len(hit)} of {len(baseline.people)} challenged{_examples(hit)}"))
    else:
        warmup = attack.duration_s - attack.attack_s
        hit = [p for p in attack.people if p.first_challenge_s is not None and p.first_challenge_s < warmup]
        out.append(Target("no attack (the warm-up): nobody challenged", not hit,
                          f"{len(hit)} of {len(before)} challenged in the first {warmup:.0f} s{_examples(hit)}"))
    return out


def scraper_targets(attack: RunResult) -> list[Target]:
    out = []
    for s in attack.scrapers:
        value = records_per_10min(s, attack.attack_s)
        detail = (f"{s.records} records in {attack.attack_s:.0f} s ({s.late_records} in its second half) "
                  f"= {value:.0f} per 10 min")
        out.append(Target(f"{s.name}: <= {RECORDS_LIMIT} records per 10 min", value <= RECORDS_LIMIT, detail))
    for s in attack.scrapers:
        if s.name in SOLVING_FLEETS:
            cost = fleet_cpu_per_record(s)
            out.append(Target(f"{s.name} pays >= {FLEET_CPU_PER_RECORD} CPU-s per record",
                              cost >= FLEET_CPU_PER_RECORD,
                              f"{s.solver_cpu_s:.2f} solver CPU-s for {s.records} records = {cost:.3f} "
                              f"(whole fleet processes {s.process_cpu_s:.2f} CPU-s)"))
    return out


def engine_mix_target(refusals: Mapping[str, Mapping[str, int]]) -> Target:
    wrong = {group: dict(by_action) for group, by_action in refusals.items() if group in BROWSERS and by_action}
    return Target("bench_engine realistic mix: refusals only for the tool clients", not wrong,
                  "; ".join(f"{g}: {dict(a) or '-'}" for g, a in sorted(refusals.items())))


def _examples(people: list[PersonResult]) -> str:
    if not people:
        return ""
    sample = ", ".join(f"#{p.index} {p.build} {p.address} (first at {p.first_challenge_s}s, "
                       f"{p.refused_paths[:2] or ''})" for p in people[:3])
    return f"; e.g. {sample}"


def people_table(runs: Iterable[RunResult]) -> list[str]:
    head = (f"{'group':<17} {'people':>6} {'pages':>6} {'assets':>6} {'records':>7} {'challenged':>10} "
            f"{'challenges':>10} {'max/person':>10} {'max bits':>8} {'throttled':>9} {'blocked':>7} {'errors':>6}")
    lines = [head, "-" * len(head)]
    for run in runs:
        for group in ("baseline", "before", "during", *SHARED_NETWORKS):
            ps = _people(run.people, group)
            if not ps:
                continue
            label = f"{group} ({run.kind})" if group in SHARED_NETWORKS else group
            lines.append(
                f"{label:<17} {len(ps):>6} {sum(p.pages for p in ps):>6} {sum(p.assets for p in ps):>6} "
                f"{sum(p.records for p in ps):>7} {sum(1 for p in ps if p.challenged):>10} "
                f"{sum(p.challenged for p in ps):>10} {max(p.challenged for p in ps):>10} "
                f"{max(p.max_bits for p in ps) or '-':>8} "
                f"{sum(1 for p in ps if p.throttles):>9} {sum(1 for p in ps if p.blocks):>7} "
                f"{sum(p.errors for p in ps):>6}")
    return lines


def scraper_table(attack: RunResult) -> list[str]:
    head = (f"{'scraper':<14} {'requests':>8} {'records':>7} {'path/query':>10} {'per 10min':>9} {'challenges':>10} "
            f"{'solved':>6} {'throttled':>9} {'blocked':>7} {'1st refusal':>11} {'CPU-s/rec':>9} {'max bits':>8}")
    lines = [head, "-" * len(head)]
    for s in attack.scrapers:
        shapes = f"{s.records_by_shape.get('path', 0)}/{s.records_by_shape.get('query', 0)}"
        if s.name in SOLVING_FLEETS:
            cost = f"{fleet_cpu_per_record(s):.3f}"
        elif s.name == "browser-fleet" and s.records:
            cost = f"({s.process_cpu_s / s.records:.2f})"
        else:
            cost = "-"
        lines.append(
            f"{s.name:<14} {s.requests:>8} {s.records:>7} {shapes:>10} {records_per_10min(s, attack.attack_s):>9.0f} "
            f"{s.challenges:>10} {s.solved:>6} {s.throttles:>9} {s.blocks:>7} {s.first_refusal or '-':>11} "
            f"{cost:>9} {s.max_bits or '-':>8}")
    for s in attack.scrapers:
        if s.name in FLEETS:
            lines.append(f"  {s.name}: {s.description}; processes {s.process_cpu_s:.1f} CPU-s, solver "
                         f"{s.solver_cpu_s:.1f} CPU-s, {s.hashes:,} hashes{'; ' + s.notes if s.notes else ''}")
    return lines

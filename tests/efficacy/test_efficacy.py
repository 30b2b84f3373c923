"""Issue #11's efficacy targets at a small scale: 20 people and every scraper kind for 60 s.

One run (module fixture, ~85 s on a quiet machine): a real demo shop and `scrapeshield run` over
TLS with policies/default.yaml; 10 people browse from the start, the attack begins after 15 s (naive,
rotating /24s, Chrome-impersonating, a native proof-of-work fleet on every core, a headless
Chromium fleet through 5 source addresses), and 10 more people arrive during it. Think time is
1-6 s (the bench's 1-10 s would give each person too few pages in a minute). bench_engine's
realistic mix runs through the same default policy. The full-size figures are bench/bench_efficacy.py's
(BENCHMARKS.md).

`SCRAPESHIELD_EFFICACY_SRC=/other/checkout/addons` measures another checkout's scrapeshield and
default policy instead of this one's (the demo shop stays this checkout's).

Tests marked `needs_session_identity` assert the targets that need #11 parts 1-6 (session identity,
crowd-safe default policy, adaptive proof of work); before them (main at 7b2ae26) these failed:
before-attack people challenged, impersonating / pow-fleet / browser-fleet over 100 records, the
fleet paying 0.002 CPU-s per record, and bench_engine's mix challenging every browser group. The
unmarked ones check that the harness really did what it claims, so a passing target cannot be an
empty run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from efficacy.people import PersonResult
from efficacy.report import (
    BROWSERS,
    FLEET_CPU_PER_RECORD,
    RECORDS_LIMIT,
    fleet_cpu_per_record,
    people_table,
    records_per_10min,
    scraper_table,
)
from efficacy.run import SCRAPER_KINDS, RunConfig, RunResult, run
from efficacy.scrapers import ScraperResult

pytestmark = pytest.mark.e2e
needs_session = pytest.mark.needs_session_identity

BENCH = Path(__file__).resolve().parents[2] / "bench"
SHIELD_SRC = Path(os.environ.get("SCRAPESHIELD_EFFICACY_SRC") or BENCH.parent / "addons").resolve()
WARMUP_S = 15.0
ATTACK_S = 60.0


@pytest.fixture(scope="module")
def attack(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    config = RunConfig(people_before=10, people_during=10, warmup_s=WARMUP_S, attack_s=ATTACK_S, baseline_s=0,
                       think_s=(1.0, 6.0), fleet_addresses=50, browser_addresses=5, browser_tabs=1,
                       shield_src=SHIELD_SRC, workdir=tmp_path_factory.mktemp("efficacy"))
    result = run(config, attack=True)
    print("\n".join([*people_table([result]), "", *scraper_table(result)]))  # shown with -rA (BENCHMARKS.md)
    return result


@pytest.fixture(scope="module")
def engine_mix() -> dict[str, dict[str, int]]:
    out = subprocess.run([sys.executable, str(BENCH / "efficacy" / "engine_mix.py"), "--src", str(SHIELD_SRC),
                          "--decisions", "10000", "--json"], capture_output=True, text=True, check=True, timeout=120)
    result: dict[str, dict[str, int]] = json.loads(out.stdout)
    return result


def _group(attack: RunResult, name: str) -> list[PersonResult]:
    return [p for p in attack.people if p.group == name]


def _scraper(attack: RunResult, name: str) -> ScraperResult:
    return next(s for s in attack.scrapers if s.name == name)


def _who(people: list[PersonResult]) -> list[str]:
    """Short descriptions for assertion messages."""
    return [f"#{p.index} {p.group} {p.build} challenged {p.challenged}x (first at {p.first_challenge_s} s), "
            f"{p.throttles} throttles, {p.blocks} blocks {p.refused_paths[:2]}" for p in people]


# --- the harness did what it claims ------------------------------------------------------------

def test_people_browse_pages_with_their_assets_and_records(attack: RunResult) -> None:
    for group in ("before", "during"):
        people = _group(attack, group)
        assert len(people) == 10
        assert sum(p.pages for p in people) >= 2 * len(people), group
        assert sum(p.assets for p in people) >= 3 * len(people), group
    assert sum(p.records for p in attack.people) > 0
    assert len({p.build.rstrip("0123456789_") for p in attack.people}) >= 3  # chrome/edge, firefox, safari
    assert sum(p.errors for p in attack.people) <= len(attack.people)


def test_every_scraper_kind_ran_on_both_unnamed_record_shapes(attack: RunResult) -> None:
    assert [s.name for s in attack.scrapers] == list(SCRAPER_KINDS)
    for s in attack.scrapers:
        # A fleet priced out of reach spends the run hashing: a few requests and many CPU-seconds.
        assert s.requests >= 5 or s.solver_cpu_s >= 5.0, s.summary()
        assert s.errors <= s.requests // 2, s.summary()


def test_pow_fleet_solves_with_the_native_solver_when_challenged(attack: RunResult) -> None:
    fleet = _scraper(attack, "pow-fleet")
    assert attack.native_hashes_per_cpu_s > 1e6
    if fleet.challenges:
        assert fleet.hashes > 0 and fleet.solver_cpu_s > 0, fleet.summary()


# --- people ------------------------------------------------------------------------------------

def test_people_are_never_blocked(attack: RunResult) -> None:
    assert _who([p for p in attack.people if p.blocks]) == []


def test_people_are_never_throttled(attack: RunResult) -> None:
    assert _who([p for p in attack.people if p.throttles]) == []


@needs_session
def test_nobody_is_challenged_before_the_attack(attack: RunResult) -> None:
    early = [p for p in attack.people if p.first_challenge_s is not None and p.first_challenge_s < WARMUP_S]
    assert _who(early) == []


@needs_session
def test_people_browsing_before_the_attack_are_never_challenged(attack: RunResult) -> None:
    assert _who([p for p in _group(attack, "before") if p.challenged]) == []


@needs_session
def test_people_arriving_during_the_attack_solve_at_most_one_challenge(attack: RunResult) -> None:
    assert _who([p for p in _group(attack, "during") if p.challenged > 1]) == []


# --- scrapers ----------------------------------------------------------------------------------

@needs_session
@pytest.mark.parametrize("name", SCRAPER_KINDS)
def test_scraper_gets_at_most_100_records_per_10_minutes(attack: RunResult, name: str) -> None:
    """The target (<= 100 records per 10 minutes) is bench_efficacy.py's, over a 10-minute attack
    (BENCHMARKS.md); issue 11 sets it for benchmarks, not timed tests. Here the attack lasts 60 s
    and the 10-minute figure is projected from its last 30 s, where ONE record moves the projection
    by 18. The price of the fleets' identities rises over the first tens of seconds of an attack,
    so a shorter window projects the ramp, not the rate: with 40 s, one full-suite run gave the
    browser fleet 7 records in the last 20 s (221 projected) while the 10-minute benchmark
    measures 74. So this small run holds every scraper to the target on what it actually got, and
    to twice the target on the projection: a regression (a fleet walking through, 215 records in
    90 s before #11) fails both, noise does not."""
    scraper = _scraper(attack, name)
    assert scraper.records <= RECORDS_LIMIT, scraper.summary()
    assert records_per_10min(scraper, attack.attack_s) <= 2 * RECORDS_LIMIT, scraper.summary()


@needs_session
def test_pow_fleet_pays_at_least_a_tenth_cpu_second_per_record(attack: RunResult) -> None:
    fleet = _scraper(attack, "pow-fleet")
    assert fleet_cpu_per_record(fleet) >= FLEET_CPU_PER_RECORD, fleet.summary()


# --- bench_engine's realistic mix -----------------------------------------------------------------

@needs_session
def test_engine_realistic_mix_refuses_only_tool_clients(engine_mix: dict[str, dict[str, int]]) -> None:
    assert set(BROWSERS) < set(engine_mix)  # and the tools: curl, requests, Scrapy, ...
    refused = {group: {k: v for k, v in counts.items() if k != "decisions"} for group, counts in engine_mix.items()}
    assert {group: r for group, r in refused.items() if group in BROWSERS and r} == {}
    assert any(refused[group] for group in engine_mix if group not in BROWSERS)  # not an empty run: tools refused

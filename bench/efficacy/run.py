"""One efficacy run: a fresh demo origin and `scrapeshield run` over TLS, people, and (optionally) an attack.

Timeline of an attack run (seconds from its start):

    0 ........ warmup ........................ warmup + attack
    |-- "before" people arrive (first half of warmup), browse to the end --|
                  |-- scrapers and fleets, all at once ------------------|
                  |-- "during" people arrive (first 80% of the attack) ---|

A baseline run has the same people (all in group "baseline") and no scrapers. The shield is
whatever `shield_src` holds (an `addons/` directory: this checkout's by default) with that
checkout's `policies/default.yaml`; the origin is always this checkout's demo shop.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from harness import ADDONS, REPO, OriginProcess, ShieldProcess

from . import browser_fleet, scrapers
from .people import BROWSER_BUILDS, PersonResult, crowd
from .scrapers import ScraperResult
from .solver import BrowserSolver, NativeSolver, build_native_solver, native_rate

# What a run attacks with by default (bench_efficacy.py's and tests/efficacy's attack).
SCRAPER_KINDS = ("naive", "rotating", "impersonating", "pow-fleet", "browser-fleet")
# Also known to bench_efficacy.py --scrapers: identities that show a person's history, then read
# records faster than a person (BENCHMARKS.md, "The mimic fleet"). Measured in a run of its own:
# beside the PoW fleet, two solving fleets on two cores starve the shield and the people.
ALL_KINDS = (*SCRAPER_KINDS, "mimic-fleet")


@dataclass(frozen=True)
class RunConfig:
    people_before: int = 60
    people_during: int = 50
    # People on shared networks (people.SHARED_NETWORKS), in the attack run and the baseline run alike:
    # an office whose staff arrive within `office_arrive_s` of the attack's start (the baseline's
    # second quarter), a CGNAT range whose subscribers arrive like "during".
    office: int = 0
    office_arrive_s: float = 60.0
    cgnat: int = 0
    warmup_s: float = 60.0
    attack_s: float = 300.0
    baseline_s: float = 120.0
    think_s: tuple[float, float] = (1.0, 10.0)
    builds: tuple[str, ...] = BROWSER_BUILDS   # curl_cffi impersonation targets the people pick from
    scrapers: tuple[str, ...] = SCRAPER_KINDS
    fleet_workers: int = os.cpu_count() or 1
    fleet_addresses: int = 200
    fleet_max_bits: int = 26
    fleet_referer: bool = True                 # the fleet forges a same-site Referer on record requests
    browser_addresses: int = 50
    browser_records_per_context: int = 5
    browser_tabs: int = 2
    mimic_addresses: int = 50
    mimic_pace_s: float = 1.0                  # mean seconds between one identity's records
    mimic_rotate_after: int = 0                # a new identity on the address after this many records (0: never)
    seed: int = 11
    shield_src: Path = ADDONS                  # an addons/ directory holding the scrapeshield to measure
    policy: Path | None = None                 # default: <shield_src>/../policies/default.yaml
    workdir: Path | None = None

    @property
    def policy_path(self) -> Path:
        return self.policy if self.policy is not None else self.shield_src.parent / "policies" / "default.yaml"


@dataclass
class RunResult:
    kind: str                                   # "attack" or "baseline"
    duration_s: float
    attack_s: float
    people: list[PersonResult] = field(default_factory=list)
    scrapers: list[ScraperResult] = field(default_factory=list)
    native_hashes_per_cpu_s: float = 0.0
    shield_log_tail: str = ""


@contextlib.contextmanager
def shield_in_front(config: RunConfig, workdir: Path) -> Iterator[ShieldProcess]:
    """A fresh origin (this checkout's demo shop) and a fresh shield (config.shield_src) over it."""
    workdir.mkdir(parents=True, exist_ok=True)
    keys = workdir / "challenge.keys"
    keys.write_text(os.urandom(32).hex() + "\n")
    keys.chmod(0o600)
    env = None if config.shield_src == ADDONS else {"PYTHONPATH": str(config.shield_src)}
    with OriginProcess(workdir=workdir / "origin") as origin:
        shield = ShieldProcess(origin.url, config.policy_path, workdir=workdir / "shield", env=env,
                               decision_log=workdir / "decisions.jsonl",
                               extra_args=["--confdir", str(workdir / "confdir"), "--secret-file", str(keys)])
        with shield:
            yield shield


def _scraper_futures(config: RunConfig, base: str, until: float, threads: ThreadPoolExecutor,
                     processes: ProcessPoolExecutor, library: Path) -> dict[str, list[Future[ScraperResult]]]:
    futures: dict[str, list[Future[ScraperResult]]] = {}
    if "naive" in config.scrapers:
        futures["naive"] = [threads.submit(scrapers.naive, base, until)]
    if "rotating" in config.scrapers:
        futures["rotating"] = [threads.submit(scrapers.rotating, base, until)]
    if "impersonating" in config.scrapers:
        futures["impersonating"] = [threads.submit(scrapers.impersonating, base, until)]
    if "pow-fleet" in config.scrapers:
        futures["pow-fleet"] = [
            processes.submit(scrapers.pow_fleet_worker, base, until, k, config.fleet_workers, str(library),
                             config.fleet_addresses, config.fleet_max_bits, 60.0, 0.05, config.fleet_referer)
            for k in range(config.fleet_workers)]
    if "browser-fleet" in config.scrapers:
        futures["browser-fleet"] = [processes.submit(
            browser_fleet.browser_fleet, base, until, config.browser_addresses,
            config.browser_records_per_context, config.browser_tabs)]
    if "mimic-fleet" in config.scrapers:
        futures["mimic-fleet"] = [
            processes.submit(scrapers.mimic_fleet_worker, base, until, k, config.fleet_workers, str(library),
                             config.mimic_addresses, config.fleet_max_bits, config.mimic_pace_s, 60.0,
                             config.mimic_rotate_after)
            for k in range(config.fleet_workers)]
    return futures


def _combine(name: str, parts: list[ScraperResult], config: RunConfig) -> ScraperResult:
    if len(parts) == 1:
        return parts[0]
    total = ScraperResult(name, "", workers=len(parts))
    for part in parts:
        total.merge(part)
    if name == "pow-fleet":
        n = config.fleet_addresses
        total.description = (f"{len(parts)} processes (one per core), native OpenSSL solver, {n} addresses in "
                             f"{n} /24s, curl_cffi {scrapers.SCRAPER_BUILD}")
        total.notes = "; ".join(sorted({p.notes for p in parts if p.notes}))
    elif name == "mimic-fleet":
        n = config.mimic_addresses
        total.description = (f"{len(parts)} processes, {n} addresses in {n} /24s, curl_cffi {scrapers.SCRAPER_BUILD}, "
                             f"a person's history each, records {config.mimic_pace_s:g} s apart on average, native solver"
                             + (f", a new identity every {config.mimic_rotate_after} records or refusal"
                                if config.mimic_rotate_after else ""))
        total.notes = "; ".join(sorted({p.notes for p in parts if p.notes}))
    return total


def run(config: RunConfig, *, attack: bool) -> RunResult:
    """One run, bounded by its timeline (plus start-up and a short grace for in-flight requests)."""
    workdir = config.workdir or Path(tempfile.mkdtemp(prefix="efficacy-"))
    workdir = workdir / ("attack" if attack else "baseline")
    duration = config.warmup_s + config.attack_s if attack else config.baseline_s
    workdir.mkdir(parents=True, exist_ok=True)
    library = build_native_solver(workdir)
    rate = native_rate(library)
    with shield_in_front(config, workdir) as shield:
        base = shield.https_url
        started = time.time()
        until = started + duration
        if attack:
            crowd_from, crowd_to = config.warmup_s, config.warmup_s + 0.8 * config.attack_s
            groups = [("before", config.people_before, 0.0, config.warmup_s / 2),
                      ("during", config.people_during, crowd_from, crowd_to)]
        else:
            crowd_from, crowd_to = duration / 4, 0.8 * duration
            groups = [("baseline", config.people_before, 0.0, duration / 4),
                      ("baseline", config.people_during, crowd_from, crowd_to)]
        groups += [("office", config.office, crowd_from, crowd_from + config.office_arrive_s),
                   ("cgnat", config.cgnat, crowd_from, crowd_to)]
        result = RunResult("attack" if attack else "baseline", duration, config.attack_s if attack else 0.0,
                           native_hashes_per_cpu_s=rate)
        with ThreadPoolExecutor(4) as threads, \
                ProcessPoolExecutor(2 * config.fleet_workers + 1, mp_context=get_context("spawn")) as processes:
            futures: dict[str, list[Future[ScraperResult]]] = {}

            async def everything() -> list[PersonResult]:
                people = asyncio.create_task(crowd(base, groups=groups, run_started=started, until=until,
                                                   seed=config.seed, think_s=config.think_s, builds=config.builds,
                                                   solver=BrowserSolver(NativeSolver(library))))
                if attack:
                    await asyncio.sleep(max(0.0, started + config.warmup_s - time.time()))
                    futures.update(_scraper_futures(config, base, until, threads, processes, library))
                return await people

            result.people = asyncio.run(everything())
            for name in ALL_KINDS:
                if name in futures:
                    result.scrapers.append(_combine(name, [f.result() for f in futures[name]], config))
        result.shield_log_tail = shield.log_text()[-2000:]
    return result


def default_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="efficacy-"))


__all__ = ["ALL_KINDS", "REPO", "SCRAPER_KINDS", "RunConfig", "RunResult", "default_workdir", "run"]

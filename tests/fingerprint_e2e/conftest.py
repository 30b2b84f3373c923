"""One real `scrapeshield run` per module (policy: the module's POLICY), its decision log, a browser."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fp_clients import CHROMIUM, CHROMIUM_ARGS, DecisionLogFile, RunningShield

from harness import ShieldProcess, require_executable


@pytest.fixture(scope="module")
def shield(request: pytest.FixtureRequest, demo_origin: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningShield]:
    """A shield in front of the session demo origin, running the test module's `POLICY`."""
    workdir = tmp_path_factory.mktemp("fingerprint-shield")
    log_path = workdir / "decisions.jsonl"
    with ShieldProcess(demo_origin, policy_text=request.module.POLICY, decision_log=log_path,
                       workdir=workdir) as process:
        yield RunningShield(process, DecisionLogFile(log_path))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium, driven by Playwright (never a downloaded browser)."""
    require_executable(CHROMIUM)  # a failure when missing: scripts/system-packages installs it
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()

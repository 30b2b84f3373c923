"""Hypothesis profiles: `default` keeps the suite quick; `long` is for manual runs:

    SCRAPESHIELD_HYPOTHESIS=long .venv/bin/python -m pytest tests/fuzz -q
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "fuzz") not in sys.path:
    sys.path.insert(0, str(ROOT / "fuzz"))

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
settings.register_profile("default", max_examples=40, deadline=None, suppress_health_check=_QUIET)
settings.register_profile("long", max_examples=3000, deadline=None, suppress_health_check=_QUIET)
settings.load_profile(os.environ.get("SCRAPESHIELD_HYPOTHESIS", "default"))


@pytest.fixture(scope="session")
def adapter() -> Iterator[object]:
    import targets

    harness = targets.adapter()
    yield harness
    harness.close()
    targets._HARNESS = None

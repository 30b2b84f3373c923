"""The efficacy test imports the bench's package (bench/efficacy) and marks the targets it asserts."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

_BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(_BENCH) not in sys.path:
    sys.path.insert(0, str(_BENCH))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "needs_session_identity: an issue #11 efficacy target that only the session identity, crowd-safe "
        "default policy and adaptive proof of work (#11 parts 1-6) can meet",
    )

"""One real `scrapeshield run` (gate policy, key file) per test module."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from challenge_helpers import GATE_POLICY, start_shield

from harness import ShieldProcess


@pytest.fixture(scope="module")
def shield(tmp_path_factory: pytest.TempPathFactory, demo_origin: str) -> Iterator[ShieldProcess]:
    proc = start_shield(tmp_path_factory.mktemp("challenge"), demo_origin, GATE_POLICY)
    try:
        yield proc
    finally:
        proc.stop()

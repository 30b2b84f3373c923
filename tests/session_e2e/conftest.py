"""One real `scrapeshield run` with sessions (key file, session policy) per test module."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "challenge_e2e"))

from challenge_helpers import start_shield
from session_helpers import SESSION_POLICY

from harness import ShieldProcess


@pytest.fixture(scope="module")
def shield(tmp_path_factory: pytest.TempPathFactory, demo_origin: str) -> Iterator[ShieldProcess]:
    proc = start_shield(tmp_path_factory.mktemp("sessions"), demo_origin, SESSION_POLICY)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def default_shield(tmp_path_factory: pytest.TempPathFactory, demo_origin: str) -> Iterator[ShieldProcess]:
    """The shipped default policy."""
    default = Path(__file__).resolve().parents[2] / "policies" / "default.yaml"
    proc = ShieldProcess(demo_origin, policy=default, workdir=tmp_path_factory.mktemp("default")).start()
    try:
        yield proc
    finally:
        proc.stop()

"""Fixtures for replay tests: the committed captures and policies written from YAML text."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from replaytools import CAPTURES

PolicyFile = Callable[[str], Path]


@pytest.fixture
def captures() -> Path:
    """tests/captures/: real traffic recorded through the shield (see tests/captures/record.py)."""
    return CAPTURES


@pytest.fixture
def policy_file(tmp_path: Path) -> PolicyFile:
    """`policy_file(yaml_text) -> Path`: a policy file to replay against; one new file per call."""
    count = 0

    def write(text: str) -> Path:
        nonlocal count
        count += 1
        path = tmp_path / f"policy{count}.yaml"
        path.write_text(text)
        return path

    return write

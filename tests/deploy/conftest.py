"""Session fixtures for the deploy tests: the wheel built once, installed once outside the checkout."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from deploytools import LOCK, REPO, InstalledShield, build_wheel


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> InstalledShield:
    """`python -m venv` + `pip install -c requirements.lock <wheel>`, in the system temp dir."""
    root = tmp_path_factory.mktemp("installed")
    assert REPO not in root.parents
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(LOCK), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    return InstalledShield(venv, wheel)


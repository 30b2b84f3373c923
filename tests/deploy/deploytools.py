"""Helpers for the deploy tests: the wheel built from this checkout, the venv it is installed in,
the commands these tests drive."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from harness import REPO

LOCK = REPO / "requirements.lock"


@dataclass(frozen=True)
class InstalledShield:
    """A venv (outside the checkout) holding only the wheel and its runtime dependencies."""

    venv: Path
    wheel: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def scrapeshield(self) -> Path:
        return self.venv / "bin" / "scrapeshield"

    def env(self) -> dict[str, str]:
        """No PYTHONPATH: the checkout's package must not leak in."""
        return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")} | {
            "PYTHONUNBUFFERED": "1", "HOME": str(self.venv.parent)}

    def run(self, *args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.scrapeshield), *args], capture_output=True, text=True, timeout=timeout,
                              cwd=cwd or self.venv.parent, env=self.env())


def build_wheel(out: Path) -> Path:
    """`pip wheel` (setuptools in an isolated build env, no dependencies) of a copy of what the
    Dockerfile copies: no stale build/ directory or stray file of the checkout gets in."""
    src = out / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    for tree in ("addons", "policies"):  # addons/scrapeshield/policies is a relative symlink into policies/
        shutil.copytree(REPO / tree, src / tree, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".scrapeshield-accel*"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = out.glob("scrapeshield-*.whl")
    return wheel


def need(tool: str) -> str:
    """A tool the README's test command installs: missing is a failure, never a skip."""
    path = shutil.which(tool)
    assert path, f"{tool} is not installed: run scripts/system-packages"
    return path

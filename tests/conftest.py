"""Shared fixtures: the demo origin as a real process, and a factory of real shields."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

_TESTS = Path(__file__).resolve().parent
# `import harness`, `import scrapeshield` and `import demo` work whatever pytest's import mode or PYTHONPATH.
for _path in (str(_TESTS), str(_TESTS.parent / "addons"), str(_TESTS.parent)):  # tests, package, demo
    if _path not in sys.path:
        sys.path.insert(0, _path)

from harness import OriginProcess, ShieldProcess  # noqa: E402

ShieldFactory = Callable[..., ShieldProcess]
SESSION_ORIGIN = "<session demo origin>"  # shield_factory's default upstream


@pytest.fixture(scope="session")
def demo_origin_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OriginProcess]:
    """The demo origin running as `python -m demo.shop`, shared by the session."""
    with OriginProcess(workdir=tmp_path_factory.mktemp("origin")) as origin:
        yield origin


@pytest.fixture(scope="session")
def demo_origin(demo_origin_process: OriginProcess) -> str:
    """The session demo origin's URL, e.g. http://127.0.0.1:40123."""
    return demo_origin_process.url


@pytest.fixture
def shield_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ShieldFactory]:
    """Start real `scrapeshield run` processes; every one is stopped when the test ends.

    `shield_factory(policy=FILE | policy_text=YAML, **ShieldProcess kwargs)`. The upstream
    defaults to the session demo origin; `upstream=None` omits `--upstream`, so the shield
    starts its own built-in demo origin.
    """
    started: list[ShieldProcess] = []

    def start(*, upstream: str | None = SESSION_ORIGIN, **kwargs: Any) -> ShieldProcess:
        if upstream == SESSION_ORIGIN:
            upstream = request.getfixturevalue("demo_origin")
        kwargs.setdefault("workdir", tmp_path / f"shield{len(started)}")
        shield = ShieldProcess(upstream, **kwargs)
        started.append(shield)
        return shield.start()

    yield start
    for shield in reversed(started):
        shield.stop()

"""Shared fixtures: the demo origin as a real process, and a factory of real shields."""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_TESTS = Path(__file__).resolve().parent
# `import harness`, `import scrapeshield` and `import demo` work whatever pytest's import mode or PYTHONPATH.
for _path in (str(_TESTS), str(_TESTS.parent / "addons"), str(_TESTS.parent)):  # tests, package, demo
    if _path not in sys.path:
        sys.path.insert(0, _path)

from harness import OriginProcess, ShieldProcess

ShieldFactory = Callable[..., ShieldProcess]

# -- kinds ------------------------------------------------------------------------------------------
# Every test has exactly one kind of the markers registered in pyproject.toml (plus `redis` when it
# needs a redis-server): by its folder or file here, unless the test or its module names one itself.
KINDS = ("unit", "addon", "e2e", "browser")
KIND_OF_PATH = {  # most specific first: a file, then its folder (relative to tests/)
    "reload/test_hot_reload.py": ("e2e",),
    "ops/test_operator_lists.py": ("unit",),
    "ops/test_control_api_e2e.py": ("e2e", "redis"),
    "ops/test_health.py": ("e2e", "redis"),
    "ops/test_dashboard_chromium.py": ("browser",),
    "reload/test_script_reexec.py": ("addon",),
    "reload": ("unit",),
    "unit": ("unit",),
    "replay": ("unit",),
    "addon": ("addon",),
    "store": ("unit", "redis"),
    "redis_e2e": ("e2e", "redis"),
    "e2e": ("e2e",),
    "challenge_e2e": ("e2e",),
    "fingerprint_e2e": ("e2e",),
    "harvest": ("e2e",),
    "browser": ("browser",),
    "ops": ("e2e",),
    "efficacy": ("e2e",),
    "serving": ("e2e",),
    "session_e2e": ("e2e",),
    "workers": ("e2e",),
    "deploy": ("e2e",),
    "fuzz": ("addon",),  # pure parsers, and the addon through mitmproxy's test harness
    "abuse": ("e2e",),
    "accel": ("unit",),  # child interpreters, no server: quick
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        rel = Path(str(item.path)).resolve().relative_to(_TESTS).as_posix()
        kinds = KIND_OF_PATH.get(rel) or KIND_OF_PATH.get(rel.split("/", 1)[0])
        if kinds is None:
            raise pytest.UsageError(f"tests/{rel}: no kind for its folder; add it to KIND_OF_PATH in conftest.py")
        own = {m.name for m in item.iter_markers() if m.name in KINDS}
        for kind in kinds:
            if kind in ("redis", "browser") or not own:  # needs as well as kinds: always added
                item.add_marker(kind)


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
    defaults to the session demo origin; `upstream=None` runs `python -m demo` instead, the
    demo shop with a shield in front of it (what `scripts/run` does without --upstream).
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

"""The compiled core (scrapeshield/accel.py): built by the README's set-up, loaded only while every
source it was built from is unchanged, and deciding exactly as the Python code does.

The rest of the suite runs on whatever `scripts/setup` built (the compiled core); these tests run
the Python code too, in child processes with SCRAPESHIELD_ACCEL=0, and a copy of the sources with
one file edited, to see the build refused.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import scrapeshield
from scrapeshield import accel
from scrapeshield.accel import FORMAT, HOT_MODULES, PACKAGE_DIR, accel_dir, ext_suffix, source_closure, stale_reason

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "replay" / "golden"
PURE = os.environ.get(accel.SWITCH, "").strip() == "0"

PROBE = """
import json, scrapeshield
from scrapeshield import accel
import scrapeshield.engine.core as core, scrapeshield.store.memory as memory, scrapeshield.detectors.config as config
print(json.dumps({"compiled": accel.STATUS.compiled, "detail": accel.STATUS.detail, "problem": accel.STATUS.problem,
                  "core": core.__file__, "memory": memory.__file__, "config": config.__file__}))
"""


def _probe(addons: Path, **env: str) -> dict[str, object]:
    """Import the engine from `addons` in a fresh interpreter; what got loaded, and why."""
    inherited = {k: v for k, v in os.environ.items() if k != accel.SWITCH}  # each test says whether it is off
    run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=False,
                         env={**inherited, "PYTHONPATH": str(addons), accel.DIR_VARIABLE: str(accel_dir()), **env})
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture
def copied_sources(tmp_path: Path) -> Path:
    """A copy of the package's sources (as a checkout would hold them), without any build."""
    shutil.copytree(PACKAGE_DIR, tmp_path / "scrapeshield", symlinks=False,
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    return tmp_path


@pytest.mark.skipif(PURE, reason="SCRAPESHIELD_ACCEL=0 asks for the Python code")
def test_the_readme_set_up_builds_the_compiled_core_and_the_suite_runs_on_it() -> None:
    # given the package as the README's test command set it up
    # then the hot modules are the compiled ones, from the build folder
    assert accel.STATUS.compiled, f"scripts/setup should have built it: {accel.STATUS.describe()}"
    import scrapeshield.engine.core as core
    import scrapeshield.store.memory as memory
    for module in (core, memory):
        assert module.__file__ is not None and module.__file__.endswith(ext_suffix())
        assert Path(module.__file__).is_relative_to(accel_dir())
    # and a module it did not compile is the Python file, found beside the compiled package
    import scrapeshield.detectors.config as config
    assert config.__file__ == str(PACKAGE_DIR / "detectors" / "config.py")
    assert Path(scrapeshield.__file__).parent == PACKAGE_DIR


@pytest.mark.skipif(PURE, reason="SCRAPESHIELD_ACCEL=0 asks for the Python code")
def test_an_unchanged_copy_of_the_sources_loads_the_build(copied_sources: Path) -> None:
    # given the sources copied elsewhere, byte for byte
    # when the engine is imported from the copy
    got = _probe(copied_sources)
    # then the build is used (it is known by the sources' content, not their place)
    assert got["compiled"] is True, got["detail"]
    assert str(got["core"]).endswith(ext_suffix())
    assert got["config"] == str(copied_sources / "scrapeshield" / "detectors" / "config.py")


@pytest.mark.skipif(PURE, reason="SCRAPESHIELD_ACCEL=0 asks for the Python code")
@pytest.mark.parametrize("edited", ["store/memory.py", "policy/model.py"])
def test_an_edited_source_turns_the_whole_build_off(copied_sources: Path, edited: str) -> None:
    # given one source the build depends on edited after the build: a compiled module, or a
    # module the compiled ones import (their types are compiled in)
    path = copied_sources / "scrapeshield" / edited
    path.write_text(path.read_text() + "\n# edited\n")
    # when the engine is imported
    got = _probe(copied_sources)
    # then every module is the Python file, and the status says which file made the build stale
    assert got["compiled"] is False
    assert f"stale, {edited} changed since the build" in str(got["detail"])
    assert got["problem"] is True  # `scrapeshield run` says so as a warning
    assert str(got["core"]).endswith("engine/core.py")
    assert str(got["memory"]).endswith("store/memory.py")


@pytest.mark.skipif(PURE, reason="SCRAPESHIELD_ACCEL=0 asks for the Python code")
def test_a_source_the_build_does_not_depend_on_changes_nothing(copied_sources: Path) -> None:
    # given a module no compiled module imports, edited
    assert "adminapi/dashboard_page.py" not in source_closure(HOT_MODULES)
    path = copied_sources / "scrapeshield" / "adminapi" / "dashboard_page.py"
    path.write_text(path.read_text() + "\n# edited\n")
    # then the build is still used
    assert _probe(copied_sources)["compiled"] is True


def test_scrapeshield_accel_0_runs_the_python_code(copied_sources: Path) -> None:
    got = _probe(copied_sources, SCRAPESHIELD_ACCEL="0")
    assert got["compiled"] is False
    assert got["detail"] == "turned off (SCRAPESHIELD_ACCEL=0)"
    assert got["problem"] is False
    assert str(got["core"]).endswith("engine/core.py")


def test_no_build_runs_the_python_code_and_says_where_it_looked(copied_sources: Path, tmp_path: Path) -> None:
    got = _probe(copied_sources, SCRAPESHIELD_ACCEL_DIR=str(tmp_path / "nothing-here"))
    assert got["compiled"] is False
    assert "not built" in str(got["detail"]) and "nothing-here" in str(got["detail"])


def test_the_build_depends_on_what_the_compiled_modules_import_transitively() -> None:
    closure = source_closure(["engine.core"])
    # the module, its package, what it imports, what those import, and their packages
    for rel in ("engine/core.py", "engine/__init__.py", "__init__.py", "store/memory.py", "store/compact.py",
                "detectors/config.py", "session/stage.py", "policy/model.py"):
        assert rel in closure, rel
    assert "adminapi/dashboard_page.py" not in closure
    assert source_closure(["gcra"]) == sorted({"gcra.py", "__init__.py", "accel.py"})


def test_a_manifest_for_another_interpreter_or_format_is_stale(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    from scrapeshield.accel import digest
    good = {"format": FORMAT, "ext_suffix": ext_suffix(), "sources": {"a.py": digest(tmp_path / "a.py")}}
    assert stale_reason(good, tmp_path) is None
    assert "another version" in str(stale_reason({**good, "format": FORMAT + 1}, tmp_path))
    assert "built for .cpython-399" in str(stale_reason({**good, "ext_suffix": ".cpython-399.so"}, tmp_path))
    assert stale_reason({**good, "sources": {"b.py": "0"}}, tmp_path) == "b.py (gone) changed since the build"


# -- the same decisions, compiled or not ------------------------------------------------------------------
@pytest.mark.parametrize("capture", ["chromium.flows", "scrapy.flows.gz"])
def test_the_python_code_replays_the_golden_captures_byte_for_byte(capture: str) -> None:
    # the suite replays every capture on the compiled core (tests/replay); here the Python code
    run = subprocess.run([sys.executable, "-m", "scrapeshield", "replay", "--policy", "policies/default.yaml",
                          "--format", "json", os.path.join("tests", "captures", capture)],
                         cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
                         env={**os.environ, accel.SWITCH: "0"})
    assert run.returncode == 0, run.stderr
    assert run.stdout == (GOLDEN / f"{capture}.json").read_text(encoding="utf-8")


def test_the_engines_reference_tests_pass_on_the_python_code() -> None:
    # the fast paths against their plain references (hypothesis), on the Python code
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/unit/test_engine_fast_paths.py"],
                         cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
                         env={**os.environ, accel.SWITCH: "0"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout


def test_status_says_whether_the_compiled_core_runs() -> None:
    from scrapeshield.runtime import RuntimeConfig, ShieldRuntime

    rt = ShieldRuntime(RuntimeConfig(policy_path=str(REPO / "policies" / "default.yaml"), admin="",
                                     decision_log=os.devnull, reload_interval=0))
    assert rt.status()["compiled_core"] == {"used": accel.STATUS.compiled, "detail": accel.STATUS.detail}

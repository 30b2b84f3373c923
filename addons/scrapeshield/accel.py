"""The compiled core: the hot modules built with mypyc, used only while they match their sources.

The decision path (engine, stores, detectors, sessions, fingerprints) is plain, fully typed Python.
mypyc compiles those modules, unchanged, to C extensions: the same code, about 1.6x the decisions
per second (BENCHMARKS.md). The Python files stay the source of truth:

- The build goes to a folder of its own (`.scrapeshield-accel` beside the package, or
  `$SCRAPESHIELD_ACCEL_DIR`), never next to the `.py` files, so a stale `.so` can never shadow an
  edited file the way an in-place build would.
- Its manifest records a SHA-256 of every source the compiled modules were built from: the modules
  themselves and every `scrapeshield` module they import, transitively (compiled code relies on the
  types of what it imports). At import time (`install`, run by the package's `__init__`) the
  compiled modules are used only if every one of those files is unchanged, the interpreter's ABI
  is the build's, and `SCRAPESHIELD_ACCEL` is not `0`; otherwise every module is the Python
  file, and `STATUS` says why. It is all or nothing: compiled modules call each other directly.

`scripts/setup` builds it (`python -m scrapeshield.accelbuild build --if-stale`, see accelbuild.py);
a machine without a C compiler runs the Python code, which decides exactly the same.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

PACKAGE = "scrapeshield"
PACKAGE_DIR = Path(__file__).resolve().parent
SWITCH = "SCRAPESHIELD_ACCEL"  # "0": the Python code, whatever is built
DIR_VARIABLE = "SCRAPESHIELD_ACCEL_DIR"
MANIFEST = "manifest.json"
FORMAT = 1

# The modules one decision runs through (bench_engine's default policy), compiled as one group.
# Every name here must compile with mypyc and behave the same compiled and not (the whole test
# suite runs compiled; tests/accel runs the engine's reference tests on the Python code too).
HOT_MODULES: tuple[str, ...] = (
    "challenge.binding", "challenge.clearance", "challenge.tokens", "context", "decision", "facts", "gcra",
    "memo", "netaddr", "urlpath",
    "detectors", "detectors.assets", "detectors.classify", "detectors.crowd", "detectors.distinct",
    "detectors.identities", "detectors.mirror", "detectors.probe", "detectors.rush", "detectors.sequence",
    "detectors.strength", "detectors.synthetic", "detectors.timing",
    "engine.core", "engine.stages",
    "fingerprint", "fingerprint.goodbots", "fingerprint.policy",
    "policy.keys", "policy.model", "policy.plan",
    "session.cookie", "session.difficulty", "session.policy", "session.stage", "session.state",
    "store.base", "store.compact", "store.memory",
)


@dataclass(frozen=True, slots=True)
class Status:
    compiled: bool
    detail: str  # what is loaded, or why the Python code runs
    modules: int = 0
    problem: bool = False  # built, but not usable (stale, damaged): worth a warning, unlike "not built"

    def describe(self) -> str:
        return f"compiled core: {self.detail}" if self.compiled else f"compiled core not used: {self.detail}"


STATUS = Status(False, "not looked for yet")


def accel_dir() -> Path:
    return Path(os.environ.get(DIR_VARIABLE) or PACKAGE_DIR.parent / ".scrapeshield-accel")


def ext_suffix() -> str:
    return str(sysconfig.get_config_var("EXT_SUFFIX"))


# -- which sources a build depends on --------------------------------------------------------------
def module_file(name: str, package_dir: Path = PACKAGE_DIR) -> Path | None:
    """`name` relative to the package ("" is the package): its .py file, if it has one."""
    base = package_dir.joinpath(*name.split(".")) if name else package_dir
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def _imported(name: str, path: Path, package_dir: Path) -> Iterable[str]:
    """The package-relative names of the `scrapeshield` modules `path` (module `name`) imports."""
    is_package = path.name == "__init__.py"
    here = name.split(".") if name else []
    for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE + "."):
                    yield alias.name[len(PACKAGE) + 1:]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = here if is_package else here[:-1]
                if node.level > 1:
                    parent = parent[:len(parent) - (node.level - 1)]
                base = ".".join([*parent, *(node.module.split(".") if node.module else [])])
            elif node.module and (node.module == PACKAGE or node.module.startswith(PACKAGE + ".")):
                base = node.module[len(PACKAGE) + 1:]
            else:
                continue
            yield base
            for alias in node.names:  # `from . import x` may name a module
                sub = f"{base}.{alias.name}" if base else alias.name
                if module_file(sub, package_dir) is not None:
                    yield sub


def source_closure(modules: Sequence[str], package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Every package-relative source file (posix paths, sorted) the modules are built from: each
    module, what it imports from the package, transitively, and the packages that hold them."""
    seen: set[str] = set()
    files: set[str] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        parts = name.split(".") if name else []
        for i in range(len(parts)):  # importing a.b.c runs a/__init__ and a/b/__init__
            parent = ".".join(parts[:i])
            if parent not in seen:
                todo.append(parent)
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name, package_dir)
        if path is None:
            continue
        files.add(path.relative_to(package_dir).as_posix())
        todo.extend(n for n in _imported(name, path, package_dir) if n not in seen)
    return sorted(files)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stale_reason(manifest: dict[str, object], package_dir: Path = PACKAGE_DIR) -> str | None:
    """Why the build in `manifest` must not be used with the sources in `package_dir`; None: use it."""
    if manifest.get("format") != FORMAT:
        return "built by another version of the build step"
    if manifest.get("ext_suffix") != ext_suffix():
        return f"built for {manifest.get('ext_suffix')}, this interpreter loads {ext_suffix()}"
    sources = manifest.get("sources")
    if not isinstance(sources, dict) or not sources:
        return "its manifest lists no sources"
    changed = []
    for rel, want in sources.items():
        path = package_dir / rel
        if not path.is_file():
            changed.append(f"{rel} (gone)")
        elif digest(path) != want:
            changed.append(rel)
    if changed:
        more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
        return f"{changed[0]}{more} changed since the build"
    return None


# -- loading -----------------------------------------------------------------------------------------
class CompiledFinder(importlib.abc.MetaPathFinder):
    """Finds the compiled modules (and their shared group library) in the build folder. A compiled
    package's `__path__` is its folder in the build (mypyc sets it while the package runs), so its
    other submodules are looked for there: they are found in the sources instead."""

    def __init__(self, lib: Path, files: dict[str, str], package_dir: Path) -> None:
        self.lib = lib
        self.files = files  # full module name -> .so path relative to lib
        self.package_dir = package_dir
        self._built_package = str(lib / PACKAGE)

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        rel = self.files.get(fullname)
        if rel is None:
            if path is None or not fullname.startswith(PACKAGE + "."):
                return None
            sources = [self._source_folder(p) for p in path]
            if sources == list(path):
                return None
            return importlib.machinery.PathFinder.find_spec(fullname, sources, target)
        so = str(self.lib / rel)
        locations = None
        if Path(rel).name.startswith("__init__."):  # a package
            locations = [str(self.package_dir.joinpath(*fullname.split(".")[1:]))]
        return importlib.util.spec_from_file_location(fullname, so, loader=_CompiledLoader(fullname, so),
                                                      submodule_search_locations=locations)

    def _source_folder(self, folder: str) -> str:
        if folder == self._built_package or folder.startswith(self._built_package + os.sep):
            return str(self.package_dir) + folder[len(self._built_package):]
        return folder


class _CompiledLoader(importlib.machinery.ExtensionFileLoader):
    def exec_module(self, module: ModuleType) -> None:
        super().exec_module(module)
        spec = module.__spec__
        if spec is not None and spec.submodule_search_locations is not None:
            module.__path__ = list(spec.submodule_search_locations)  # the sources' folder from now on


def install(directory: Path | None = None, package_dir: Path = PACKAGE_DIR) -> Status:
    """Put the compiled modules first on the import path if they match the sources (see the module
    doc). Runs once, from the package's `__init__`, before any hot module is imported."""
    global STATUS
    STATUS = _install(directory or accel_dir(), package_dir)
    return STATUS


def _install(directory: Path, package_dir: Path) -> Status:
    if os.environ.get(SWITCH, "").strip().lower() in ("0", "off", "no", "false"):
        return Status(False, f"turned off ({SWITCH}=0)")
    status, files = usable_build(directory, package_dir)
    if not status.compiled:
        return status
    already = sorted(name for name in files if name in sys.modules)
    if already:  # imported before the finder: mixing both would call stale code
        return Status(False, f"{already[0]} was imported before the compiled core was looked for", problem=True)
    sys.meta_path.insert(0, CompiledFinder(directory / "lib", files, package_dir))
    return status


def usable_build(directory: Path, package_dir: Path = PACKAGE_DIR) -> tuple[Status, dict[str, str]]:
    """The build in `directory` checked against the sources in `package_dir`, nothing installed:
    (why it cannot be used, {}), or (what it holds, its files: module name -> .so path in lib/)."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except FileNotFoundError:
        return Status(False, f"not built ({directory}; scripts/setup builds it)"), {}
    except (OSError, ValueError) as exc:
        return Status(False, f"unreadable manifest in {directory}: {exc}", problem=True), {}
    if not isinstance(manifest, dict):
        return Status(False, f"unreadable manifest in {directory}", problem=True), {}
    reason = stale_reason(manifest, package_dir)
    if reason is not None:
        return Status(False, f"stale, {reason}; scripts/setup rebuilds it", problem=True), {}
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        return Status(False, f"unreadable manifest in {directory}", problem=True), {}
    lib = directory / "lib"
    missing = [rel for rel in files.values() if not (lib / rel).is_file()]
    if missing:
        return Status(False, f"{missing[0]} is missing from {lib}", problem=True), {}
    compiled = sum(1 for m in files if m.startswith(PACKAGE + "."))
    return Status(True, f"{compiled} modules from {directory}", compiled), dict(files)

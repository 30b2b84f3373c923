"""Build the compiled core (see accel.py): mypyc over a copy of the hot modules' sources.

    python -m scrapeshield.accelbuild build [--if-stale] [--dir DIR]
    python -m scrapeshield.accelbuild status

Needs mypy (mypyc), setuptools and a C compiler; `scripts/setup` installs the first two and runs it.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from . import accel
from .accel import (
    FORMAT,
    HOT_MODULES,
    MANIFEST,
    PACKAGE,
    PACKAGE_DIR,
    accel_dir,
    digest,
    ext_suffix,
    module_file,
    source_closure,
)


def build(directory: Path, modules: Sequence[str] = HOT_MODULES, package_dir: Path = PACKAGE_DIR) -> Path:
    """Compile `modules` with mypyc from a copy of the sources and install the result in
    `directory` (replaced whole, so a failed build leaves the previous one). Returns the manifest."""
    sources = source_closure(modules, package_dir)
    paths = []
    for m in modules:
        path = module_file(m, package_dir)
        if path is None:
            raise SystemExit(f"scrapeshield accel: no module {PACKAGE}.{m}")
        paths.append(Path(PACKAGE, path.relative_to(package_dir)).as_posix())
    with tempfile.TemporaryDirectory(prefix="scrapeshield-accel-") as tmp:
        src = Path(tmp, "src")
        shutil.copytree(package_dir, src / PACKAGE, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.so", "policies"))
        run = subprocess.run([sys.executable, "-m", "mypyc", *paths], cwd=src, capture_output=True, text=True,
                             check=False)
        if run.returncode != 0:
            tail = "\n".join((run.stdout + run.stderr).strip().splitlines()[-20:])
            raise SystemExit(f"scrapeshield accel: mypyc failed:\n{tail}")
        suffix = ext_suffix()
        files: dict[str, str] = {}
        for so in src.rglob("*" + suffix):
            if "build" in so.relative_to(src).parts:
                continue
            rel = so.relative_to(src).as_posix()
            stem = rel[:-len(suffix)].split("/")
            if stem[-1] == "__init__":
                stem = stem[:-1]
            files[".".join(stem)] = rel
        # The digests of what mypyc compiled (the copy), not of the sources now: one edited
        # during the build must make this build stale, not pass for it.
        digests = {rel: digest(src / PACKAGE / rel) for rel in sources}
        expected = {f"{PACKAGE}.{m}" for m in modules}
        if not expected <= files.keys():
            raise SystemExit(f"scrapeshield accel: mypyc built no module for {sorted(expected - files.keys())}")
        fresh = directory.with_name(directory.name + ".new")
        shutil.rmtree(fresh, ignore_errors=True)
        for rel in files.values():
            (fresh / "lib" / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, fresh / "lib" / rel)
    manifest = {
        "format": FORMAT, "ext_suffix": ext_suffix(), "python": sys.version.split()[0],
        "mypy": _mypy_version(), "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "modules": list(modules), "files": files,
        "sources": digests,
    }
    (fresh / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    fresh.rename(directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory / MANIFEST


def _mypy_version() -> str:
    try:
        from mypy.version import __version__
    except ImportError:  # pragma: no cover - build() needs mypy anyway
        return "?"
    return __version__


def is_current(directory: Path, modules: Sequence[str] = HOT_MODULES, package_dir: Path = PACKAGE_DIR) -> bool:
    """Whether the build in `directory` is of exactly `modules` and matches the sources."""
    status, files = accel.usable_build(directory, package_dir)
    return status.compiled and {m for m in files if m.startswith(PACKAGE + ".")} == {f"{PACKAGE}.{m}" for m in modules}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scrapeshield.accelbuild",
                                     description="Build or check the compiled core (mypyc).")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="compile the hot modules")
    b.add_argument("--dir", type=Path, default=None, help=f"where to put it (default {accel_dir()})")
    b.add_argument("--if-stale", action="store_true", help="do nothing if the build matches the sources")
    s = sub.add_parser("status", help="say whether the compiled core is used, and why not")
    s.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args(argv)
    directory = args.dir or accel_dir()
    if args.command == "status":
        print((accel.STATUS if args.dir is None else accel.usable_build(directory)[0]).describe())
        return 0
    if args.if_stale and is_current(directory):
        print(f"scrapeshield: compiled core up to date ({directory})", file=sys.stderr)
        return 0
    started = time.monotonic()
    print(f"scrapeshield: compiling the hot modules with mypyc into {directory} (about a minute)", file=sys.stderr)
    build(directory)
    print(f"scrapeshield: compiled core built in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

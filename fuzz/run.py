#!/usr/bin/env python3
"""Coverage-guided fuzzing (atheris/libFuzzer) of one target from fuzz/targets.py. See docs/fuzzing.md.

    .venv/bin/python fuzz/run.py TARGET [libFuzzer flags] [CORPUS_DIR ...]
    .venv/bin/python fuzz/run.py path -max_total_time=300 /tmp/path-new fuzz/corpus/path

Targets: policy, forwarding, path, cookie, token, http, tls, accesslog. A property violation (AssertionError) or any
other exception that escapes a target is a crash: libFuzzer stops and writes the input to
`crash-<sha1>` in the working directory.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))

TARGET_ENV = "SCRAPESHIELD_FUZZ_TARGET"

with atheris.instrument_imports(include=["scrapeshield"]):
    import targets


def main() -> None:
    # The target name travels in the environment too: libFuzzer re-runs this script for -merge
    # and -fork with the flags only.
    if len(sys.argv) > 1 and sys.argv[1] in targets.TARGETS:
        os.environ[TARGET_ENV] = sys.argv.pop(1)
    name = os.environ.get(TARGET_ENV, "")
    if name not in targets.TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(targets.TARGETS)}}} [libFuzzer flags] [corpus dirs]")
    atheris.Setup(sys.argv, targets.TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()

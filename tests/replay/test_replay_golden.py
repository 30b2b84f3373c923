"""Replay of the committed captures under the default policy gives byte-identical output to the
golden files, recorded before the engine was reshaped into stages (issue #10): a refactor that
changes a decision, a count or a line of the report fails here.

Regenerate (only for an intended change of behaviour, and say so in the commit):
    for f in tests/captures/*.flows*; do for fmt in table json; do
      scrapeshield replay --policy policies/default.yaml --format $fmt $f \
        > tests/replay/golden/$(basename $f).$fmt; done; done
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from scrapeshield.replay.cli import cmd_replay

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden"
CAPTURES = sorted(p.name for p in (REPO / "tests" / "captures").iterdir() if ".flows" in p.name)


@pytest.mark.parametrize("fmt", ["json", "table"])
@pytest.mark.parametrize("capture", CAPTURES)
def test_replaying_a_capture_prints_exactly_the_golden_output(capture: str, fmt: str,
                                                              capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # given the repository as the working directory (paths in the output are as given)
    monkeypatch.chdir(REPO)
    args = argparse.Namespace(flows=[os.path.join("tests", "captures", capture)], policy="policies/default.yaml",
                              format=fmt, expect=None)
    # when the capture is replayed
    code = cmd_replay(args)
    # then the report is byte for byte the golden one
    assert code == 0
    assert capsys.readouterr().out == (GOLDEN / f"{capture}.{fmt}").read_text(encoding="utf-8")

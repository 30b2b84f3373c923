"""The stored fuzz corpus (fuzz/corpus/<target>/) replayed through its targets: every input the
coverage-guided runs kept, and every crash they found once fixed, keeps holding its property."""
from __future__ import annotations

from pathlib import Path

import pytest
import targets

CASES = sorted(p for p in targets.CORPUS.glob("*/*") if p.is_file())


def test_every_target_has_a_corpus() -> None:
    assert {p.parent.name for p in CASES} == set(targets.TARGETS)


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.name}" for p in CASES])
def test_a_stored_input_holds_its_property(path: Path, adapter: object) -> None:
    targets.TARGETS[path.parent.name](path.read_bytes())

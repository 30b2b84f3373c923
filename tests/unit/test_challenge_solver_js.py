"""The page's JavaScript solver, run in Node (when installed) against the Python definition of the proof."""
from __future__ import annotations

import json
import subprocess
from itertools import count

import pytest

from harness import require_executable
from scrapeshield.challenge.page import solver_js
from scrapeshield.challenge.pow import proof_ok

NODE = "node"


@pytest.fixture(autouse=True)
def _node_installed() -> None:
    require_executable(NODE)
SEED = bytes.fromhex("000102030405060708090a0b0c0d0e0f")


def run_js(body: str) -> object:
    script = solver_js() + "\nvar s = shieldSolver();\n" + body
    out = subprocess.run([NODE, "-e", script], capture_output=True, text=True, check=True, timeout=60)  # type: ignore[list-item]
    return json.loads(out.stdout)


def first_solution(worker: int, bits: int) -> str:
    return next(n for n in (f"{worker:02d}{c:010d}" for c in count()) if proof_ok(SEED, n.encode(), bits))


@pytest.mark.parametrize(("worker", "bits"), [(0, 0), (0, 1), (1, 9), (7, 12), (5, 16)])
def test_js_solver_finds_the_same_first_solution_as_python(worker, bits):
    found = run_js(f"""
        var seed = s.seedWords("{SEED.hex()}"), r = -1, c = 0;
        while (r < 0) {{ r = s.searchJS(seed, {bits}, {worker}, c, 20000); c += 20000; }}
        console.log(JSON.stringify(s.nonce({worker}, r)));
    """)

    assert found == first_solution(worker, bits)


def test_js_solver_nonces_are_two_worker_digits_then_ten_counter_digits():
    assert run_js('console.log(JSON.stringify([s.nonce(3, 0), s.nonce(7, 1234567890)]));') == [
        "030000000000", "071234567890"]

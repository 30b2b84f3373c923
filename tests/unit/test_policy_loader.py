"""Policy loading is bounded (size, YAML shape, alias expansion, compile time) and runs off the loop."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scrapeshield.policy.compiler import compile_bytes, compile_file
from scrapeshield.policy.errors import PolicyInvalid
from scrapeshield.policy.loader import DEFAULT_LIMITS, LoadLimits, compile_off_loop

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "abuse"))
from hostile_policies import alias_bomb, large_policy

SMALL_RULES = "version: 1\nrules:\n" + "".join(f"  - {{name: r{i}, limits: 10/s}}\n" for i in range(20))


def _refusal(data: str, limits: LoadLimits = DEFAULT_LIMITS, filename: str = "p.yaml") -> str:
    with pytest.raises(PolicyInvalid) as exc:
        compile_bytes(data.encode(), filename, limits=limits)
    (error,) = exc.value.errors
    return str(error)


def test_the_alias_bomb_is_refused_in_well_under_a_second_with_its_position() -> None:
    bomb = alias_bomb(depth=6, fanout=9)
    assert len(bomb) < 450
    t0 = time.perf_counter()
    message = _refusal(bomb, filename="bomb.yaml")
    assert time.perf_counter() - t0 < 0.5
    assert message.startswith("bomb.yaml:5:")
    assert "aliases expand to more than 20,000 nodes" in message


def test_a_few_aliases_are_fine() -> None:
    assert compile_bytes(alias_bomb(depth=2, fanout=9).encode(), "p.yaml").rules[0].name == "bomb"


def test_a_recursive_alias_is_refused() -> None:
    assert "recursive alias" in _refusal("version: 1\nrules:\n  - name: x\n    match: &m {not: *m}\n")


def test_an_oversized_file_is_refused_without_compiling_it(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(SMALL_RULES)
    with pytest.raises(PolicyInvalid) as exc:
        compile_file(str(path), limits=LoadLimits(max_bytes=100))
    assert str(exc.value) == f"{path}:1:1: policy is larger than 9.53674e-05 MiB (the limit for a policy file)"


def test_a_document_over_the_node_limit_is_refused_where_it_crosses_it() -> None:
    message = _refusal(SMALL_RULES, LoadLimits(max_nodes=50))
    assert message.startswith("p.yaml:") and "more than 50 YAML nodes" in message


def test_a_compile_over_its_time_budget_is_refused_at_the_node_it_reached() -> None:
    message = _refusal(SMALL_RULES, LoadLimits(max_compile_seconds=0.0))
    assert message.startswith("p.yaml:1:1: compiling took longer than 0 s (the compile budget)")


def test_check_refuses_a_bomb_in_under_a_second(tmp_path: Path) -> None:
    # given the bomb and a trivial policy, timed through the real CLI (start-up cost cancels out)
    bomb, trivial = tmp_path / "bomb.yaml", tmp_path / "ok.yaml"
    bomb.write_text(alias_bomb())
    trivial.write_text("version: 1\n")
    cli = [sys.executable, "-m", "scrapeshield", "check"]

    def timed(path: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
        t0 = time.perf_counter()
        proc = subprocess.run([*cli, str(path)], capture_output=True, text=True, timeout=60)
        return time.perf_counter() - t0, proc

    base, ok = timed(trivial)
    took, refused = timed(bomb)
    assert ok.returncode == 0
    assert refused.returncode == 1  # `check`: 1 = invalid policy
    assert f"{bomb}:5:" in refused.stdout + refused.stderr
    assert took - base < 2.0  # the refusal itself takes milliseconds (above); the rest is start-up noise


async def test_compiling_off_the_loop_keeps_the_loop_answering() -> None:
    # given a ~300 KB policy that takes about a second to compile, and a task that ticks every 10 ms
    data = large_policy(300_000).encode()
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    t0 = time.perf_counter()
    policy = await compile_off_loop(data, "large.yaml")
    compile_seconds = time.perf_counter() - t0
    done.set()
    await tick
    # then the loop kept ticking throughout: no gap near the compile's length
    assert len(policy.rules) > 1000
    assert max(gaps) < max(1.0, compile_seconds / 4)  # generous: 2 shared cores; typically 20-50 ms

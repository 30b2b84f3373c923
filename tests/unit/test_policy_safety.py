"""Policy safety: mistakes that compile but do harm are errors or warnings, and CI can see them.

Warning fixtures live in tests/policies/warn/ with `# expect: LINE:COL: message` lines, like the
bad fixtures: `check` prints exactly those warnings and passes; `check --strict` fails on them.
Every warning the linter can give is produced by some fixture (the last test keeps it so).
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_policy_compiler import FIXTURES, expectations

import scrapeshield
from scrapeshield import builtin
from scrapeshield.extensions import new_standard_registry
from scrapeshield.policy.compiler import compile_bytes
from scrapeshield.policy.errors import PolicyInvalid
from scrapeshield.policy.lint import lint_bytes, lint_file
from scrapeshield.policy.report import cmd_check
from scrapeshield.policy.signals import known_signals

WARN = sorted((FIXTURES / "warn").glob("*.yaml"))
SHIPPED = [builtin.policies_dir() / f"{name}.yaml" for name in builtin.policy_names()]
PACKAGE = Path(scrapeshield.__file__).resolve().parent


@pytest.mark.parametrize("path", WARN, ids=lambda p: p.name)
def test_check_prints_exactly_the_expected_warnings_and_passes(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # given a policy that compiles but has a doubtful part, and the warnings it declares
    expected = expectations(path)
    assert expected, f"{path} has no '# expect:' line"
    # when it is checked
    code = cmd_check([str(path)])
    lines = capsys.readouterr().out.splitlines()
    # then it passes, and each warning is printed as file:line:col: warning: message
    assert code == 0
    warnings = [ln for ln in lines if ": warning: " in ln]
    assert len(warnings) == len(expected), "\n".join(lines)
    for line, (ln, col, text) in zip(warnings, expected, strict=True):
        assert line.startswith(f"{path}:{ln}:{col}: warning: ") and text in line, line
    plural = "warnings)" if len(expected) > 1 else "warning)"
    assert lines[-1].startswith(f"{path}: ok (") and lines[-1].endswith(plural)


@pytest.mark.parametrize("path", WARN, ids=lambda p: p.name)
def test_strict_check_fails_on_warnings(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd_check([str(path)], strict=True) == 1


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_policy_passes_a_strict_check(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd_check([str(path)], strict=True) == 0, capsys.readouterr().out


def test_an_allow_all_rule_makes_every_later_rule_unreachable() -> None:
    text = (b"version: 1\nrules:\n  - {name: all, action: allow}\n"
            b"  - {name: api, match: {path: /api/*}, action: block}\n")
    compile_bytes(text)  # it loads ...
    (w,) = lint_bytes(text, "p.yaml")  # ... and says why the second rule never runs
    assert (w.line, w.col) == (4, 5) and "'api' is unreachable: rule 'all' (line 3)" in w.message


def test_a_challenge_rule_does_not_hide_later_rules() -> None:
    # a client holding a clearance passes a challenge rule and meets the next one
    text = b"version: 1\nrules:\n  - {name: all, action: challenge}\n  - {name: api, limits: 10/s}\n"
    assert lint_bytes(text) == []


@pytest.mark.parametrize("empty", ["path: []", "client_ip: []", "ua_class: []", "method: []", "query: {}",
                                   "all: []", "tls_family: []"])
def test_an_empty_condition_is_an_error_not_a_match_everything(empty: str) -> None:
    text = f"version: 1\nrules:\n  - name: r\n    match: {{{empty}}}\n    action: block\n".encode()
    with pytest.raises(PolicyInvalid) as exc:
        compile_bytes(text, "p.yaml")
    assert "would match every request" in str(exc.value)


def test_a_misspelled_weight_is_an_error_with_a_suggestion() -> None:
    text = b"version: 1\nscores:\n  - name: s\n    weights: {sequencial_ids: 6}\n"
    with pytest.raises(PolicyInvalid) as exc:
        compile_bytes(text, "p.yaml")
    assert str(exc.value) == ("p.yaml:4:15: score 's': weights: unknown signal 'sequencial_ids' "
                              "(did you mean 'sequential_ids'?)")


def test_a_package_that_declares_signals_makes_them_weighable() -> None:
    # given a build with one more signal source, whose signal needs its own section
    text = b"version: 1\nscores:\n  - name: s\n    weights: {session_hopping: 2}\n"
    with pytest.raises(PolicyInvalid):
        compile_bytes(text)
    registry = new_standard_registry()
    registry.add_signals(["session_hopping"], needs_section="sessions")
    # then its signal compiles, and the linter knows which section makes it fire
    compile_bytes(text, registry=registry)
    assert known_signals(registry)["session_hopping"] == "sessions"
    (w,) = lint_bytes(text, "p.yaml", registry)
    assert "the policy has no `sessions:` section" in w.message


def test_nginx_style_rates_get_a_hint() -> None:
    with pytest.raises(PolicyInvalid) as exc:
        compile_bytes(b"version: 1\nrules:\n  - {name: r, limits: 10r/m}\n")
    assert "nginx-style rate; write 10/m here" in str(exc.value)


def test_a_yaml_syntax_error_names_where_the_broken_construct_started() -> None:
    text = b'version: 1\nname: "unclosed\nrules: []\n'
    with pytest.raises(PolicyInvalid) as exc:
        compile_bytes(text, "p.yaml")
    assert "(in a quoted scalar that starts at line 2, column 7)" in str(exc.value)


# -- the command, as CI runs it -----------------------------------------------------------------

def _scrapeshield(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scrapeshield", *args], capture_output=True, text=True,
                          timeout=60, env={"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin"})


def test_check_format_json_reports_errors_and_warnings_per_file() -> None:
    good, warn, bad = (FIXTURES / "good" / "minimal.yaml", FIXTURES / "warn" / "unreachable.yaml",
                       FIXTURES / "bad" / "nginx_rate.yaml")
    proc = _scrapeshield("check", "--format", "json", str(good), str(warn), str(bad))
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False and doc["strict"] is False
    by_file = {f["file"]: f for f in doc["files"]}
    assert by_file[str(good)]["ok"] is True and by_file[str(good)]["policy"]["rules"] == 0
    assert by_file[str(warn)]["ok"] is True
    assert [(w["line"], w["col"], w["severity"]) for w in by_file[str(warn)]["warnings"]] == [
        (15, 5, "warning"), (18, 5, "warning")]
    (err,) = by_file[str(bad)]["errors"]
    assert (err["line"], err["col"], err["severity"]) == (6, 14, "error") and "nginx-style" in err["message"]


def test_check_strict_json_fails_on_a_warning_alone() -> None:
    proc = _scrapeshield("check", "--strict", "--format", "json", str(FIXTURES / "warn" / "unknown_method.yaml"))
    assert proc.returncode == 1 and json.loads(proc.stdout)["ok"] is False


# -- every warning has a fixture ----------------------------------------------------------------

def _warning_fragments() -> set[str]:
    """The longest literal part of each `warn(node, message)` call in the linter."""
    found = set()
    src = PACKAGE / "policy" / "lint.py"
    for node in ast.walk(ast.parse(src.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "warn":
            msg = node.args[1]
            parts: list[str] = []
            for piece in ast.walk(msg):
                if isinstance(piece, ast.Constant) and isinstance(piece.value, str):
                    parts.append(piece.value)
            best = max((p.strip(" :,()") for p in parts), key=len, default="")
            if len(best) >= 6:
                found.add(best)
    return found


def test_every_warning_is_produced_by_a_warn_fixture() -> None:
    said = "\n".join(w.message for path in WARN for w in lint_file(str(path)))
    fragments = _warning_fragments()
    assert len(fragments) >= 4
    assert not {f for f in fragments if f not in said}

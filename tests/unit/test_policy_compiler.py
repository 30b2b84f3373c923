"""The policy compiler: good policies compile, bad ones say exactly what is wrong and where.

Fixtures live in tests/policies/{good,bad}/. A bad fixture starts with one line per expected error,
in the order `scrapeshield check` prints them (by line, then column):

    # expect: LINE:COL: substring of the message

and may ask for a section compiler to be absent (`# without-section: detectors`), for errors a
build without that package reports. Every distinct error message in the compiler is produced by at
least one fixture; `test_every_compiler_error_message_is_produced_by_a_bad_fixture` keeps it so.
"""
from __future__ import annotations

import ast
import dataclasses
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import scrapeshield
from scrapeshield.cli import cmd_check
from scrapeshield.decision import Action
from scrapeshield.extensions import standard_registry
from scrapeshield.gcra import BucketLimit
from scrapeshield.policy.compiler import compile_bytes, compile_file
from scrapeshield.policy.errors import PolicyInvalid
from scrapeshield.policy.registry import Registry

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "policies"
GOOD = sorted((FIXTURES / "good").glob("*.yaml")) + sorted((REPO / "policies").glob("*.yaml"))
BAD = sorted((FIXTURES / "bad").glob("*.yaml"))
PACKAGE = Path(scrapeshield.__file__).resolve().parent

_EXPECT = re.compile(r"^# expect: (\d+):(\d+): (.+)$")
_WITHOUT = re.compile(r"^# without-section: (\w+)$")


def _header(path: Path) -> list[str]:
    """The leading comment lines (latin-1: a not-UTF-8 fixture must still be readable here)."""
    lines = path.read_bytes().decode("latin-1").splitlines()
    return list(lines[: next((i for i, ln in enumerate(lines) if not ln.startswith("#")), len(lines))])


def expectations(path: Path) -> list[tuple[int, int, str]]:
    return [(int(m[1]), int(m[2]), m[3]) for ln in _header(path) if (m := _EXPECT.match(ln))]


def without_sections(path: Path) -> list[str]:
    return [m[1] for ln in _header(path) if (m := _WITHOUT.match(ln))]


def _fixture_id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


@pytest.fixture
def bare_build() -> Callable[[Path], Registry]:
    """The registry a fixture compiles with: the standard one, less the sections it asks to be without."""
    def apply(path: Path) -> Registry:
        return standard_registry().without_sections(without_sections(path))
    return apply


# -- fixtures -----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", GOOD, ids=_fixture_id)
def test_a_good_policy_compiles(path: Path) -> None:
    policy = compile_file(str(path))
    assert policy.source == str(path)


@pytest.mark.parametrize("path", BAD, ids=_fixture_id)
def test_a_bad_fixture_declares_its_errors(path: Path) -> None:
    assert expectations(path), f"{path} has no '# expect: LINE:COL: message' line"


@pytest.mark.parametrize("path", BAD, ids=_fixture_id)
def test_check_reports_exactly_the_expected_errors(path: Path, capsys: pytest.CaptureFixture[str],
                                                   bare_build: Callable[[Path], Registry]) -> None:
    # given a bad fixture and the errors it declares
    expected = expectations(path)
    # when `scrapeshield check` reads it
    code = cmd_check([str(path)], bare_build(path))
    printed = capsys.readouterr().out.splitlines()
    # then it fails and prints exactly those errors, one line each, as file:line:col: message
    assert code == 1
    got = [line.startswith(f"{path}:{ln}:{col}: ") and text in line
           for line, (ln, col, text) in zip(printed, expected, strict=False)]
    assert len(printed) == len(expected) and all(got), (
        "expected:\n  " + "\n  ".join(f"{path}:{ln}:{col}: ...{t}..." for ln, col, t in expected)
        + "\ngot:\n  " + "\n  ".join(printed))


def test_several_errors_are_reported_at_once() -> None:
    # given a policy with mistakes in different places
    text = b"""version: 1
monitor: perhaps
rules:
  - name: a
    limits: 10/w
  - name: b
    action: explode
"""
    # when it is compiled
    with pytest.raises(PolicyInvalid) as exc:
        compile_bytes(text, "p.yaml")
    # then every mistake is reported, in file order
    assert [(e.line, e.col) for e in exc.value.errors] == [(2, 10), (5, 13), (7, 13)]
    assert str(exc.value).splitlines()[0].startswith("p.yaml:2:10: monitor must be true or false")


def test_an_unreadable_policy_file_is_an_error_at_1_1(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(PolicyInvalid) as exc:
        compile_file(str(missing))
    (err,) = exc.value.errors
    assert (err.file, err.line, err.col) == (str(missing), 1, 1)
    assert err.message.startswith("cannot read policy: No such file or directory")


def _literal_fragment(node: ast.expr) -> str:
    """The longest literal part of a message expression ("" for a pure pass-through like f'{x}: {exc}')."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        parts = [node.value]
    elif isinstance(node, ast.JoinedStr):
        parts = [v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    else:
        return ""
    best = max((p.strip(" :,()") for p in parts), key=len, default="")
    return best if len(best) >= 6 else ""


def _error_messages() -> dict[str, str]:
    """fragment -> where: every message the compiler, its readers and the parsers it reports can produce."""
    sources = [PACKAGE / "policy" / n for n in ("compiler.py", "nodes.py", "matchers.py", "keys.py", "loader.py")]
    sources += [PACKAGE / "session" / "policy.py", PACKAGE / "fingerprint" / "front.py"]
    sources += [PACKAGE / "gcra.py", PACKAGE / "netaddr.py"]  # parse_rate and CidrSet messages pass through
    found: dict[str, str] = {}
    for src in sources:
        for node in ast.walk(ast.parse(src.read_text(), str(src))):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            msg = None
            if name == "error" and len(node.args) >= 2:
                msg = node.args[1]
            elif name == "PolicyError" and len(node.args) >= 4:
                msg = node.args[3]
            elif name == "ValueError" and node.args:
                msg = node.args[0]
            if msg is not None and (frag := _literal_fragment(msg)):
                found[frag] = f"{src.name}:{node.lineno}"
    return found


# The fallback for "no policy and no error", which no input reaches: kept as a safety net.
UNREACHABLE = {"invalid policy"}
# Limits no small fixture reaches: test_policy_loader.py produces the policy ones with small LoadLimits;
# the ip_lists file limit (64 MiB) is left to reading.
UNREACHABLE |= {"s (the compile budget); refused here", "the limit for a policy file",
                " YAML nodes once aliases are expanded", "policy is larger than ", " MiB", "is larger than"}


def test_every_compiler_error_message_is_produced_by_a_bad_fixture(
    tmp_path: Path, bare_build: Callable[[Path], Registry]
) -> None:
    # given everything the bad fixtures (and an unreadable file) make the compiler say
    said: list[str] = []
    for path in [*BAD, tmp_path / "missing.yaml"]:
        registry = bare_build(path) if path.exists() else None
        with pytest.raises(PolicyInvalid) as exc:
            compile_file(str(path), registry)
        said += [e.message for e in exc.value.errors]
    corpus = "\n".join(said)
    # then each message the source can produce appears at least once
    messages = _error_messages()
    assert len(messages) > 40  # the scan found the calls at all
    missing = {frag: where for frag, where in messages.items() if frag not in corpus and frag not in UNREACHABLE}
    assert not missing, f"error messages no bad fixture produces: {missing}"


# -- the check command --------------------------------------------------------------------------

def _scrapeshield() -> list[str]:
    script = Path(sys.executable).parent / "scrapeshield"
    return [str(script)] if script.exists() else [sys.executable, "-m", "scrapeshield"]


def test_check_cli_exits_0_and_summarises_a_good_policy() -> None:
    good = FIXTURES / "good" / "direct_actions.yaml"
    proc = subprocess.run([*_scrapeshield(), "check", str(good)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"{good}: ok (6 rules, version ")


def test_check_cli_exits_1_and_prints_every_error_of_a_bad_policy() -> None:
    bad = FIXTURES / "bad" / "wrong_types.yaml"
    proc = subprocess.run([*_scrapeshield(), "check", str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert len(proc.stdout.splitlines()) == len(expectations(bad))
    assert all(line.startswith(f"{bad}:") for line in proc.stdout.splitlines())


def test_check_cli_exits_1_if_any_of_several_files_is_bad() -> None:
    good, bad = FIXTURES / "good" / "minimal.yaml", FIXTURES / "bad" / "missing_version.yaml"
    proc = subprocess.run([*_scrapeshield(), "check", str(good), str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert f"{good}: ok" in proc.stdout
    assert f"{bad}:2:1: missing required field 'version'" in proc.stdout


def test_check_cli_exits_1_on_a_missing_file(tmp_path: Path) -> None:
    proc = subprocess.run([*_scrapeshield(), "check", str(tmp_path / "gone.yaml")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1
    assert "gone.yaml:1:1: cannot read policy" in proc.stdout


def test_check_cli_without_files_is_a_usage_error() -> None:
    proc = subprocess.run([*_scrapeshield(), "check"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2


# -- the compiled form --------------------------------------------------------------------------

def test_a_minimal_policy_gets_the_documented_defaults() -> None:
    policy = compile_bytes(b"version: 1\n")
    assert (policy.name, policy.monitor, policy.fail_closed) == ("policy", False, False)
    assert policy.default_action is Action.ALLOW
    assert (policy.ipv4_prefix, policy.ipv6_prefix, policy.max_keys, policy.hash_ips) == (24, 64, 1_000_000, False)
    assert (policy.ban_action, policy.block_status, policy.throttle_status) == (Action.BLOCK, 403, 429)
    assert not policy.trusted_proxies and policy.rules == () and policy.scores == ()
    assert policy.challenge.difficulty == 16


def test_a_limit_rule_gets_the_documented_defaults() -> None:
    (rule,) = compile_bytes(b"version: 1\nrules:\n  - {name: r, limits: 10/s}\n").rules
    assert rule.action is None and rule.exceed is Action.THROTTLE
    assert rule.key is not None and rule.key.parts == ("ip",)
    assert (rule.delay_max, rule.ban_for, rule.monitor) == (2.0, 0.0, False)
    assert [b.limit for b in rule.buckets] == [BucketLimit(10, 1.0, 9)]
    assert [b.name for b in rule.buckets] == ["r/0"]


def test_durations_read_units() -> None:
    text = b"""version: 1
rules:
  - {name: a, limits: 1/s, ban: 250ms}
  - {name: b, limits: 1/s, ban: 90}
  - {name: c, limits: 1/s, ban: 10m}
  - {name: d, limits: 1/s, ban: 1.5h}
  - {name: e, limits: 1/s, ban: {for: 2d}}
"""
    assert [r.ban_for for r in compile_bytes(text).rules] == [0.25, 90.0, 600.0, 5400.0, 172800.0]


def test_the_compiled_policy_is_immutable() -> None:
    policy = compile_file(str(FIXTURES / "good" / "every_field.yaml"))
    rule = policy.rules[0]
    for obj, field in ((policy, "monitor"), (rule, "action"), (policy.challenge, "difficulty"),
                       (policy.rules[5].buckets[0], "limit"), (policy.scores[0], "thresholds")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, field, None)
    assert isinstance(policy.rules, tuple) and isinstance(rule.buckets, tuple)


def _uids(yaml_text: str) -> list[str]:
    return [b.uid for r in compile_bytes(yaml_text.encode()).rules for b in r.buckets]


BASE = """version: 1
rules:
  - name: api
    description: {desc}
    key: {key}
    limits: [{rate}, "1000/h"]
"""


def test_bucket_ids_are_stable_while_name_key_and_rate_are_unchanged() -> None:
    a = _uids(BASE.format(desc="first", key="ip", rate="10/s burst 20"))
    b = _uids(BASE.format(desc="edited wording", key="ip", rate="10/s burst 20"))
    assert a == b
    assert len(set(a)) == 2  # the two limits of one rule are two buckets


def test_bucket_ids_are_stable_when_other_rules_change_around_them() -> None:
    alone = _uids(BASE.format(desc="x", key="ip", rate="10/s burst 20"))
    text = BASE.format(desc="x", key="ip", rate="10/s burst 20").replace(
        "rules:\n", "rules:\n  - {name: first, action: allow, match: {path: /ok}}\n")
    assert _uids(text) == alone


@pytest.mark.parametrize(
    ("key", "rate"),
    [("ip", "10/s burst 21"), ("ip", "10/m burst 20"), ("prefix", "10/s burst 20"),
     ("ip+header:x-api-key", "10/s burst 20")],
)
def test_a_bucket_id_changes_when_its_key_or_rate_changes(key: str, rate: str) -> None:
    before = _uids(BASE.format(desc="x", key="ip", rate="10/s burst 20"))
    after = _uids(BASE.format(desc="x", key=key, rate=rate))
    assert after[0] != before[0]
    if key == "ip":
        assert after[1] == before[1]  # the unchanged hourly limit keeps its state


def test_a_bucket_id_changes_when_the_rule_is_renamed() -> None:
    before = _uids(BASE.format(desc="x", key="ip", rate="10/s"))
    after = _uids(BASE.format(desc="x", key="ip", rate="10/s").replace("name: api", "name: api-v2"))
    assert set(before).isdisjoint(after)

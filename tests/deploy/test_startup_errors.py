"""Start-up mistakes end `scrapeshield run` with one line saying what and why, and exit 2.

Each case runs the real CLI as an operator would. Files made unreadable belong to another user
with mode 600, and the CLI runs without the capabilities that let root read anything anyway
(`setpriv` drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploytools import need

from harness import free_port, subprocess_env

pytestmark = pytest.mark.e2e

NOBODY = 65534
WITHOUT_DAC = ["--bounding-set", "-dac_override,-dac_read_search"]


def run_cli(*args: str, unprivileged: bool = False) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "scrapeshield", "run", *args]
    if "--upstream" not in args:  # required; nothing is ever sent to it here
        argv += ["--upstream", "http://127.0.0.1:9"]
    if "--listen" not in args:
        argv += ["--listen", f"127.0.0.1:{free_port()}"]
    if "--admin" not in args:
        argv += ["--admin", f"127.0.0.1:{free_port()}"]
    if unprivileged and os.geteuid() == 0:
        argv = [need("setpriv"), *WITHOUT_DAC, *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=subprocess_env())


def assert_one_line(proc: subprocess.CompletedProcess[str], expected: str) -> None:
    lines = [ln for ln in proc.stderr.splitlines() if "WARNING" not in ln]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert lines == [lines[0]] and lines[0].startswith("scrapeshield: cannot start: "), proc.stderr
    assert expected in lines[0], lines[0]


def _owned_by_nobody(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    os.chown(path, NOBODY, NOBODY)
    return path


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize(("url", "expected"), [
    ("mysql://db:3306/0", "--store: store URL 'mysql://db:3306/0': Redis URL must specify one of"),
    ("redis://:hunter2@cache:port/0", "--store: store URL 'redis://:***@cache:port/0': Port could not be cast"),
])
def test_a_bad_store_url(url: str, expected: str) -> None:
    proc = run_cli("--store", url)
    assert_one_line(proc, expected)
    assert "hunter2" not in proc.stderr  # the password is never printed


def test_a_missing_secret_file() -> None:
    assert_one_line(run_cli("--secret-file", "/nonexistent/keys"),
                    "cannot read secret file /nonexistent/keys: No such file or directory")


def test_an_unreadable_secret_file(tmp_path: Path) -> None:
    keys = _owned_by_nobody(tmp_path / "keys", os.urandom(32).hex())
    assert_one_line(run_cli("--secret-file", str(keys), unprivileged=True),
                    f"cannot read secret file {keys}: Permission denied")


def test_a_secret_file_with_a_weak_secret(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("abcd\n")
    keys.chmod(0o600)
    assert_one_line(run_cli("--secret-file", str(keys)), f"challenge secret: {keys}: secret #1 is 2 bytes")


def test_the_listen_port_in_use(taken_port: int) -> None:
    assert_one_line(run_cli("--listen", f"127.0.0.1:{taken_port}"),
                    f"--listen 127.0.0.1:{taken_port}: the port is already in use")


def test_the_admin_port_in_use(taken_port: int) -> None:
    assert_one_line(run_cli("--admin", f"127.0.0.1:{taken_port}"),
                    f"--admin 127.0.0.1:{taken_port}: the port is already in use")


def test_a_malformed_listen_address() -> None:
    assert_one_line(run_cli("--listen", "localhost:http"), "--listen: 'localhost:http' is not HOST:PORT")


def test_a_missing_policy(tmp_path: Path) -> None:
    assert_one_line(run_cli("--policy", str(tmp_path / "policy.yaml")),
                    f"cannot read policy {tmp_path / 'policy.yaml'}: No such file or directory")


def test_an_unreadable_policy(tmp_path: Path) -> None:
    policy = _owned_by_nobody(tmp_path / "policy.yaml", "version: 1\n")
    assert_one_line(run_cli("--policy", str(policy), unprivileged=True),
                    f"cannot read policy {policy}: Permission denied")


def test_a_directory_as_policy(tmp_path: Path) -> None:
    assert_one_line(run_cli("--policy", str(tmp_path)), f"policy {tmp_path} is a directory, not a file")


def test_an_unknown_builtin_policy() -> None:
    proc = run_cli("--policy", "builtin:nope")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("scrapeshield: no built-in policy 'nope' (built-in: default,")


def test_an_invalid_policy_names_file_line_and_column_on_the_first_line(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nrules:\n  - {name: r, limits: 10r/s}\n")
    proc = run_cli("--policy", str(policy))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[0].startswith(f"scrapeshield: cannot start: invalid policy: {policy}:3:23: ")

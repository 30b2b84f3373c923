"""The wheel, installed into a fresh venv outside the checkout, runs, checks, replays and inits.

This is what an operator gets from `pip install scrapeshield`: no repository, no PYTHONPATH, no
test dependencies; shipped policies and good-bot ranges found as package data by name.
"""
from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import httpx
import pytest
from deploytools import InstalledShield

import scrapeshield
from harness import REPO, OriginProcess, free_port, wait_http

pytestmark = pytest.mark.e2e


def test_the_wheel_carries_the_shipped_policies_and_ranges_as_files(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("default.yaml", "starter.yaml", "examples/api.yaml", "goodbots/bots.yaml",
                    "goodbots/googlebot.json", "goodbots/bingbot.json"):
        assert f"scrapeshield/policies/{shipped}" in names
    # the same bytes as the repository's policies/ folder: one source
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read("scrapeshield/policies/default.yaml") == (REPO / "policies" / "default.yaml").read_bytes()
    assert not any(n.startswith(("tests/", "policies/")) for n in names)


def test_the_install_holds_runtime_dependencies_only(installed: InstalledShield) -> None:
    proc = subprocess.run([str(installed.python), "-m", "pip", "list", "--format", "json"], capture_output=True,
                          text=True, check=True, env=installed.env())
    present = {p["name"].lower() for p in json.loads(proc.stdout)}
    assert {"scrapeshield", "mitmproxy", "pyyaml", "redis"} <= present
    assert not present & {"pytest", "playwright", "scrapy", "httpx", "curl-cffi", "jsonschema"}


def test_the_installed_package_is_imported_from_the_venv(installed: InstalledShield) -> None:
    out = subprocess.run([str(installed.python), "-c", "import scrapeshield; print(scrapeshield.__file__)"],
                         capture_output=True, text=True, check=True, env=installed.env(), cwd=installed.venv)
    assert Path(out.stdout.strip()).is_relative_to(installed.venv)


def test_version(installed: InstalledShield) -> None:
    proc = installed.run("--version")
    assert (proc.returncode, proc.stdout.strip()) == (0, f"scrapeshield {scrapeshield.__version__}")


def test_init_writes_a_starter_policy_that_passes_a_strict_check(installed: InstalledShield, tmp_path: Path) -> None:
    conf = tmp_path / "etc" / "scrapeshield"
    assert installed.run("init", str(conf)).returncode == 0
    assert (conf / "challenge.keys").stat().st_mode & 0o777 == 0o600
    check = installed.run("check", "--strict", str(conf / "policy.yaml"), "builtin:default")
    assert check.returncode == 0, check.stdout + check.stderr
    assert installed.run("init", str(conf)).returncode == 1  # never overwrites without --force


def test_run_answers_through_a_real_origin_with_the_builtin_default_policy(
        installed: InstalledShield, tmp_path: Path) -> None:
    # given a real origin, and the installed shield in front of it with the shipped default policy
    conf = tmp_path / "conf"
    installed.run("init", str(conf))
    with OriginProcess(workdir=tmp_path / "origin") as origin:
        port, admin = free_port(), free_port()
        log = (tmp_path / "shield.log").open("wb")
        shield = subprocess.Popen(
            [str(installed.scrapeshield), "run", "--upstream", origin.url, "--listen", f"127.0.0.1:{port}",
             "--admin", f"127.0.0.1:{admin}", "--secret-file", str(conf / "challenge.keys"),
             "--confdir", str(tmp_path / "confdir")],
            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=installed.env())
        try:
            health = wait_http(f"http://127.0.0.1:{admin}/healthz", 30, process=shield)
            # when a client asks for a page
            page = httpx.get(f"http://127.0.0.1:{port}/", trust_env=False, timeout=10)
            # then the origin's page comes back, decided by the packaged policy
            assert page.status_code == 200 and "shield-action" not in page.headers
            status = httpx.get(f"http://127.0.0.1:{admin}/status", trust_env=False, timeout=5).json()
            assert status["policy"]["name"] == "default"
            assert Path(status["policy"]["file"]).is_relative_to(installed.venv)
            assert health.json()["policy"] == status["policy"]["version"]
        finally:
            shield.terminate()
            code = shield.wait(10)
            log.close()
    assert code == 0, (tmp_path / "shield.log").read_text()


def test_replay_runs_captured_flows_through_a_builtin_policy(installed: InstalledShield) -> None:
    proc = installed.run("replay", str(REPO / "tests" / "captures" / "curl.flows"), "--policy", "builtin:default",
                         "--format", "json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["policy"]["name"] == "default" and report["requests"] > 0


def test_a_policy_copied_out_of_the_package_still_finds_the_builtin_ranges(
        installed: InstalledShield, tmp_path: Path) -> None:
    # the case: copying default.yaml to a config directory lost its goodbots directory
    copy = tmp_path / "default.yaml"
    copy.write_bytes((REPO / "policies" / "default.yaml").read_bytes())
    proc = installed.run("check", "--strict", str(copy))
    assert proc.returncode == 0, proc.stdout

"""The systemd unit: valid for systemd itself, hardened, and its commands work as written.

`systemd-analyze verify` checks the unit as systemd would load it (unknown keys and bad values
are printed as warnings, so the test wants no output at all); `systemd-analyze security` scores
its sandboxing offline. No systemd runs here as PID 1, so the last test plays the service
manager: it starts the unit's ExecStart with the unit's environment and credential, and sends
ExecReload's signal, against a real origin.
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from deploytools import REPO, need

from harness import OriginProcess, free_port, wait_http

pytestmark = pytest.mark.e2e

UNIT = REPO / "deploy" / "systemd" / "scrapeshield.service"
INSTALLED_BIN = "/opt/scrapeshield/bin/scrapeshield"
HERE_BIN = str(Path(sys.executable).parent / "scrapeshield")


def _unit_here(tmp_path: Path) -> Path:
    """The unit with the documented install path swapped for this venv's (verify checks it exists)."""
    unit = tmp_path / "scrapeshield.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED_BIN, HERE_BIN))
    return unit


def _service_lines(key: str) -> list[str]:
    return [ln.split("=", 1)[1] for ln in UNIT.read_text().splitlines() if ln.startswith(f"{key}=")]


def test_systemd_analyze_verify_accepts_the_unit_without_a_warning(tmp_path: Path) -> None:
    need("systemd-analyze")
    proc = subprocess.run(["systemd-analyze", "verify", str(_unit_here(tmp_path))], capture_output=True, text=True,
                          timeout=60)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


def test_the_unit_is_sandboxed(tmp_path: Path) -> None:
    proc = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(_unit_here(tmp_path))],
                          capture_output=True, text=True, timeout=60)
    level = re.search(r"Overall exposure level for \S+: ([\d.]+)", proc.stdout)
    assert level, proc.stdout + proc.stderr
    assert float(level[1]) <= 2.0  # systemd's "OK" band; unhardened services score 9.6


def test_the_unit_runs_as_a_dedicated_user_with_reload_and_restart() -> None:
    assert _service_lines("User") == ["scrapeshield"] and _service_lines("Group") == ["scrapeshield"]
    assert _service_lines("ExecReload") == ["/bin/kill -HUP $MAINPID"]
    assert _service_lines("Restart") == ["on-failure"]
    sysusers = (REPO / "deploy" / "systemd" / "scrapeshield.sysusers").read_text()
    assert re.search(r"^u scrapeshield ", sysusers, re.M)


def test_execstart_with_the_units_environment_serves_and_execreload_reloads(tmp_path: Path) -> None:
    # given /etc/scrapeshield as `scrapeshield init` leaves it, and the credential systemd would pass
    etc, creds = tmp_path / "etc", tmp_path / "credentials"
    subprocess.run([HERE_BIN, "init", str(etc)], check=True, capture_output=True)
    (etc / "policy.yaml").write_text("version: 1\nname: v1\n")
    creds.mkdir()
    (creds / "challenge.keys").write_bytes((etc / "challenge.keys").read_bytes())
    with OriginProcess(workdir=tmp_path / "origin") as origin:
        port, admin = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCRAPESHIELD_")}
        for line in _service_lines("Environment"):
            key, _, value = line.partition("=")
            env[key] = value.replace("/etc/scrapeshield", str(etc)).replace("/var/lib/scrapeshield",
                                                                            str(tmp_path / "state"))
        # what an operator puts in /etc/scrapeshield/scrapeshield.env
        env |= {"SCRAPESHIELD_UPSTREAM": origin.url, "SCRAPESHIELD_LISTEN": f"127.0.0.1:{port}",
                "SCRAPESHIELD_ADMIN": f"127.0.0.1:{admin}", "SCRAPESHIELD_RELOAD_INTERVAL": "0"}
        (pre,) = _service_lines("ExecStartPre")
        pre_argv = [a.replace(INSTALLED_BIN, HERE_BIN).replace("${SCRAPESHIELD_POLICY}", env["SCRAPESHIELD_POLICY"])
                    for a in shlex.split(pre)]
        assert subprocess.run(pre_argv, env=env, capture_output=True, timeout=60).returncode == 0
        (start,) = _service_lines("ExecStart")
        argv = [a.replace(INSTALLED_BIN, HERE_BIN).replace("%d", str(creds)) for a in shlex.split(start)]
        log = (tmp_path / "service.log").open("wb")
        service = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
        try:
            wait_http(f"http://127.0.0.1:{admin}/healthz", 30, process=service)
            assert httpx.get(f"http://127.0.0.1:{port}/", trust_env=False, timeout=10).status_code == 200
            # when the policy changes and `systemctl reload` sends ExecReload's signal (polling is off)
            (etc / "policy.yaml").write_text("version: 1\nname: v2\n")
            assert _service_lines("ExecReload") == ["/bin/kill -HUP $MAINPID"]
            os.kill(service.pid, signal.SIGHUP)
            deadline = time.monotonic() + 10
            while httpx.get(f"http://127.0.0.1:{admin}/status", trust_env=False).json()["policy"]["name"] != "v2":
                assert time.monotonic() < deadline, (tmp_path / "service.log").read_text()
                time.sleep(0.1)
        finally:
            service.send_signal(signal.SIGTERM)  # KillSignal=SIGTERM
            code = service.wait(15)
            log.close()
    assert code == 0, (tmp_path / "service.log").read_text()

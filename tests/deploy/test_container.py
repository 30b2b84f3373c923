"""The container image, built from the Dockerfile and run with podman, as an operator would.

No registry image can be pulled here, so the base is built from Debian packages
(deploy/container/build-base: debootstrap of trixie, cached under .cache/) and handed to the
Dockerfile through its BASE build argument. Build and run use podman with the runc runtime and
host networking (what works on this machine). One container, several checks in order: the proxy
answers, a refusal happens, /healthz and the HEALTHCHECK pass, the compiled core runs, the process
is PID 1 and not root, an edit of the mounted policy is picked up, SIGTERM stops it cleanly.
"""
from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from deploytools import REPO, need

from harness import OriginProcess, free_port, wait_http

pytestmark = pytest.mark.e2e

IMAGE = "localhost/scrapeshield:test"
UID = 10001  # the Dockerfile's shield user

POLICY = """version: 1
name: container-v1
rules:
  - {name: no-admin, match: {path: /admin/*}, action: block}
"""
EDITED = """version: 1
name: container-v2
rules:
  - {name: no-admin, match: {path: /admin/*}, action: block}
  - {name: no-users, match: {path: /user/*}, action: block}
"""


def podman(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CONTAINERS_CONF=str(_containers_conf()))
    return subprocess.run(["podman", "--runtime", "runc", *args], capture_output=True, text=True, timeout=timeout,
                          check=check, env=env)


def _containers_conf() -> Path:
    """podman's default ulimits cannot be set in this sandbox; a containers.conf without them."""
    path = REPO / ".cache" / "containers.conf"
    path.parent.mkdir(exist_ok=True)
    if not path.exists():
        path.write_text("[containers]\ndefault_ulimits = []\n")
    return path


@pytest.fixture(scope="module")
def image() -> str:
    for tool in ("podman", "runc", "debootstrap"):
        need(tool)
    env = dict(os.environ, CONTAINERS_CONF=str(_containers_conf()))
    # The base from Debian packages, then the Dockerfile (pip trusting the host's CA bundle: this
    # machine's egress inspects TLS). scripts/test has usually run the same build beside the
    # set-up (scripts/prebuild-image): then every layer is in podman's cache.
    result = subprocess.run([str(REPO / "deploy" / "container" / "build-image"), IMAGE], capture_output=True,
                            text=True, timeout=900, env=env, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return IMAGE


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    """The directory mounted at /etc/scrapeshield: policy and secret, owned by the image's user."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "policy.yaml").write_text(POLICY)
    (conf / "challenge.keys").write_text(os.urandom(32).hex() + "\n")
    (conf / "challenge.keys").chmod(0o600)
    for path in (conf, *conf.iterdir()):
        os.chown(path, UID, UID)
    return conf


@pytest.fixture
def container(image: str, conf_dir: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    with OriginProcess(workdir=tmp_path / "origin") as origin:
        port, admin = free_port(), free_port()
        name = f"scrapeshield-test-{uuid.uuid4().hex[:8]}"
        podman("run", "-d", "--name", name, "--network", "host",
               "-v", f"{conf_dir}:/etc/scrapeshield:ro",
               "-e", f"SCRAPESHIELD_UPSTREAM={origin.url}",
               "-e", f"SCRAPESHIELD_LISTEN=127.0.0.1:{port}", "-e", f"SCRAPESHIELD_ADMIN=127.0.0.1:{admin}",
               "-e", "SCRAPESHIELD_SECRET_FILE=/etc/scrapeshield/challenge.keys",
               "-e", "SCRAPESHIELD_RELOAD_INTERVAL=0.5", image)
        try:
            yield {"name": name, "proxy": f"http://127.0.0.1:{port}", "admin": f"http://127.0.0.1:{admin}"}
        finally:
            podman("rm", "-f", "-t", "2", name, check=False)


def _get(url: str) -> httpx.Response:
    return httpx.get(url, trust_env=False, timeout=10)


def test_the_image_runs_the_shield_as_an_operator_deploys_it(container: dict[str, str], conf_dir: Path) -> None:
    name, proxy, admin = container["name"], container["proxy"], container["admin"]
    try:
        health = wait_http(f"{admin}/healthz", 60)
    except TimeoutError:
        pytest.fail(podman("logs", name, check=False).stdout)
    assert health.json()["ok"] is True
    assert _get(f"{admin}/readyz").status_code == 200  # what a readiness probe asks
    # the image ships the compiled core, and it is the one running (built for the image's Python)
    compiled = _get(f"{admin}/status").json()["compiled_core"]
    assert compiled["used"] is True, compiled

    # the proxy answers from the origin, and refuses what the mounted policy refuses
    page = _get(f"{proxy}/")
    assert page.status_code == 200 and "shield-action" not in page.headers
    refused = _get(f"{proxy}/admin/users")
    assert (refused.status_code, refused.headers.get("shield-action")) == (403, "block")

    # the image's HEALTHCHECK passes
    assert podman("healthcheck", "run", name, check=False).returncode == 0

    # the shield is PID 1 in the container and runs as the unprivileged user
    pid = podman("inspect", "--format", "{{.State.Pid}}", name).stdout.strip()
    status = Path(f"/proc/{pid}/status").read_text()
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert uids == [str(UID)] * 4
    assert "scrapeshield" in Path(f"/proc/{pid}/cmdline").read_bytes().decode()
    assert podman("exec", name, "cat", "/proc/1/comm").stdout.strip().startswith(("python", "scrapeshield"))

    # the final image carries no build tools: no compiler, no pip
    # (the compiled core's build tools included: no mypy either)
    tools = podman("exec", name, "sh", "-c", "command -v gcc cc make pip pip3 mypy mypyc; "
                   "ls /opt/scrapeshield/bin/pip* /opt/scrapeshield/bin/mypy*", check=False)
    assert tools.stdout.strip() == "", tools.stdout

    # an edit of the mounted policy (written aside and renamed over, as editors do) is picked up
    assert _get(f"{proxy}/user/1").status_code == 200
    staged = conf_dir / ".policy.yaml.tmp"
    staged.write_text(EDITED)
    os.chown(staged, UID, UID)
    staged.rename(conf_dir / "policy.yaml")
    deadline = time.monotonic() + 15
    while _get(f"{admin}/status").json()["policy"]["name"] != "container-v2":
        assert time.monotonic() < deadline, podman("logs", name, check=False).stdout[-2000:]
        time.sleep(0.2)
    assert _get(f"{proxy}/user/1").headers.get("shield-action") == "block"

    # SIGTERM (podman stop) reaches the shield, which stops at once and cleanly
    started = time.monotonic()
    podman("stop", "-t", "10", name)
    assert time.monotonic() - started < 8
    assert podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "0"
    logs = podman("logs", name).stdout  # one stream: stderr is sent to stdout by the entrypoint
    assert "policy reloaded" in logs and '"rule":"no-admin"' in logs

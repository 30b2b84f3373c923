"""Hot reload through real processes: `scrapeshield run` and stock `mitmdump -s addons/shield.py`.

A reload must never cost a request, never let a request be decided by anything but a complete,
valid policy, keep the state of buckets the new policy still has, and drop the rest.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import ServerProcess, ShieldProcess, free_port

pytestmark = pytest.mark.e2e

POLL = ["--reload-interval", "0.05"]
ShieldFactory = Callable[..., ShieldProcess]


# --- helpers ------------------------------------------------------------------------------------

def version_of(text: str) -> str:
    """The version /status reports for a policy file with this content."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def status(admin_url: str) -> dict[str, Any]:
    response = httpx.get(f"{admin_url}/status", timeout=5, trust_env=False)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def metric(admin_url: str, sample_name: str, **labels: str) -> float:
    text = httpx.get(f"{admin_url}/metrics", timeout=5, trust_env=False).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def wait_for[T](what: str, probe: Callable[[], T | None], timeout: float = 5.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def decision_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def get(shield_url: str, path: str) -> int:
    return httpx.get(shield_url + path, timeout=5, trust_env=False).status_code


# --- three ways operators replace a policy file -------------------------------------------------

def replace_by_rename(path: Path, text: str) -> None:
    """Write a temporary file beside it and rename it over (editors, `kubectl cp`, config tools)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def replace_in_place(path: Path, text: str) -> None:
    """Truncate and rewrite the same inode in two writes with a pause between them, so a reader
    can see a half-written file -- and the first half is a complete, valid policy on its own."""
    cut = text.find("  - name: served-by-")
    cut = cut if cut > 0 else len(text) // 2
    with open(path, "r+", encoding="utf-8") as fh:  # through a symlink too: writes its target
        fh.truncate(0)
        fh.write(text[:cut])
        fh.flush()
        time.sleep(0.03)
        fh.write(text[cut:])


def replace_by_symlink_swap(path: Path, text: str) -> None:
    """What a Kubernetes ConfigMap volume does: policy.yaml -> ..data/policy.yaml, and `..data` is
    a symlink to a fresh directory, swapped atomically."""
    root = path.parent
    version_dir = root / f"..{time.monotonic_ns()}"
    version_dir.mkdir()
    (version_dir / path.name).write_text(text)
    link = root / "..data_tmp"
    link.symlink_to(version_dir.name)
    os.replace(link, root / "..data")
    if not path.is_symlink():  # first swap of this style: point the file at ..data
        file_link = root / (path.name + ".link")
        file_link.symlink_to(Path("..data") / path.name)
        os.replace(file_link, path)


# --- 1. reloading under load --------------------------------------------------------------------

def valid_policy(n: int) -> str:
    # The limit rule first, the version's `log` rule last: the first "half" of an in-place write
    # is then a valid policy without any version rule, which the decision log would show.
    return f"""\
version: 1
name: v{n:02d}
rules:
  - name: records
    match: {{path: ["/user/*"]}}
    limits: ["1000/s burst 1000"]
  - name: served-by-v{n:02d}
    action: log
"""


# Invalid files, and where and what their first error is.
INVALID = [
    ("version: 1\nname: broken\nrules: [\n", 4, 1, "YAML syntax"),
    ("version: 1\nname: broken\nrulez: []\n", 3, 1, "unknown field 'rulez' (did you mean 'rules'?)"),
    ("version: 1\nname: broken\nrules:\n  - name: x\n    limits: ['lots']\n", 5, 14, "rate 'lots'"),
    ("version: 1\nname: broken\nrules:\n  - name: x\n    action: explode\n", 5, 13, "not 'explode'"),
    ("name: broken\nrules: []\n", 1, 1, "missing required field 'version'"),
]
STYLES = (replace_by_rename, replace_in_place, replace_by_symlink_swap)


@dataclass
class Load:
    """Clients sending requests until stopped; every outcome is kept."""

    base_url: str
    outcomes: dict[str, list[tuple[str, int | str]]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, name: str, keep_alive: bool) -> None:
        results = self.outcomes.setdefault(name, [])
        limits = httpx.Limits(max_keepalive_connections=1 if keep_alive else 0)
        with httpx.Client(base_url=self.base_url, timeout=5, trust_env=False, limits=limits) as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                path = f"/echo/{name}-{n}"
                try:
                    results.append((path, client.get(path).status_code))
                except httpx.HTTPError as exc:
                    results.append((path, f"{type(exc).__name__}: {exc}"))
                time.sleep(0.02)


def test_fifty_swaps_under_load_lose_no_request_and_every_request_meets_a_valid_policy(
        shield_factory: ShieldFactory, tmp_path: Path) -> None:
    policy_dir = tmp_path / "config"
    policy_dir.mkdir()
    policy = policy_dir / "policy.yaml"
    policy.write_text(valid_policy(0))
    log_path = tmp_path / "decisions.log"
    shield = shield_factory(policy=policy, decision_log=log_path, extra_args=POLL)
    load = Load(shield.proxy_url)
    threads = [threading.Thread(target=load.run, args=("keepalive", True)),
               threading.Thread(target=load.run, args=("fresh", False))]
    for t in threads:
        t.start()

    valid_versions = {"served-by-v00"}
    failed_locations = []
    try:
        wait_for("traffic", lambda: sum(len(v) for v in load.outcomes.values()) > 20)
        for i in range(1, 51):
            write = STYLES[i % len(STYLES)]
            failures_before = status(shield.admin_url)["counters"]["reloads_failed"]
            if i % 5 == 0:  # 10 invalid files: 5, 10, ..., 50
                text, line, col, message = INVALID[(i // 5) % len(INVALID)]
                write(policy, text)
                where = f"{policy}:{line}:{col}:"
                err = wait_for(f"swap {i} ({write.__name__}) to be rejected",
                               lambda before=failures_before: (s := status(shield.admin_url))["counters"][
                                   "reloads_failed"] > before and s["policy"]["last_reload_error"])
                assert err.startswith(where) and message in err.splitlines()[0], f"swap {i}: {err!r}"
                failed_locations.append(where)
            else:
                text = valid_policy(i)
                expected = version_of(text)
                write(policy, text)
                wait_for(f"swap {i} ({write.__name__}) to be loaded",
                         lambda v=expected: status(shield.admin_url)["policy"]["version"] == v)
                assert status(shield.admin_url)["policy"]["last_reload_error"] is None
                valid_versions.add(f"served-by-v{i:02d}")
    finally:
        load.stop.set()
        for t in threads:
            t.join(10)

    # No request failed: not during a swap, not during a rejected one.
    sent = [(path, outcome) for results in load.outcomes.values() for path, outcome in results]
    assert len(sent) > 300
    assert [o for o in sent if o[1] != 200] == []
    # Each request was decided by exactly one valid, complete version, and versions only moved forward.
    served: dict[str, list[str]] = {}
    for line in decision_lines(log_path):
        served.setdefault(line["path"], []).append(line["rule"])
    assert {p: r for p, r in served.items() if len(r) != 1 or r[0] not in valid_versions} == {}
    missing = [path for path, _ in sent if path not in served]
    assert missing == [], f"{len(missing)} requests decided without any version rule, e.g. {missing[:3]}"
    for results in load.outcomes.values():
        order = [int(served[path][0].rsplit("v", 1)[1]) for path, _ in results]
        assert order == sorted(order)
    assert len({rules[0] for rules in served.values()}) >= 35  # traffic really ran across the swaps
    # Counted and reported: 40 reloads, 10 rejected, the last rejection with its file:line:col.
    assert metric(shield.admin_url, "scrapeshield_policy_reloads_total", result="ok") == 40
    assert metric(shield.admin_url, "scrapeshield_policy_reloads_total", result="failed") == 10
    assert status(shield.admin_url)["policy"]["last_reload_error"].startswith(failed_locations[-1])
    assert status(shield.admin_url)["policy"]["version"] == version_of(valid_policy(49))


# --- 2. triggers and failure modes --------------------------------------------------------------

BLOCK_USERS = """\
version: 1
name: block-users
rules:
  - name: no-profiles
    match: {path: ["/user/*"]}
    action: block
"""
ALLOW_ALL = "version: 1\nname: allow-all\nrules: []\n"


def test_sighup_reloads_the_policy_when_polling_is_off(shield_factory: ShieldFactory, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(ALLOW_ALL)
    shield = shield_factory(policy=policy, extra_args=["--reload-interval", "0"])
    assert get(shield.proxy_url, "/user/1") == 200

    replace_by_rename(policy, BLOCK_USERS)
    time.sleep(0.5)
    assert status(shield.admin_url)["policy"]["version"] == version_of(ALLOW_ALL)  # nobody looked

    assert shield.pid is not None
    os.kill(shield.pid, signal.SIGHUP)
    wait_for("the SIGHUP reload", lambda: status(shield.admin_url)["policy"]["version"] == version_of(BLOCK_USERS))
    assert get(shield.proxy_url, "/user/1") == 403


def test_a_deleted_policy_file_keeps_the_last_good_policy(shield_factory: ShieldFactory, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(BLOCK_USERS)
    shield = shield_factory(policy=policy, extra_args=POLL)
    assert get(shield.proxy_url, "/user/1") == 403

    policy.unlink()
    error = wait_for("the missing file to be noticed", lambda: status(shield.admin_url)["policy"]["last_reload_error"])

    assert "missing" in error and str(policy) in error
    assert status(shield.admin_url)["policy"]["version"] == version_of(BLOCK_USERS)
    assert get(shield.proxy_url, "/user/1") == 403
    assert get(shield.proxy_url, "/") == 200

    policy.write_text(ALLOW_ALL)  # and a file that comes back is loaded
    wait_for("the new file", lambda: status(shield.admin_url)["policy"]["version"] == version_of(ALLOW_ALL))
    assert status(shield.admin_url)["policy"]["last_reload_error"] is None
    assert get(shield.proxy_url, "/user/1") == 200


TWO_BUCKETS = """\
version: 1
name: two-buckets
rules:
  - name: products
    match: {{path: ["/products/*"]}}
    limits: ["1/m burst 2"]
  - name: people
    match: {{path: ["/user/*"]}}
    limits: ["{people}"]
"""


def test_a_reload_keeps_unchanged_buckets_and_resets_changed_ones(shield_factory: ShieldFactory,
                                                                  tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(TWO_BUCKETS.format(people="1/m burst 2"))
    shield = shield_factory(policy=policy, extra_args=POLL)
    for path in ("/products/1", "/user/1"):
        assert [get(shield.proxy_url, path) for _ in range(4)] == [200, 200, 200, 429]  # burst 2: three at once

    changed = TWO_BUCKETS.format(people="1/m burst 3") + "  - name: a-new-log-rule\n    action: log\n"
    replace_by_rename(policy, changed)
    wait_for("the reload", lambda: status(shield.admin_url)["policy"]["version"] == version_of(changed))

    assert get(shield.proxy_url, "/products/1") == 429  # same rule, key and limit: its state stayed
    assert [get(shield.proxy_url, "/user/1") for _ in range(5)] == [200, 200, 200, 200, 429]  # a new bucket


# --- 3. the shadow policy -----------------------------------------------------------------------

def test_a_shadow_policy_counts_and_logs_differences_without_enforcing_them(shield_factory: ShieldFactory,
                                                                            tmp_path: Path) -> None:
    live = tmp_path / "live.yaml"
    live.write_text(ALLOW_ALL)
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(BLOCK_USERS)
    log_path = tmp_path / "decisions.log"
    shield = shield_factory(policy=live, shadow_policy=candidate, decision_log=log_path)

    codes = [get(shield.proxy_url, p) for p in ("/user/1", "/", "/user/2", "/products/1", "/user/3")]

    assert codes == [200] * 5  # nothing the candidate decides is enforced
    assert metric(shield.admin_url, "scrapeshield_shadow_differences_total", live="allow", shadow="block") == 3
    shadowed = wait_for("3 decision log lines", lambda: len(ls := [ln for ln in decision_lines(log_path)
                                                                  if "shadow" in ln]) == 3 and ls)
    assert [(ln["path"], ln["action"], ln["shadow"]["action"], ln["shadow"]["rule"]) for ln in shadowed] == [
        (p, "allow", "block", "no-profiles") for p in ("/user/1", "/user/2", "/user/3")]
    assert status(shield.admin_url)["shadow_policy"]["version"] == version_of(BLOCK_USERS)


# --- 4. stock mitmdump -s addons/shield.py ------------------------------------------------------

MITMDUMP = Path(sys.executable).with_name("mitmdump")
SHIELD_SCRIPT = Path(__file__).resolve().parents[2] / "addons" / "shield.py"


class MitmdumpProcess(ServerProcess):
    """`mitmdump -s <copy of addons/shield.py>` in reverse mode, ready when the shield's admin answers."""

    name = "mitmdump"
    startup_timeout = 30.0

    def __init__(self, upstream: str, policy: Path, script: Path, workdir: Path) -> None:
        super().__init__(workdir)
        self.upstream, self.policy, self.script = upstream, policy, script
        self.port, self.admin_port = free_port(), free_port()

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def _argv(self) -> list[str]:
        return [str(MITMDUMP), "-s", str(self.script), "--mode", f"reverse:{self.upstream}",
                "--listen-host", "127.0.0.1", "--listen-port", str(self.port),
                "--set", f"scrapeshield_policy={self.policy}",
                "--set", f"scrapeshield_admin=127.0.0.1:{self.admin_port}",
                "--set", f"scrapeshield_decision_log={self.workdir / 'decisions.log'}",
                "--set", "block_global=false", "--set", "keep_host_header=true",
                "--set", "connection_strategy=lazy", "--set", f"confdir={self.workdir / 'confdir'}"]

    def _ready_url(self) -> str:
        return f"{self.admin_url}/healthz"

    def _repick_ports(self) -> None:
        self.port, self.admin_port = free_port(), free_port()


def test_mitmdump_script_reexecution_keeps_bucket_state_and_policy_reload_works(demo_origin: str,
                                                                                 tmp_path: Path) -> None:
    script = tmp_path / "shield.py"  # a copy, so touching it does not touch the repository
    shutil.copy(SHIELD_SCRIPT, script)
    policy = tmp_path / "policy.yaml"
    policy.write_text(TWO_BUCKETS.format(people="1/m burst 2"))
    with MitmdumpProcess(demo_origin, policy, script, tmp_path / "mitmdump") as proxy:
        assert [get(proxy.proxy_url, "/products/1") for _ in range(4)] == [200, 200, 200, 429]

        later = time.time() + 5
        os.utime(script, (later, later))  # mitmproxy re-executes a script whose mtime moved on
        wait_for("the script to be re-executed", lambda: proxy.log_text().count("Loading script") >= 2, timeout=10)

        assert get(proxy.proxy_url, "/products/1") == 429  # same runtime, same buckets
        assert status(proxy.admin_url)["counters"]["decisions"]["products/throttle"] == 2

        changed = TWO_BUCKETS.format(people="1/m burst 2").replace('["1/m burst 2"]', '["1/m burst 5"]', 1)
        replace_by_rename(policy, changed)
        wait_for("the policy reload", lambda: status(proxy.admin_url)["policy"]["version"] == version_of(changed),
                 timeout=10)
        assert get(proxy.proxy_url, "/products/1") == 200  # its bucket changed: fresh state


SHADOWED = """\
version: 1
name: shadowed
rules:
  - name: everything
    match: {path: ["/*"]}
    action: allow
  - name: people
    match: {path: ["/user/*"]}
    action: block
"""


def test_lint_warnings_are_logged_at_start_and_on_reload(shield_factory: ShieldFactory, tmp_path: Path) -> None:
    """What `scrapeshield check` warns about is logged by a running shield too, so an operator who
    edits the live file sees it without running `check`; once per change, not once per poll."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(SHADOWED)
    shield = shield_factory(policy=policy, extra_args=POLL)
    wait_for("the start-up warning", lambda: "rule 'people' is unreachable" in shield.log_text())
    assert any("unreachable" in w for w in status(shield.admin_url)["policy"]["warnings"])

    replace_by_rename(policy, ALLOW_ALL)
    wait_for("the reload", lambda: status(shield.admin_url)["policy"]["version"] == version_of(ALLOW_ALL))
    assert status(shield.admin_url)["policy"]["warnings"] == []

    replace_by_rename(policy, SHADOWED.replace("shadowed", "shadowed-again"))
    wait_for("the warning again", lambda: shield.log_text().count("rule 'people' is unreachable") == 2)
    time.sleep(0.3)  # a few polls of an unchanged file log nothing more
    assert shield.log_text().count("rule 'people' is unreachable") == 2
    assert f"{policy}:7:5: warning:" in shield.log_text()

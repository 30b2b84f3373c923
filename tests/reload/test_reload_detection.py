"""When `ShieldRuntime.reload()` reads the policy file, and when it leaves it alone (in-process).

File ages are set with os.utime instead of sleeping, so each case is exact and instant.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scrapeshield.runtime import RACY_SECONDS, SETTLE_SECONDS, RuntimeConfig, ShieldRuntime

A = "version: 1\nname: policy-a\nrules: []\n"
B = "version: 1\nname: policy-b\nrules: []\n"  # the same size as A


def age(path: Path, seconds: float) -> None:
    """Make the file's mtime `seconds` old."""
    t = time.time_ns() - int(seconds * 1e9)
    os.utime(path, ns=(t, t))


def rewrite_in_place(path: Path, text: str) -> None:
    with open(path, "r+", encoding="utf-8") as fh:
        fh.truncate(0)
        fh.write(text)


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(A)
    age(path, 10)
    return path


@pytest.fixture
def runtime(policy: Path) -> Iterator[ShieldRuntime]:
    rt = ShieldRuntime(RuntimeConfig(str(policy), admin="", decision_log=os.devnull, reload_interval=0))
    yield rt
    rt.decision_log.close()


def test_an_unchanged_file_is_not_reloaded(runtime: ShieldRuntime) -> None:
    assert [runtime.reload() for _ in range(3)] == [False, False, False]
    assert (runtime.reloads_ok, runtime.reloads_failed) == (0, 0)


def test_a_file_written_moments_ago_waits_until_it_has_settled(runtime: ShieldRuntime, policy: Path) -> None:
    policy.write_text(B)

    assert runtime.reload() is False  # may be half-written
    assert runtime.policy.name == "policy-a"

    age(policy, SETTLE_SECONDS + 0.05)
    assert runtime.reload() is True
    assert runtime.policy.name == "policy-b"


def test_a_freshly_emptied_file_is_waited_for_then_reported(runtime: ShieldRuntime, policy: Path) -> None:
    policy.write_text("")
    age(policy, SETTLE_SECONDS + 0.05)  # settled, but a truncate whose writer may still come

    assert runtime.reload() is False
    assert runtime.reloads_failed == 0

    age(policy, RACY_SECONDS + 0.5)
    assert runtime.reload() is False
    assert runtime.reloads_failed == 1
    assert runtime.last_reload_error == f"{policy}:1:1: policy is empty"
    assert runtime.policy.name == "policy-a"


def test_a_same_size_rewrite_with_the_same_mtime_is_still_noticed(runtime: ShieldRuntime, policy: Path) -> None:
    rewrite_in_place(policy, B)
    age(policy, 1.0)  # settled, but recent enough that a coarse clock could repeat this mtime
    assert runtime.reload() is True
    mtime = policy.stat().st_mtime_ns

    rewrite_in_place(policy, A)  # same inode, same size ...
    os.utime(policy, ns=(mtime, mtime))  # ... and the same mtime: the stat signature cannot tell

    assert runtime.reload() is True
    assert runtime.policy.name == "policy-a"


def test_content_checks_of_an_unchanged_recent_file_do_not_recompile(runtime: ShieldRuntime, policy: Path) -> None:
    policy.write_text(B)
    age(policy, 1.0)
    assert runtime.reload() is True

    assert [runtime.reload() for _ in range(3)] == [False, False, False]
    assert runtime.reloads_ok == 1


def test_touching_the_policy_recompiles_it_to_pick_up_an_edited_ip_list(tmp_path: Path) -> None:
    ranges = tmp_path / "ranges.txt"
    ranges.write_text("192.0.2.0/24\n")
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nip_lists:\n  office: {file: ranges.txt}\n"
                      "rules:\n  - name: office\n    match: {client_ip: '@office'}\n    action: block\n")
    age(policy, 10)
    rt = ShieldRuntime(RuntimeConfig(str(policy), admin="", decision_log=os.devnull, reload_interval=0))
    ranges.write_text("198.51.100.0/24\n")
    assert rt.reload() is False  # only the policy file is watched

    age(policy, 5)  # touch
    assert rt.reload() is True
    (rule,) = rt.policy.rules
    from scrapeshield.context import DecisionContext
    from scrapeshield.facts import RequestFacts

    def request(ip: str) -> DecisionContext:
        return DecisionContext(RequestFacts(peer_ip=ip))

    assert rule.match(request("198.51.100.9")) and not rule.match(request("192.0.2.9"))
    rt.decision_log.close()


def test_sighup_recompiles_even_an_unchanged_file(runtime: ShieldRuntime) -> None:
    before = runtime.policy

    assert runtime.reload(force=True) is True
    assert runtime.policy is not before and runtime.policy.version_hash == before.version_hash


def test_a_rejected_file_is_logged_once_per_distinct_error_and_counted_per_attempt(
        runtime: ShieldRuntime, policy: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="scrapeshield")
    policy.write_text("version: 1\nrulez: []\n")
    age(policy, 5)
    runtime.reload()
    age(policy, 4)  # touched: tried again, same error
    runtime.reload()
    policy.write_text("version: 2\nrules: []\n")
    age(policy, 3)
    runtime.reload()

    assert runtime.reloads_failed == 3
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 2
    assert f"{policy}:2:1: policy: unknown field 'rulez'" in logged[0]
    assert f"{policy}:1:10: unsupported policy version" in logged[1]
    assert runtime.policy.name == "policy-a"


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_missing_file_keeps_the_policy_and_a_returning_file_is_loaded(runtime: ShieldRuntime,
                                                                        policy: Path) -> None:
    runtime.watcher.monotonic = clock = FakeMonotonic()
    policy.unlink()
    assert runtime.reload() is False
    assert runtime.last_reload_error is None  # gone for a moment: perhaps mid-save
    clock.now += SETTLE_SECONDS
    assert runtime.reload() is False
    assert runtime.last_reload_error is not None and "file is missing" in runtime.last_reload_error
    assert [runtime.reload() for _ in range(2)] == [False, False]
    assert runtime.reloads_failed == 1  # once, not once per poll

    policy.write_text(B)
    age(policy, 5)
    assert runtime.reload() is True
    assert runtime.last_reload_error is None


def test_a_file_gone_for_a_moment_is_not_reported_missing(runtime: ShieldRuntime, policy: Path) -> None:
    """An editor that deletes and rewrites, or a rename a filesystem does not make atomic for
    lookups: polls in that moment neither count a failure nor lose the file's next version."""
    runtime.watcher.monotonic = clock = FakeMonotonic()
    policy.unlink()
    for _ in range(3):
        assert runtime.reload() is False
        clock.now += SETTLE_SECONDS / 4
    policy.write_text(B)
    age(policy, 5)
    assert runtime.reload() is True
    assert (runtime.policy.name, runtime.reloads_failed, runtime.last_reload_error) == ("policy-b", 0, None)

    policy.unlink()  # and the moment starts again from the file's next disappearance
    clock.now += 10
    assert runtime.reload() is False
    assert runtime.reloads_failed == 0


def test_sighup_reports_a_missing_file_at_once(runtime: ShieldRuntime, policy: Path) -> None:
    policy.unlink()
    assert runtime.reload(force=True) is False
    assert runtime.reloads_failed == 1 and "file is missing" in str(runtime.last_reload_error)


def test_turning_on_ip_hashing_in_the_decision_log_applies_at_the_reload(runtime: ShieldRuntime,
                                                                         policy: Path) -> None:
    policy.write_text(A + "log: {hash_ips: true}\n")
    age(policy, 5)

    assert runtime.reload() is True
    assert runtime.decision_log.hash_ips is True

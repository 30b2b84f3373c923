"""The pure parts of `--workers`: the placement program (run by the real kernel), merging, argv."""
from __future__ import annotations

import select
import socket

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from scrapeshield.connlimits import ConnectionLimits, parse_size
from scrapeshield.workers.aggregate import merge_metrics, merge_status
from scrapeshield.workers.reuseport import dual_stack_program, ipv4_program, worker_for, worker_group
from scrapeshield.workers.supervisor import parse_workers, worker_argv


def accepted_by(group: list[socket.socket], source: str) -> int:
    """Which socket of the group the kernel hands a new connection from `source` to."""
    port = group[0].getsockname()[1]
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)):
        ready, _, _ = select.select(group, [], [], 5)
        assert len(ready) == 1
        conn, _ = ready[0].accept()
        conn.close()
        return group.index(ready[0])


@pytest.mark.parametrize("host", ["127.0.0.1", "::"])
@pytest.mark.parametrize("workers", [2, 3])
def test_the_kernel_places_every_connection_of_a_24_on_the_worker_the_program_names(host: str, workers: int) -> None:
    group = worker_group(host, 0, workers)
    try:
        for source in ("127.0.0.2", "127.0.0.200", "127.0.1.2", "127.0.2.77", "127.0.3.9", "127.0.4.1"):
            placed = {accepted_by(group, source) for _ in range(5)}
            assert placed == {worker_for(source, workers)}, source
    finally:
        for sock in group:
            sock.close()


def test_the_ipv4_program_is_four_instructions_and_ipv6_uses_the_64() -> None:
    assert len(ipv4_program(2)) == 4
    assert len(dual_stack_program(2)) == 13
    assert worker_for("2001:db8:1:2::1", 4) == worker_for("2001:db8:1:2:ffff::9", 4)
    assert worker_for("::ffff:127.0.1.2", 2) == worker_for("127.0.1.2", 2)


@pytest.mark.parametrize("text", ["0", "-2", "x", "2.5", "257", " "])
def test_bad_worker_counts_are_refused_in_one_line(text: str) -> None:
    with pytest.raises(ValueError, match=r"^--workers must be a whole number from 1 to 256 or 'auto', not "):
        parse_workers(text)


def test_auto_is_one_worker_per_usable_cpu() -> None:
    assert parse_workers("auto") >= 1 and parse_workers("4") == 4


def test_a_worker_gets_the_operators_arguments_without_the_supervisors() -> None:
    argv = ["run", "--upstream", "http://o", "--workers", "2", "--listen=0.0.0.0:80", "--admin", "127.0.0.1:9",
            "--policy", "p.yaml", "--header-timeout", "3"]
    assert worker_argv(argv) == ["--upstream", "http://o", "--policy", "p.yaml", "--header-timeout", "3"]


def _exposition(decisions: int, tracked: int, timestamp: float) -> str:
    registry = CollectorRegistry()
    Counter("scrapeshield_decisions", "d", ["rule"], registry=registry).labels("r").inc(decisions)
    Gauge("scrapeshield_tracked_keys", "t", registry=registry).set(tracked)
    Gauge("scrapeshield_policy_loaded_timestamp_seconds", "l", registry=registry).set(timestamp)
    return generate_latest(registry).decode()


def test_merged_metrics_sum_counters_and_gauges_and_keep_the_latest_timestamp() -> None:
    merged = merge_metrics([_exposition(3, 10, 100.0), _exposition(4, 5, 200.0)]).decode()
    samples = {(s.name, tuple(s.labels.items())): s.value
               for family in text_string_to_metric_families(merged) for s in family.samples}
    assert samples[("scrapeshield_decisions_total", (("rule", "r"),))] == 7
    assert samples[("scrapeshield_tracked_keys", ())] == 15
    assert samples[("scrapeshield_policy_loaded_timestamp_seconds", ())] == 200.0


def test_merged_status_sums_counters_and_keeps_each_worker() -> None:
    one = {"policy": {"version": "a"}, "counters": {"decisions": {"default/allow": 2}, "reloads_ok": 1}}
    two = {"policy": {"version": "a"}, "counters": {"decisions": {"default/allow": 3, "x/block": 1}, "reloads_ok": 1}}
    merged = merge_status([{"index": 0, "up": True, "status": one}, {"index": 1, "up": True, "status": two},
                           {"index": 2, "up": False, "status": None}])
    assert merged["counters"] == {"decisions": {"default/allow": 5, "x/block": 1}, "reloads_ok": 2}
    assert merged["policy"] == {"version": "a"}
    assert [w["index"] for w in merged["workers"]] == [0, 1, 2]


def test_connection_limits_refuse_nonsense_and_sizes_take_suffixes() -> None:
    assert parse_size("16k") == 16384 and parse_size("10m") == 10 * 1024**2 and parse_size("123") == 123
    with pytest.raises(ValueError, match="--header-timeout must be a number of seconds > 0"):
        ConnectionLimits(header_timeout=0)
    with pytest.raises(ValueError, match="--max-headers must be at least 1"):
        ConnectionLimits(max_headers=0)

#!/usr/bin/env python3
"""What N slow connections cost the shield's garbage collector: GC-tracked objects per connection,
and how long one full collection stops the process with all N open (issue #15).

    .venv/bin/python bench/bench_gc_connections.py                 # 19,800 slow connections
    .venv/bin/python bench/bench_gc_connections.py --slow 5000

The shield runs in this process (`scrapeshield run`, empty policy, header timeout 120 s so all N
stay open), its event loop in the main thread; a second thread measures: the GC-tracked objects
(`gc.get_objects()`, frozen ones excluded) and the duration of `gc.collect()` -- which holds the
GIL, so it stops the shield's loop exactly as a full pass of its own would -- before and after N
slow connections (partial request heads from 100 loopback addresses, opened by two child
processes) are open. Then the shield is stopped with SIGINT. No upstream is needed.

Set PYTHONPATH to another checkout's `addons` to measure that code (e.g. before a change).
"""
from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import resource
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_hardening import open_slow
from bench_proxy import HOST, free_port, http_get


def collect_times(repeat: int = 3) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        gc.collect()
        times.append(time.perf_counter() - t0)
    return times


def tracked() -> int:
    gc.collect()
    return len(gc.get_objects())


def by_type() -> Counter[str]:
    gc.collect()
    return Counter(type(o).__qualname__ for o in gc.get_objects())


def measure(port: int, admin: int, total: int, rate: float, report: list[str]) -> None:
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if http_get(f"http://{HOST}:{admin}/healthz", 1.0)[0] == 200:
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        time.sleep(1.0)
        idle_objects, idle_times, idle_types = tracked(), collect_times(), by_type()
        report.append(f"idle: {idle_objects:,} GC-tracked objects (frozen: {gc.get_freeze_count():,}); "
                      f"full gc.collect() {statistics.median(idle_times) * 1000:.1f} ms (median of 3)")
        spawn = multiprocessing.get_context("spawn")  # no fork of a process running an event loop and threads
        opened, closed = spawn.Value("i", 0), spawn.Value("i", 0)
        half = total // 2
        clients = [spawn.Process(target=open_slow, args=(port, n, i * half, opened, closed, 600.0,
                                                                   rate / 2, 600.0))
                   for i, n in enumerate((half, total - half))]
        for c in clients:
            c.start()
        deadline = time.monotonic() + total / rate + 60
        while opened.value < total and time.monotonic() < deadline and any(c.is_alive() for c in clients):
            time.sleep(0.2)
        time.sleep(2.0)  # the last ones accepted and their first bytes read
        busy_objects, busy_times = tracked(), collect_times()
        per = (busy_objects - idle_objects) / max(opened.value, 1)
        report.append(f"{opened.value:,} slow connections open: {busy_objects:,} GC-tracked objects "
                      f"(+{per:.1f} per connection); full gc.collect() "
                      f"{statistics.median(busy_times) * 1000:.1f} ms (median of 3, max {max(busy_times) * 1000:.1f})")
        grown = by_type()
        grown.subtract(idle_types)
        report.append("  per connection, by type: " + ", ".join(
            f"{name} {count / max(opened.value, 1):.2f}" for name, count in grown.most_common(12)))
        for c in clients:
            c.terminate()
        for c in clients:
            c.join()
    except BaseException as exc:  # reported, then the shield is stopped all the same
        report.append(f"failed: {exc!r}")
    finally:
        os.kill(os.getpid(), signal.SIGINT)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slow", type=int, default=19_800, help="slow connections")
    ap.add_argument("--rate", type=float, default=2000.0, help="slow connections opened per second")
    args = ap.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    from scrapeshield import cli

    tmp = Path(tempfile.mkdtemp(prefix="bench-gc-"))
    (tmp / "policy.yaml").write_text("version: 1\nname: bench-gc\nrules: []\n")
    port, admin = free_port(), free_port()
    report: list[str] = [f"# bench_gc_connections: {cli.__file__}, load avg {os.getloadavg()[0]:.1f}, "
                         f"{args.slow:,} slow connections"]
    threading.Thread(target=measure, args=(port, admin, args.slow, args.rate, report), daemon=True).start()
    cli.main(["run", "--upstream", "http://127.0.0.1:9", "--listen", f"{HOST}:{port}",
              "--admin", f"{HOST}:{admin}", "--policy", str(tmp / "policy.yaml"), "--header-timeout", "120",
              "--confdir", str(tmp / "confdir"), "--log-level", "warning"])
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

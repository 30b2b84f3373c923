#!/usr/bin/env python3
"""The connection findings of issue #15 at full size, against a real `scrapeshield run` (defaults).

    .venv/bin/python bench/bench_hardening.py                  # 19,800 slow connections + 8 x 50 MB
    .venv/bin/python bench/bench_hardening.py --slow 5000      # fewer slow connections

1. Slow drip: N connections (from 100 loopback addresses, under the per-address cap), opened at
   2,000/s (`--rate`), each send a partial request head and then one more header line every 5 s
   (`--drip`), as slowloris does. While they are open a normal client sends GET / every 0.25 s on
   a fresh connection: its latency is reported (p50 / max, and while all are open), with the
   shield's RSS, and how long until the header timeout has closed every slow connection. Every
   latency is counted in the phase it was sent in -- opening, all open, closing (the mass close by
   the header timeout), after -- with the shield's full GC passes in that phase (from its
   `scrapeshield_gc_pause_seconds` histogram, read once per phase change).
2. Uploads: 8 concurrent POSTs of 50 MB each to /.shield/verify (Content-Length declared, body
   sent at full speed): the answers, and the shield's RSS idle vs peak (polled every 20 ms).

Why 19,800: one process may hold 20,000 descriptors here (ulimit -Hn), and the shield needs a
few dozen of its own; the issue's probe used the same count. The clients run in two processes
for the same reason. The origin is the demo shop (`python -m demo.shop`). The shield runs with
its default limits except `--header-timeout 20` (default 10 s), so that all N are open at once
before the timeout closes them.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_proxy import HOST, free_port, stop, wait_ready

PY = sys.executable
ADDRESSES = [f"127.0.{10 + n // 250}.{1 + n % 250}" for n in range(100)]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def open_slow(port: int, count: int, first: int, opened: multiprocessing.Value, closed: multiprocessing.Value,
              hold: float, rate: float, drip: float) -> None:
    """Open `count` slow connections (`rate` per second) and drip into them until closed or `hold` passes."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    socks: list[socket.socket] = []
    start = time.monotonic()
    for n in range(count):
        ahead = start + n / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        sock = socket.socket()
        sock.bind((ADDRESSES[(first + n) % len(ADDRESSES)], 0))
        try:
            sock.connect((HOST, port))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: shop\r\n")
        except OSError:
            sock.close()
            continue
        sock.setblocking(False)
        socks.append(sock)
    with opened.get_lock():
        opened.value += len(socks)
    selector = selectors.DefaultSelector()
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
    live = set(socks)
    deadline = time.monotonic() + hold
    next_drip = time.monotonic() + drip
    while live and time.monotonic() < deadline:
        if time.monotonic() >= next_drip:
            for sock in list(live):
                try:
                    sock.send(b"X-Drip: 1\r\n")
                except OSError:
                    pass
            next_drip = time.monotonic() + drip
        for key, _ in selector.select(0.2):
            sock = key.fileobj
            try:
                gone = sock.recv(4096) == b""  # type: ignore[union-attr]
            except OSError:
                gone = True
            if gone:
                selector.unregister(sock)
                live.discard(sock)  # type: ignore[arg-type]
                with closed.get_lock():
                    closed.value += 1
    for sock in socks:
        sock.close()


def full_gc_passes(admin: str) -> tuple[float, float, dict[float, float]]:
    """The shield's full (generation 2) GC passes so far: count, seconds in all, count per bucket bound."""
    text = httpx.get(f"{admin}/metrics", trust_env=False, timeout=30).text
    count = total = 0.0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("generation") != "2":
                continue
            if sample.name == "scrapeshield_gc_pause_seconds_count":
                count = sample.value
            elif sample.name == "scrapeshield_gc_pause_seconds_sum":
                total = sample.value
            elif sample.name == "scrapeshield_gc_pause_seconds_bucket":
                buckets[float(sample.labels["le"])] = sample.value
    return count, total, buckets


def gc_in_phase(before: tuple[float, float, dict[float, float]], after: tuple[float, float, dict[float, float]]) -> str:
    count, total = after[0] - before[0], after[1] - before[1]
    if not count:
        return "no full GC pass"
    # the smallest bucket bound that holds every pass of the phase: an upper bound on the longest
    longest = min(le for le, n in after[2].items() if n - before[2].get(le, 0) >= count)
    return f"{count:.0f} full GC passes, {total * 1000:.0f} ms in all, each <= {longest * 1000:.0f} ms"


PHASES = ("opening", "all open", "closing", "after")


def slow_drip(port: int, pid: int, admin: str, total: int, header_timeout: float, rate: float, drip: float) -> None:
    opened, closed = multiprocessing.Value("i", 0), multiprocessing.Value("i", 0)
    idle_rss = rss_mib(pid)
    half = total // 2
    start = time.monotonic()
    workers = [multiprocessing.Process(target=open_slow,
                                       args=(port, n, i * half, opened, closed, header_timeout * 3, rate / 2, drip))
               for i, n in enumerate((half, total - half))]
    gc_at = {"start": full_gc_passes(admin)}
    for w in workers:
        w.start()
    latencies: list[float] = []
    phases: dict[str, list[float]] = {name: [] for name in PHASES}
    worst = (0.0, "", 0.0)  # latency, phase, seconds since the first slow connection
    peak = idle_rss
    all_open_at = None
    all_closed_at = None
    phase = "opening"
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.250"), trust_env=False,
                      timeout=30) as client:
        while any(w.is_alive() for w in workers):
            was_open, was_closed = opened.value, closed.value
            now_in = ("opening" if was_open < total * 0.99 and not was_closed else "all open" if not was_closed
                      else "closing" if was_closed < was_open else "after")
            if now_in != phase:  # the GC passes of the phase that ended (one /metrics read per phase)
                gc_at[phase] = full_gc_passes(admin)
                phase = now_in
            t0 = time.monotonic()
            code = client.get(f"http://{HOST}:{port}/", headers={"Connection": "close"}).status_code
            latencies.append(time.monotonic() - t0)
            phases[phase].append(latencies[-1])
            if latencies[-1] > worst[0]:
                worst = (latencies[-1], phase, t0 - start)
            assert code == 200, code
            peak = max(peak, rss_mib(pid))
            if all_open_at is None and opened.value >= total * 0.99:
                all_open_at = time.monotonic() - start
            if all_closed_at is None and opened.value and closed.value >= opened.value:
                all_closed_at = time.monotonic() - start
            time.sleep(0.25)
    gc_at[phase] = full_gc_passes(admin)
    for w in workers:
        w.join()
    if all_closed_at is None and closed.value >= opened.value:
        all_closed_at = time.monotonic() - start
    print(f"slow drip (opened at {rate:.0f}/s, one line each every {drip:.0f} s): "
          f"{opened.value:,} of {total:,} slow connections opened"
          f"{f' (all open after {all_open_at:.1f} s)' if all_open_at else ''}; "
          f"{closed.value:,} closed by the shield, the last {all_closed_at or float('nan'):.1f} s after the first "
          f"was opened (header timeout {header_timeout:.0f} s)")
    print(f"  normal client, whole run: {len(latencies)} requests, p50 {statistics.median(latencies) * 1000:.0f} ms, "
          f"max {worst[0] * 1000:.0f} ms (sent {worst[2]:.1f} s in, while {worst[1]}), all 200")
    previous = gc_at["start"]
    for name in PHASES:  # "sent while ...": the phase is what was going on when the request was sent
        seen = phases[name]
        if name not in gc_at:
            continue
        print(f"  {name:>8}: {len(seen)} requests"
              + (f", p50 {statistics.median(seen) * 1000:.0f} ms, max {max(seen) * 1000:.0f} ms" if seen else "")
              + f"; shield: {gc_in_phase(previous, gc_at[name])}")
        previous = gc_at[name]
    gc = httpx.get(f"{admin}/status", trust_env=False, timeout=30).json()["gc"]
    print(f"  shield GC over the whole run: {gc['full_passes']} full passes, longest {gc['full_pause_max_ms']:.0f} ms; "
          f"{gc['frozen_objects']:,} objects frozen at start-up")
    time.sleep(1.5)  # the shield's sweep notices that the mass close is over and trims the heap
    print(f"  shield RSS: idle {idle_rss:.0f} MiB, peak {peak:.0f} MiB, after all closed {rss_mib(pid):.0f} MiB")


def uploads(port: int, pid: int, count: int = 8, mib: int = 50) -> None:
    time.sleep(1.0)
    idle = rss_mib(pid)
    peak = [idle]
    answers: list[bytes] = []
    chunk = b"x" * (1 << 20)

    def post(n: int) -> None:
        with socket.create_connection((HOST, port), source_address=(f"127.0.3.{n + 1}", 0)) as sock:
            try:
                sock.sendall(b"POST /.shield/verify HTTP/1.1\r\nHost: shop\r\nContent-Length: %d\r\n"
                             b"Content-Type: application/x-www-form-urlencoded\r\n\r\n" % (mib << 20))
                for _ in range(mib):
                    sock.sendall(chunk)
            except OSError:
                pass
            sock.settimeout(10)
            data = b""
            try:
                while part := sock.recv(65536):
                    data += part
            except OSError:
                pass
            answers.append(data.split(b"\r\n", 1)[0])

    threads = [threading.Thread(target=post, args=(n,)) for n in range(count)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak.append(rss_mib(pid))
        time.sleep(0.02)
    print(f"uploads: {count} x {mib} MB POST /.shield/verify in {time.monotonic() - t0:.2f} s; answers "
          f"{sorted({a.decode(errors='replace') for a in answers})}")
    print(f"  shield RSS: idle {idle:.0f} MiB, peak {max(peak):.0f} MiB (+{max(peak) - idle:.0f} MiB)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slow", type=int, default=19_800, help="slow connections")
    ap.add_argument("--header-timeout", type=float, default=20.0,
                    help="the shield's (default 10 s; 20 s here so that all are open at once)")
    ap.add_argument("--rate", type=float, default=2000.0, help="slow connections opened per second")
    ap.add_argument("--drip", type=float, default=5.0, help="seconds between header lines on a slow connection")
    args = ap.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    tmp = Path(tempfile.mkdtemp(prefix="bench-hardening-"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(REPO / "addons"), str(REPO)))}  # package, demo
    oport, port, admin = free_port(), free_port(), free_port()
    origin = subprocess.Popen([PY, "-m", "demo.shop", "--host", HOST, "--port", str(oport)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (tmp / "policy.yaml").write_text("version: 1\nname: bench-hardening\nrules: []\n")
    shield_log = open(tmp / "shield.log", "w")
    shield = subprocess.Popen([PY, "-m", "scrapeshield", "run", "--upstream", f"http://{HOST}:{oport}",
                               "--listen", f"{HOST}:{port}", "--admin", f"{HOST}:{admin}",
                               "--policy", str(tmp / "policy.yaml"), "--header-timeout", str(args.header_timeout),
                               "--confdir", str(tmp / "confdir")],
                              env=env, stdout=subprocess.DEVNULL, stderr=shield_log)
    try:
        wait_ready(f"http://{HOST}:{oport}/__origin/stats", origin)
        wait_ready(f"http://{HOST}:{admin}/healthz", shield)
        print(f"# bench_hardening: nproc={os.cpu_count()}, load avg {os.getloadavg()[0]:.1f}, "
              f"shield with default limits (header timeout {args.header_timeout:.0f} s), pid {shield.pid}")
        slow_drip(port, shield.pid, f"http://{HOST}:{admin}", args.slow, args.header_timeout, args.rate, args.drip)
        uploads(port, shield.pid)
        metrics = httpx.get(f"http://{HOST}:{admin}/metrics", trust_env=False).text
        print("  " + "\n  ".join(line for line in metrics.splitlines()
                                 if line.startswith("scrapeshield_connection_limits_total")))
    finally:
        stop(shield)
        stop(origin)
        shield_log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

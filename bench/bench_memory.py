#!/usr/bin/env python3
"""Memory: resident set size with 1,000,000 tracked keys in the MemoryStore.

    .venv/bin/python bench/bench_memory.py                    # default.yaml, 1,000,000 keys
    .venv/bin/python bench/bench_memory.py --keys 1000000 --ipv6

What is measured (and what is not):

  In ONE process: everything `scrapeshield run` imports (mitmproxy's master, proxy server, HTTP
  and TLS layers, the shield addon and runtime) plus a ShieldRuntime built from the policy
  (engine, MemoryStore sized by the policy's `state.max_keys`, Prometheus metrics, decision log
  to /dev/null). Then `runtime.decide()` is driven with requests from distinct client addresses
  until `store.tracked_keys()` reaches --keys, and VmRSS is read from /proc/self/status.

  With policies/default.yaml a request to a page (/products/N) touches four bucket keys, so
  1,000,000 keys = 250,000 distinct clients. The FakeClock moves 1 us per request, so no entry
  idles out and the incremental sweep removes nothing: every key is live (the worst case for
  memory; for the same reason no crowd log idles past its window, and only the detectors' count
  and entry bounds hold them). The policy's score thresholds are raised out of reach in a copy
  (the limits are untouched and never trip): a quarter of a million clients in a quarter of a
  second with one browser stack would otherwise be challenged. The scores are still kept (per
  client, bounded by the MemoryStore's max_scores, 200,000), and so is the detectors' state: one
  identity per client (the policy's `detectors: max_keys`, 100,000) and the `cross_session_walk`
  crowd logs (one per /24 and one for the stack, `cross_walk_max_entries` entries in all). All of
  that is in the RSS figures; the detectors' counts are printed with them.

  Afterwards --overshoot more distinct clients are sent, to show that `state.max_keys` bounds the
  store (least recently used keys are evicted) and RSS stops growing.

  Also (unless --no-process) a real `scrapeshield run` process is started with the same policy and
  its idle RSS read, so the figure can be related to the real process: real RSS with N keys
  ~= idle `scrapeshield run` RSS + the store's growth measured here. Filling a real process with a
  million keys would take a million proxied requests (~20 minutes at loopback speed), which is why
  the keys are put in through the runtime instead.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "addons"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_proxy's policy helpers


def rss_mb(pid: int | str = "self") -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB."""
    vals = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v, _unit = line.split()
                vals[k[:-1]] = int(v) / 1024
    return vals["VmRSS"], vals["VmHWM"]


def client_ip(i: int, ipv6: bool) -> str:
    if ipv6:
        return f"2001:db8:{(i >> 16) & 0xffff:x}:{i & 0xffff:x}::{(i * 2654435761) & 0xffff:x}"
    # 10.0.0.0/8 and up: i -> a.b.c.d with every octet used, ~16M distinct addresses
    return f"{10 + (i >> 24)}.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


HEADERS = (
    ("Host", "shop.example.com"), ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0"),
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("Accept-Language", "en-US,en;q=0.5"), ("Accept-Encoding", "gzip, deflate, br, zstd"),
    ("Connection", "keep-alive"), ("Upgrade-Insecure-Requests", "1"), ("Sec-Fetch-Dest", "document"),
    ("Sec-Fetch-Mode", "navigate"), ("Sec-Fetch-Site", "none"), ("Sec-Fetch-User", "?1"), ("Priority", "u=0, i"),
)


def idle_process_rss(policy: str) -> float | None:
    """Start a real `scrapeshield run`, wait for /healthz, read its RSS, stop it (by pid)."""
    def free() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    listen, admin, upstream = free(), free(), free()  # nothing listens upstream: lazy, never contacted
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scrapeshield", "run", "--upstream", f"http://127.0.0.1:{upstream}",
             "--listen", f"127.0.0.1:{listen}", "--admin", f"127.0.0.1:{admin}", "--policy", policy,
             "--confdir", tmp, "--decision-log", os.devnull],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(REPO))
        try:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    return None
                try:
                    with opener.open(f"http://127.0.0.1:{admin}/healthz", timeout=1) as r:
                        if r.status == 200:
                            break
                except Exception:
                    time.sleep(0.2)
            time.sleep(1.0)
            return rss_mb(proc.pid)[0]
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=1_000_000, help="tracked keys to reach")
    ap.add_argument("--policy", default=str(REPO / "policies" / "default.yaml"))
    ap.add_argument("--ipv6", action="store_true", help="IPv6 clients (longer keys) instead of IPv4")
    ap.add_argument("--overshoot", type=int, default=750_000,
                    help="extra distinct clients after the target, in 3 steps (LRU eviction, steady state)")
    ap.add_argument("--max-keys", type=int, default=0, help="state.max_keys in the copy (default: the policy's)")
    ap.add_argument("--no-process", action="store_true", help="skip measuring an idle `scrapeshield run`")
    ap.add_argument("--rules-only", action="store_true",
                    help="drop the policy's detectors, scores and good bots (its rules and limits only)")
    args = ap.parse_args()

    print(f"# bench_memory: python {platform.python_version()}, nproc={os.cpu_count()}, policy {args.policy}, "
          f"{'IPv6' if args.ipv6 else 'IPv4'} clients")
    # Half a million new clients in a fraction of a second of clock time, all with one browser
    # stack, look like one harvester to the policy's scores: raise the score thresholds out of
    # reach (as bench_proxy.py does) so every request takes the allow path and creates its keys.
    # The scores are still computed and stored (per IP and per stack: `abuse` keeps one entry per
    # client, up to the store's max_scores).
    from bench_proxy import absolute_paths, raise_thresholds, rules_only

    src = Path(args.policy)
    text, changes = raise_thresholds(absolute_paths(src, src.read_text()))
    tmpdir = tempfile.mkdtemp(prefix="bench-memory-")
    policy_path = os.path.join(tmpdir, "policy.yaml")
    Path(policy_path).write_text(text)
    if changes:
        print(f"# score thresholds raised in the copy: {len(changes)} ({', '.join(sorted(set(changes)))[:160]})")
    if args.max_keys:  # e.g. a 5,000,000-key point of the curve: the bound is raised in the copy
        text = re.sub(r"^(\s+max_keys:\s*)1000000\b", lambda m: f"{m.group(1)}{args.max_keys}", text, count=1,
                      flags=re.M)
        Path(policy_path).write_text(text)
    if args.rules_only:
        text = rules_only(text)
        Path(policy_path).write_text(text)
        print("# --rules-only: detectors, scores and good bots removed from the copy")
    rss0, _ = rss_mb()
    # What `scrapeshield run` imports (cli._run), so their footprint is in the baseline.
    from mitmproxy import http, options  # noqa: F401
    from mitmproxy.addons import core, errorcheck, next_layer, proxyserver, save, tlsconfig  # noqa: F401
    from mitmproxy.master import Master  # noqa: F401

    from scrapeshield.clock import FakeClock
    from scrapeshield.facts import RequestFacts
    from scrapeshield.mitm.addon import ShieldAddon  # noqa: F401
    from scrapeshield.runtime import RuntimeConfig, ShieldRuntime

    gc.collect()
    rss_imports, _ = rss_mb()
    clock = FakeClock()
    rt = ShieldRuntime(RuntimeConfig(policy_path=policy_path, admin="", decision_log=os.devnull, reload_interval=0),
                       clock=clock)
    store = rt.store
    gc.collect()
    rss_ready, _ = rss_mb()
    print(f"RSS: interpreter {rss0:.1f} MiB; + mitmproxy & scrapeshield imports {rss_imports:.1f} MiB; "
          f"+ runtime ready (policy max_keys {rt.policy.max_keys:,}) {rss_ready:.1f} MiB")

    async def fill(start: int, stop_at_keys: int | None, count: int | None) -> int:
        i = start
        decide = rt.decide
        t0 = time.perf_counter()
        n0 = i
        while True:
            if stop_at_keys is not None and store.tracked_keys() >= stop_at_keys:
                break
            if count is not None and i - start >= count:
                break
            for _ in range(1000):
                clock.advance(1e-6)
                ip = client_ip(i, args.ipv6)
                d = await decide(RequestFacts(peer_ip=ip, path=f"/products/{i % 50000}", host="shop.example.com",
                                              headers=HEADERS))
                if d.action.value != "allow":
                    raise SystemExit(f"unexpected {d} for {ip}: the fill must not trip a limit")
                i += 1
        el = time.perf_counter() - t0
        print(f"  ... {i - n0:,} requests from new clients in {el:.1f} s ({(i - n0) / el:,.0f}/s)")
        return i

    def detector_state() -> str:
        detectors = rt.engine.detectors
        if detectors is None:
            return "no detectors"
        st = detectors.stats(clock.now())
        return (f"detectors: {st['identities']:,} identities, {st['crowd_logs']:,} crowd logs holding "
                f"{st['crowd_log_entries']:,} entries ({st['crowd_logs_expired']:,} expired, "
                f"{st['crowd_logs_evicted']:,} evicted)")

    i = asyncio.run(fill(0, args.keys, None))
    gc.collect()
    rss_full, hwm_full = rss_mb()
    keys = store.tracked_keys()
    per_key = (rss_full - rss_ready) * 1024 * 1024 / max(keys, 1)
    print(f"tracked keys {keys:,} ({i:,} clients): RSS {rss_full:.1f} MiB (peak {hwm_full:.1f}), "
          f"store growth {rss_full - rss_ready:.1f} MiB = {per_key:.0f} bytes/key")
    print(f"  {detector_state()}")
    first = i
    for _ in range(3):
        i = asyncio.run(fill(i, None, args.overshoot // 3))
        gc.collect()
        rss_over, hwm_over = rss_mb()
        print(f"after {i - first:,} more new clients: tracked keys "
              f"{store.tracked_keys():,} (bound: state.max_keys {rt.policy.max_keys:,}); RSS {rss_over:.1f} MiB "
              f"(peak {hwm_over:.1f})")
        print(f"  {detector_state()}")
    print(f"store status: {store.status()}")

    idle = None if args.no_process else idle_process_rss(policy_path)
    print()
    print(f"{'measure':<62} {'MiB':>8}")
    print(f"{'this process, runtime ready, 0 keys':<62} {rss_ready:>8.1f}")
    print(f"{f'this process, {keys:,} tracked keys':<62} {rss_full:>8.1f}")
    if args.overshoot:
        print(f"{f'this process, same {keys:,} keys after LRU churn (steady)':<62} {rss_over:>8.1f}")
    if idle is not None:
        print(f"{'idle `scrapeshield run` process (same policy)':<62} {idle:>8.1f}")
        print(f"{f'estimate: idle scrapeshield run + growth, {keys:,} keys, fresh':<62} "
              f"{idle + (rss_full - rss_ready):>8.1f}")
        print(f"{f'estimate: idle scrapeshield run + growth, {keys:,} keys, steady':<62} "
              f"{idle + (rss_over - rss_ready):>8.1f}")
    print("target (#12.3): <= 200 MiB for the whole process with 1,000,000 tracked keys, steady after churn")
    return 0


if __name__ == "__main__":
    sys.exit(main())

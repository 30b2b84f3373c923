#!/usr/bin/env python3
"""Issue #15's findings 1, 2 and 4, measured against a real `scrapeshield run` on loopback.

    .venv/bin/python bench/bench_input_hardening.py                # everything, ~3 minutes
    .venv/bin/python bench/bench_input_hardening.py --sizes 3 5    # policy sizes in MB for the reload part

Parts (each prints one table):

  bypass   a shield with `records` on /user/* (2/s burst 10) under `fail: open`, trusted proxy
           127.0.0.1: 100 record requests per case, sent one after another on fresh connections
           (raw sockets: the paths go out byte for byte). Counted: requests the shield let through.
  bombs    the 395-byte alias bomb (nested `any:`, 9 aliases per level, depth 6): refusal time in
           process (median of 20) and `scrapeshield check` wall time next to a trivial policy's; and,
           for scale, what a depth-4 bomb costs when the alias limit is lifted.
  compile  in-process compile time and peak RSS of generated valid policies (1, 3, 5 MB), each in a
           fresh subprocess.
  reload   for each size: the shield running a small policy, a normal client sending GET / every
           50 ms and an admin client GET /healthz every 100 ms; the policy file is replaced
           (atomic rename) and the run lasts until /status reports the new version. Reported: reload
           duration, client and admin latency (max, p50), requests answered.

Stops only the processes it started (by pid).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "abuse"), str(ROOT / "addons")]

import httpx
from hostile_policies import alias_bomb, large_policy
from raw_http import raw_get

from harness import OriginProcess, ShieldProcess

RECORDS = """\
  - name: records
    match: {path: /user/*}
    limits: ["2/s burst 10"]
    exceed: throttle
"""
POLICY = f"version: 1\nname: bench-hardening\nfail: open\ntrusted_proxies: [127.0.0.1/32]\nrules:\n{RECORDS}"


def bypass(origin: str, workdir: Path) -> None:
    cases: list[tuple[str, str, list[tuple[str, str]], str]] = [
        ("/user/N (plain)", "/user/{n}", [], "127.0.3.1"),
        ("/%75ser/N", "/%75ser/{n}", [], "127.0.3.2"),
        ("/static/../user/N", "/static/../user/{n}", [], "127.0.3.3"),
        ("//user//N", "//user//{n}", [], "127.0.3.4"),
        ("/user%2FN", "/user%2F{n}", [], "127.0.3.5"),
        ("XFF: 70 hops, then the client", "/user/{n}",
         [("X-Forwarded-For", ", ".join(f"203.0.113.{i}" for i in range(70)) + ", 198.51.100.1")], "127.0.0.1"),
        ("XFF: 9 KB, then the client", "/user/{n}",
         [("X-Forwarded-For", "1" * 9000 + ", 198.51.100.2")], "127.0.0.1"),
        ("XFF: garbage, then the client", "/user/{n}",
         [("X-Forwarded-For", "unknown;;, [::1, for=x, " * 40 + "198.51.100.3")], "127.0.0.1"),
    ]
    with ShieldProcess(origin, policy_text=POLICY, workdir=workdir / "bypass") as shield:
        print("\n## bypass: 100 record requests per case, records on /user/* at 2/s burst 10, fail: open")
        print(f"{'case':34} {'through':>8} {'seconds':>8}")
        for label, spelling, headers, source in cases:
            t0 = time.perf_counter()
            answers = [raw_get(shield.host, shield.port, spelling.format(n=n), headers, source) for n in range(100)]
            took = time.perf_counter() - t0
            through = sum(not a.from_shield for a in answers)
            print(f"{label:34} {through:>8} {took:>8.1f}")
        errors = httpx.get(f"{shield.admin_url}/metrics", timeout=5, trust_env=False).text
        count = sum(float(x.rsplit(" ", 1)[1]) for x in errors.splitlines()
                    if x.startswith("scrapeshield_errors_total"))
        print(f"scrapeshield_errors_total after all cases: {count:g}")


def bombs(workdir: Path) -> None:
    from scrapeshield.policy.compiler import compile_bytes
    from scrapeshield.policy.errors import PolicyInvalid
    from scrapeshield.policy.loader import LoadLimits

    bomb = alias_bomb().encode()
    times = []
    message = ""
    for _ in range(20):
        t0 = time.perf_counter()
        try:
            compile_bytes(bomb, "bomb.yaml")
        except PolicyInvalid as exc:
            message = str(exc)
        times.append(time.perf_counter() - t0)
    print(f"\n## bombs: {len(bomb)}-byte alias bomb")
    print(f"in-process refusal: median {statistics.median(times) * 1000:.2f} ms, max {max(times) * 1000:.2f} ms")
    print(f"  {message}")
    (workdir / "bomb.yaml").write_bytes(bomb)
    (workdir / "ok.yaml").write_text("version: 1\n")
    for name in ("ok.yaml", "bomb.yaml"):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "scrapeshield", "check", str(workdir / name)],
                              capture_output=True, text=True, timeout=120)
        print(f"scrapeshield check {name:9}: exit {proc.returncode}, {time.perf_counter() - t0:.2f} s wall")
    lifted = LoadLimits(max_alias_nodes=10**9, max_nodes=10**9)
    for depth in (3, 4):
        t0 = time.perf_counter()
        compile_bytes(alias_bomb(depth=depth).encode(), "bomb.yaml", limits=lifted)
        print(f"depth-{depth} bomb with the alias limit lifted: compiles in {time.perf_counter() - t0:.2f} s "
              f"({9 ** depth:,} conditions)")


_COMPILE_ONE = """
import resource, sys, time
sys.path[:0] = [{tests!r}, {addons!r}]
from hostile_policies import large_policy
from scrapeshield.policy.compiler import compile_bytes
data = large_policy({size}).encode()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
policy = compile_bytes(data, "large.yaml")
print(len(data), len(policy.rules), time.perf_counter() - t0, before // 1024,
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def compile_sizes(sizes: list[float]) -> None:
    print("\n## compile: generated valid policies, one fresh process each")
    print(f"{'bytes':>10} {'rules':>7} {'seconds':>8} {'peak RSS MB':>12}")
    for mb in sizes:
        code = _COMPILE_ONE.format(tests=str(ROOT / "tests" / "abuse"), addons=str(ROOT / "addons"),
                                   size=int(mb * 1_000_000))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=True)
        size, rules, seconds, _, peak = out.stdout.split()
        print(f"{int(size):>10,} {int(rules):>7,} {float(seconds):>8.2f} {int(peak):>12}")


def reload(origin: str, workdir: Path, sizes: list[float]) -> None:
    print("\n## reload: a normal client (GET / every 50 ms) and the admin port (every 100 ms) during a reload")
    print(f"{'policy':>8} {'reload s':>9} {'client max':>11} {'client p50':>11} {'n':>5} "
          f"{'admin max':>10} {'admin p50':>10}")
    for mb in sizes:
        with ShieldProcess(origin, policy_text=POLICY, workdir=workdir / f"reload-{mb}",
                           extra_args=["--reload-interval", "0.1"]) as shield:
            big = large_policy(int(mb * 1_000_000)).replace("rules:\n", "rules:\n" + RECORDS, 1)
            version = httpx.get(f"{shield.admin_url}/status", timeout=5, trust_env=False).json()["policy"]["version"]
            client_lat: list[float] = []
            admin_lat: list[float] = []
            stop = threading.Event()

            def client(lat: list[float] = client_lat, url: str = shield.proxy_url,
                       stop: threading.Event = stop) -> None:
                with httpx.Client(base_url=url, timeout=60, trust_env=False) as c:
                    while not stop.is_set():
                        t0 = time.perf_counter()
                        c.get("/")
                        lat.append(time.perf_counter() - t0)
                        time.sleep(0.05)

            def admin(lat: list[float] = admin_lat, url: str = shield.admin_url, stop: threading.Event = stop) -> None:
                while not stop.is_set():
                    t0 = time.perf_counter()
                    httpx.get(f"{url}/healthz", timeout=60, trust_env=False)
                    lat.append(time.perf_counter() - t0)
                    time.sleep(0.1)

            threads = [threading.Thread(target=client), threading.Thread(target=admin)]
            for t in threads:
                t.start()
            time.sleep(0.5)
            tmp = shield.policy.with_suffix(".new")
            tmp.write_text(big)
            t0 = time.perf_counter()
            tmp.replace(shield.policy)
            while httpx.get(f"{shield.admin_url}/status", timeout=60,
                            trust_env=False).json()["policy"]["version"] == version:
                if time.perf_counter() - t0 > 300:
                    raise SystemExit("the policy never loaded")
                time.sleep(0.05)
            took = time.perf_counter() - t0
            stop.set()
            for t in threads:
                t.join()
            print(f"{mb:>6g}MB {took:>9.1f} {max(client_lat):>10.3f}s {statistics.median(client_lat):>10.3f}s "
                  f"{len(client_lat):>5} {max(admin_lat):>9.3f}s {statistics.median(admin_lat):>9.3f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=[3, 5], help="policy sizes (MB) to reload")
    parser.add_argument("--parts", nargs="+", default=["bypass", "bombs", "compile", "reload"])
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench-hardening-") as tmp:
        workdir = Path(tmp)
        with OriginProcess(workdir=workdir / "origin") as origin:
            if "bypass" in args.parts:
                bypass(origin.url, workdir)
            if "bombs" in args.parts:
                bombs(workdir)
            if "compile" in args.parts:
                compile_sizes([1, *args.sizes])
            if "reload" in args.parts:
                reload(origin.url, workdir, args.sizes)
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Access-log replay throughput: lines per second of `scrapeshield replay` on a generated nginx
`combined` log, end to end (read, parse, decide, report), with its peak RSS.

    .venv/bin/python bench/bench_replay_accesslog.py                     # 200,000 lines, default.yaml
    .venv/bin/python bench/bench_replay_accesslog.py --lines 500000 --policy tests/policies/good/minimal.yaml
    .venv/bin/python bench/bench_replay_accesslog.py --lines 20000 --pad 3800    # ~4 KB lines (tracking queries)

The log (written once to a temporary file, then timed) has realistic lines (~230 bytes: Chrome,
Safari, python-requests and Scrapy User-Agents, record and listing paths with queries, referers)
from --clients addresses taking turns, 100 requests per second overall. Each run is a fresh
`python -m scrapeshield replay LOG --policy P --format json --progress off` process, timed from
start to exit (interpreter start and policy compile included: a few hundred ms), --repeat times;
the median is printed.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "replay"))
sys.path.insert(0, str(REPO / "tests"))

from logfiles import combined_line

from harness import PYTHON, subprocess_env

PEAK = """
import sys
from scrapeshield.cli import main
code = main(sys.argv[1:])
with open("/proc/self/status") as status:
    peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
print(f"peak_rss_kib={peak}", file=sys.stderr)
sys.exit(code)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--clients", type=int, default=2_000)
    ap.add_argument("--policy", default=str(REPO / "policies" / "default.yaml"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pad", type=int, default=0, help="characters of a tracking parameter added to every query")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "access.log"
        with open(log, "w", encoding="ascii") as fh:
            fh.writelines(combined_line(i, args.clients, args.pad) for i in range(args.lines))
        size = log.stat().st_size
        rates, peaks = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            done = subprocess.run([PYTHON, "-c", PEAK, "replay", str(log), "--policy", args.policy, "--format", "json",
                                   "--progress", "off"], capture_output=True, text=True, env=subprocess_env(),
                                  check=False)
            seconds = time.perf_counter() - t0
            if done.returncode != 0:
                print(done.stderr[-2000:], file=sys.stderr)
                return 1
            rates.append(args.lines / seconds)
            peaks.append(int(done.stderr.strip().splitlines()[-1].removeprefix("peak_rss_kib=")) // 1024)
        print(f"log: {args.lines} lines ({size / args.lines:,.0f} bytes a line), {size / 1e6:.1f} MB, "
              f"{args.clients} clients; policy {args.policy}")
        print(f"replay: {statistics.median(rates):,.0f} lines/s median of {args.repeat} "
              f"(min {min(rates):,.0f}, max {max(rates):,.0f}); peak RSS {max(peaks)} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

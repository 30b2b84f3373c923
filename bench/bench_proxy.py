#!/usr/bin/env python3
"""Through-the-proxy throughput on loopback: plain mitmdump vs `scrapeshield run` (empty policy)
vs `scrapeshield run` (policies/default.yaml, nothing can trip), one origin, one load generator.

    .venv/bin/python bench/bench_proxy.py                      # 3 rounds x 10 s, -t1 -c32
    .venv/bin/python bench/bench_proxy.py --extras             # + mitmdump -q, xff spread, rules only
    .venv/bin/python bench/bench_proxy.py --scaling            # shield-default: 1 vs 2 workers, asyncio vs uvloop
    .venv/bin/python bench/bench_proxy.py --accel              # + shield-default on the Python code (no compiled core)

Everything runs on 127.0.0.1 and is started (and stopped, by pid) by this script:

  origin   nginx (nginx-light), its own temporary config, `worker_processes 1`, access log off,
           `return 200` of a fixed 612-byte text/html body on every path, keep-alive.
  load     wrk -t1 -cN -dD --latency, keep-alive, with a small Lua script: a current Chrome's 14
           request headers on every request, rotating over 8 paths (/, /products/N,
           /category/shoes?page=2, /user/alice, /api/users/7, /static/app.js, ...). The same
           script for every configuration.
  configs  mitmdump       : mitmdump --mode reverse:ORIGIN --listen-host 127.0.0.1 --listen-port P
                            --set block_global=false --set connection_strategy=lazy (stdout -> /dev/null)
           shield-empty   : scrapeshield run --upstream ORIGIN --policy <`version: 1` only>
           shield-default : scrapeshield run --upstream ORIGIN --policy <default.yaml, nothing can trip>
           --extras adds:
           mitmdump -q        : the same mitmdump without the per-flow console output
           shield-default-xff : default.yaml with only the score thresholds raised -- its real limits
                                stay -- plus `trusted_proxies: [127.0.0.1/32]`; wrk spreads requests over
                                1,000 X-Forwarded-For addresses in 1,000 /24s, so no limit trips
           shield-rules-only  : the shield-default copy without detectors, scores and good bots

Why the default policy is modified: all wrk requests come from one address and one client stack.
The stock limits (20/s per IP) would refuse nearly every request, and the scores -- which see
one machine sending perfectly regular page requests without fetching their assets -- would
challenge or ban it; the shield would then answer 403/429 itself without the origin, a
meaningless speed-up. So `shield-default` runs a copy in which every `limits:` rate is
`1000000/s burst 1000000` and every score threshold `at: 1000000000`: the same rules, keys,
buckets, fingerprints, detectors and score updates run for every request, and nothing is ever
refused. The script prints each substitution; wrk's non-2xx count and the shield's /status
decision counters (printed per run) show that every request was allowed and reached the origin.

--scaling compares `shield-default` with `--workers 1` and `--workers 2`, each on the asyncio and
the uvloop event loop. A worker is chosen by the client's /24, and wrk always connects from
127.0.0.1, so wrk runs with a small LD_PRELOAD shim (built here with gcc) that binds every
connection it opens to the next of 127.0.1.1, 127.0.2.1, ... 127.0.8.1 -- eight /24s, spread
evenly over the workers. Every configuration of the run gets the same shim. Proxy CPU is counted
over the supervisor and its workers.

Each round starts every configuration as a fresh process (no state carried over), warms it up
with a 2 s wrk run, then measures; configurations alternate within a round and the round order
rotates. Reported: median requests/s, median proxy CPU time per request (all threads, from
/proc/PID/stat), wrk's p50/p99 latency, and the ratios of the medians.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
BODY = ("<!doctype html><html><head><title>bench</title></head><body>" + "x" * 540 + "</body></html>\n")

NGINX_CONF = """
daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 100000;
    keepalive_timeout 120s;
    server {{
        listen {host}:{port} reuseport;
        location / {{
            default_type text/html;
            return 200 '{body}';
        }}
    }}
}}
"""

# Every request carries a current Chrome's header set (what a browser client sends; the default
# policy's fingerprint evidence weighs UA class, client hints and Accept-Language).
WRK_BROWSER_HEADERS = """
wrk.headers["Connection"] = "keep-alive"
wrk.headers["sec-ch-ua"] = '"Not/A)Brand";v="8", "Chromium";v="126", "Google Chrome";v="126"'
wrk.headers["sec-ch-ua-mobile"] = "?0"
wrk.headers["sec-ch-ua-platform"] = '"Windows"'
wrk.headers["Upgrade-Insecure-Requests"] = "1"
wrk.headers["User-Agent"] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
wrk.headers["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
wrk.headers["Sec-Fetch-Site"] = "same-origin"
wrk.headers["Sec-Fetch-Mode"] = "navigate"
wrk.headers["Sec-Fetch-Dest"] = "document"
wrk.headers["Referer"] = "http://shop.example.com/"
wrk.headers["Accept-Encoding"] = "gzip, deflate, br, zstd"
wrk.headers["Accept-Language"] = "en-US,en;q=0.9"
"""

WRK_PATHS_LUA = WRK_BROWSER_HEADERS + """
local paths = {"/", "/products/1042", "/category/shoes?page=2", "/user/alice", "/api/users/7",
               "/static/app.js", "/products/77", "/search?q=kettle"}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
"""

# The same, plus one of 1,000 X-Forwarded-For addresses (each in its own /24) per request.
WRK_XFF_LUA = WRK_BROWSER_HEADERS + """
local paths = {"/", "/products/1042", "/category/shoes?page=2", "/user/alice", "/api/users/7",
               "/static/app.js", "/products/77", "/search?q=kettle"}
local i = 0
request = function()
  i = i + 1
  local n = i % 1000
  local ip = string.format("10.%d.%d.9", math.floor(n / 250), n % 250)
  return wrk.format("GET", paths[(i % #paths) + 1], {["X-Forwarded-For"] = ip})
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as resp:
        return resp.status, resp.read()


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before {url} answered")
        try:
            status, _ = http_get(url, 1.0)
            if status == 200:
                return
            last = status
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout}s: {last}")


def stop(proc: subprocess.Popen | None) -> None:
    """Stop one process this script started, by its pid: SIGTERM, then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_pids(pid: int) -> list[int]:
    """pid and its children (nginx master + worker)."""
    out = [pid]
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return out


def absolute_paths(src: Path, text: str) -> str:
    """The copies live in a temporary directory: make `goodbots: DIR` absolute (not a change of policy)."""
    return re.sub(r"^goodbots:\s*(?!builtin\b)(\S+)", lambda m: f"goodbots: {src.parent / m.group(1)}", text,
                  flags=re.M)  # `builtin` names the shipped ranges, wherever the policy is


def raise_limits(text: str) -> tuple[str, list[str]]:
    """Every rate in a `limits:` list replaced by an unreachable one (same number of buckets)."""
    out, changes = [], []
    for line in text.splitlines():
        m = re.match(r'^(\s*limits:\s*)\[(.*)\]\s*$', line)
        if m:
            rates = [r.strip() for r in m.group(2).split(",")]
            new = ", ".join('"1000000/s burst 1000000"' for _ in rates)
            changes.append(f"{line.strip()}  ->  limits: [{new}]")
            line = f"{m.group(1)}[{new}]"
        out.append(line)
    return "\n".join(out) + "\n", changes


def raise_thresholds(text: str) -> tuple[str, list[str]]:
    """Every score threshold `at:` raised out of reach: scores are still computed and stored."""
    changes: list[str] = []

    def sub(m: re.Match[str]) -> str:
        changes.append(f"{{at: {m.group(2)}, ...}}  ->  {{at: 1000000000, ...}}")
        return f"{m.group(1)}1000000000"
    return re.sub(r"(\{\s*at:\s*)([\d.]+)", sub, text), changes


def rules_only(text: str) -> str:
    """The policy's rules and limits without the newer layers: no detectors, no scores, no good
    bots / fingerprint key (the shape of the default the proxy target was first set for)."""
    import yaml

    d = yaml.safe_load(text)
    for section in ("detectors", "scores", "goodbots", "challenge"):
        d.pop(section, None)
    if isinstance(d.get("keys"), dict):
        d["keys"].pop("stack", None)
    d["rules"] = [r for r in d.get("rules", []) if "good_bot" not in str(r.get("match", ""))]
    return yaml.safe_dump(d, sort_keys=False)


def trust_loopback(text: str) -> str:
    new, n = re.subn(r"^trusted_proxies:.*$", "trusted_proxies: [127.0.0.1/32]", text, flags=re.M)
    if n != 1:
        raise SystemExit("could not set trusted_proxies in the default policy copy")
    return new


WRK_RE = {
    "rps": re.compile(r"Requests/sec:\s+([\d.]+)"),
    "non2xx": re.compile(r"Non-2xx or 3xx responses:\s+(\d+)"),
    "errors": re.compile(r"Socket errors:(.*)"),
    "requests": re.compile(r"(\d+) requests in"),
}


def _lat_us(text: str, pct: str) -> float | None:
    m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if not m:
        return None
    return float(m.group(1)) * {"us": 1, "ms": 1000, "s": 1e6}[m.group(2)]


SOURCE_SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* Bind each IPv4 connect() to the next of 127.0.1.1 .. 127.0.N.1 (N = $BENCH_SOURCE_NETS). */
static unsigned counter;

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    static int (*real_connect)(int, const struct sockaddr *, socklen_t);
    if (!real_connect) real_connect = dlsym(RTLD_NEXT, "connect");
    const char *nets = getenv("BENCH_SOURCE_NETS");
    if (nets && addr && addr->sa_family == AF_INET) {
        unsigned k = __sync_fetch_and_add(&counter, 1) % (unsigned)atoi(nets);
        struct sockaddr_in src = {0};
        src.sin_family = AF_INET;
        src.sin_addr.s_addr = htonl(0x7f000001u + ((k + 1) << 8));
        bind(fd, (struct sockaddr *)&src, sizeof src);
    }
    return real_connect(fd, addr, len);
}
"""


def build_source_shim(tmp: Path, nets: int) -> dict[str, str]:
    """The environment that makes wrk connect from `nets` different /24s."""
    src, lib = tmp / "source_shim.c", tmp / "source_shim.so"
    src.write_text(SOURCE_SHIM_C)
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(lib), str(src), "-ldl"], check=True)
    return {**os.environ, "LD_PRELOAD": str(lib), "BENCH_SOURCE_NETS": str(nets)}


def run_wrk(url: str, script: Path, threads: int, conns: int, duration: str, env: dict[str, str] | None = None) -> dict:
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}", "--latency", "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env).stdout
    res: dict = {"raw": out}
    for k, rx in WRK_RE.items():
        m = rx.search(out)
        res[k] = (m.group(1).strip() if k == "errors" else float(m.group(1))) if m else (None if k != "non2xx" else 0)
    res["p50_us"] = _lat_us(out, "50")
    res["p99_us"] = _lat_us(out, "99")
    return res


class Config:
    def __init__(self, name: str, argv: list[str], script: Path, admin: int | None, stdout: str) -> None:
        self.name, self.argv, self.script, self.admin, self.stdout = name, argv, script, admin, stdout


def calibration_us() -> float:
    """Best of 5 `sum(range(1000))` in us: this machine's pure-Python speed right now (a 2020s
    desktop core with CPython 3.12 does it in ~8 us; larger = slower machine or busier neighbours)."""
    import timeit

    return min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000 * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", default="10s")
    ap.add_argument("--warmup", default="2s")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--extras", action="store_true", help="also run `mitmdump -q` and shield-default-xff")
    ap.add_argument("--scaling", action="store_true",
                    help="instead: shield-default with 1 and 2 workers, asyncio and uvloop (wrk from 8 /24s)")
    ap.add_argument("--accel", action="store_true",
                    help="also run shield-empty and shield-default on the Python code (SCRAPESHIELD_ACCEL=0), "
                         "beside the compiled core")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, configs)")
    ap.add_argument("--before", metavar="CHECKOUT", action="append", default=[],
                    help="also run shield-empty and shield-default of another checkout (e.g. a `git worktree` of "
                         "the commit before a change), with its own policies/default.yaml, in the same rounds; "
                         "repeatable; labelled by the checkout's folder name")
    args = ap.parse_args()

    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            raise SystemExit(f"{tool} not found")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    tmp = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    procs: list[subprocess.Popen] = []
    try:
        return _main(args, tmp, nginx, procs)
    finally:
        for p in procs:
            stop(p)
        if args.keep:
            print(f"(kept {tmp})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _main(args: argparse.Namespace, tmp: Path, nginx: str, procs: list[subprocess.Popen]) -> int:
    # -- origin ----------------------------------------------------------------------------
    oport = free_port()
    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / d).mkdir()
    (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, host=HOST, port=oport, body=BODY))
    origin_proc = subprocess.Popen([nginx, "-c", str(tmp / "nginx.conf"), "-p", str(tmp)],
                                   stdout=subprocess.DEVNULL, stderr=open(tmp / "nginx.stderr", "w"))
    procs.append(origin_proc)
    origin = f"http://{HOST}:{oport}"
    wait_ready(origin + "/", origin_proc, 10)

    # -- policies and load scripts -----------------------------------------------------------
    default = REPO / "policies" / "default.yaml"
    (tmp / "empty.yaml").write_text("version: 1\n")
    text = absolute_paths(default, default.read_text())
    unreachable_scores, score_changes = raise_thresholds(text)
    raised, limit_changes = raise_limits(unreachable_scores)
    changes = limit_changes + score_changes
    (tmp / "default-raised.yaml").write_text(raised)
    (tmp / "default-xff.yaml").write_text(trust_loopback(unreachable_scores))
    (tmp / "default-rules.yaml").write_text(rules_only(raised))
    paths_lua, xff_lua = tmp / "paths.lua", tmp / "xff.lua"
    paths_lua.write_text(WRK_PATHS_LUA)
    xff_lua.write_text(WRK_XFF_LUA)

    py = str(VENV_BIN / "python")
    mitmdump = str(VENV_BIN / "mitmdump")
    confdir = tmp / "confdir"
    confdir.mkdir()

    def shield(policy: str) -> list[str]:
        return [py, "-m", "scrapeshield", "run", "--upstream", origin, "--listen", f"{HOST}:{{port}}",
                "--admin", f"{HOST}:{{admin}}", "--policy", str(tmp / policy), "--confdir", str(confdir)]

    mitm = [mitmdump, "--mode", f"reverse:{origin}", "--listen-host", HOST, "--listen-port", "{port}",
            "--set", "block_global=false", "--set", "connection_strategy=lazy", "--set", f"confdir={confdir}"]
    configs = [
        Config("mitmdump", mitm, paths_lua, None, "devnull"),
        Config("shield-empty", shield("empty.yaml"), paths_lua, 1, "devnull"),
        Config("shield-default", shield("default-raised.yaml"), paths_lua, 1, "devnull"),
    ]
    wrk_env = None
    if args.scaling:
        wrk_env = build_source_shim(tmp, 8)
        base = shield("default-raised.yaml")
        configs = [Config(f"shield-default w{n}{' uvloop' if loop == 'uvloop' else ''}",
                          [*base, "--workers", str(n), "--event-loop", loop], paths_lua, 1, "devnull")
                   for loop in ("asyncio", "uvloop") for n in (1, 2)]
    elif args.extras:
        configs.insert(1, Config("mitmdump -q", [*mitm, "-q"], paths_lua, None, "devnull"))
        configs.append(Config("shield-default-xff", shield("default-xff.yaml"), xff_lua, 1, "devnull"))
        configs.append(Config("shield-rules-only", shield("default-rules.yaml"), paths_lua, 1, "devnull"))
    if args.accel:  # `env` execs python in its place: the pid, whose CPU is counted, is the shield's own
        configs += [Config(f"python: {c.name}", ["env", "SCRAPESHIELD_ACCEL=0", *c.argv], c.script, c.admin, c.stdout)
                    for c in configs if c.name in ("shield-empty", "shield-default")]
    for checkout in args.before:
        old = Path(checkout).resolve()
        old_default = old / "policies" / "default.yaml"
        old_raised, _ = raise_thresholds(absolute_paths(old_default, old_default.read_text()))
        (tmp / f"{old.name}-default-raised.yaml").write_text(raise_limits(old_raised)[0])
        # `env` execs python in its place: the pid, whose CPU is counted, is the shield's own.
        run_old = ["env", f"PYTHONPATH={old / 'addons'}", py, "-m", "scrapeshield", "run", "--upstream", origin,
                   "--listen", f"{HOST}:{{port}}", "--admin", f"{HOST}:{{admin}}", "--confdir", str(confdir)]
        configs += [Config(f"{old.name}: shield-empty", [*run_old, "--policy", str(tmp / "empty.yaml")], paths_lua,
                           1, "devnull"),
                    Config(f"{old.name}: shield-default",
                           [*run_old, "--policy", str(tmp / f"{old.name}-default-raised.yaml")], paths_lua, 1,
                           "devnull")]

    load = os.getloadavg()
    print(f"# bench_proxy: nproc={os.cpu_count()}, python {platform.python_version()}, "
          f"load avg {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}, wrk -t{args.threads} -c{args.connections} "
          f"-d{args.duration} (+{args.warmup} warm-up), {args.rounds} rounds, origin nginx at {origin}")
    print(f"# calibration: sum(range(1000)) = {calibration_us():.1f} us (best of 5; ~8 us on a current desktop core)")
    print("# shield-default policy = policies/default.yaml with (shield-default-xff: only the thresholds):")
    for c in changes:
        print(f"#   {c}")
    sys.stdout.flush()

    results: dict[str, list[dict]] = {c.name: [] for c in configs}
    for rnd in range(args.rounds):
        order = configs[rnd % len(configs):] + configs[:rnd % len(configs)]
        for cfg in order:
            port, admin = free_port(), free_port()
            argv = [a.replace("{port}", str(port)).replace("{admin}", str(admin)) for a in cfg.argv]
            log = open(tmp / f"{cfg.name.replace(' ', '_')}-{rnd}.log", "w")
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, cwd=str(REPO))
            procs.append(proc)
            try:
                url = f"http://{HOST}:{port}"
                wait_ready(url + "/", proc)
                if cfg.admin:  # all workers up (wait_ready saw one of them)
                    wait_ready(f"http://{HOST}:{admin}/healthz", proc)
                run_wrk(url, cfg.script, args.threads, args.connections, args.warmup, wrk_env)
                origin_pids, proxy_pids = tree_pids(origin_proc.pid), tree_pids(proc.pid)
                c_proxy, c_origin = sum(cpu_seconds(p) for p in proxy_pids), sum(cpu_seconds(p) for p in origin_pids)
                ru0, w0 = os.times(), time.monotonic()
                res = run_wrk(url, cfg.script, args.threads, args.connections, args.duration, wrk_env)
                wall = time.monotonic() - w0
                ru1 = os.times()
                proxy_cpu = sum(cpu_seconds(p) for p in proxy_pids) - c_proxy
                res["proxy_cpu_us"] = proxy_cpu * 1e6 / max(res["requests"] or 1, 1)
                res["proxy_busy"] = proxy_cpu / wall
                res["origin_busy"] = (sum(cpu_seconds(p) for p in origin_pids) - c_origin) / wall
                res["wrk_busy"] = ((ru1.children_user + ru1.children_system)
                                   - (ru0.children_user + ru0.children_system)) / wall
                if cfg.admin:
                    try:
                        _, body = http_get(f"http://{HOST}:{admin}/status", 5)
                        res["decisions"] = json.loads(body)["counters"]["decisions"]
                    except Exception as exc:  # report, do not fail the run
                        res["decisions"] = f"status unavailable: {exc}"
                res["load1"] = os.getloadavg()[0]
            finally:
                stop(proc)
                procs.remove(proc)
                log.close()
            results[cfg.name].append(res)
            extra = f" decisions={res['decisions']}" if "decisions" in res else ""
            print(f"round {rnd + 1} {cfg.name:<20} {res['rps'] or 0:>7.0f} req/s  proxy {res['proxy_cpu_us']:>6.0f} "
                  f"CPU-us/req (busy {res['proxy_busy']:.0%})  origin busy {res['origin_busy']:.0%}  "
                  f"wrk busy {res['wrk_busy']:.0%}  p50 {res['p50_us'] or 0:>6.0f} us  "
                  f"p99 {res['p99_us'] or 0:>6.0f} us  non-2xx {int(res['non2xx'] or 0)}"
                  f"{'  socket errors:' + res['errors'] if res['errors'] else ''}  load1 {res['load1']:.1f}{extra}")
            sys.stdout.flush()

    # -- table ---------------------------------------------------------------------------------
    med = {name: statistics.median(r["rps"] or 0 for r in rs) for name, rs in results.items()}
    cpu = {name: statistics.median(r["proxy_cpu_us"] for r in rs) for name, rs in results.items()}
    if args.scaling:
        return _scaling_table(results, med, cpu)
    print()
    print("req/s: wrk's Requests/sec; CPU-us/req: proxy process CPU time (all threads) / requests served.")
    print("On a shared machine req/s moves with the neighbours' load; CPU per request moves much less.")
    print(f"{'config':<28} {'req/s med':>9} {'runs':>22} {'vs mitmdump':>11} {'CPU-us/req med':>14} {'runs':>18} "
          f"{'capacity/s':>10} {'vs mitmdump':>11} {'p50 us':>7} {'p99 us':>7} {'non-2xx':>7}")
    for name, rs in results.items():
        runs = ", ".join(f"{r['rps'] or 0:.0f}" for r in rs)
        cruns = ", ".join(f"{r['proxy_cpu_us']:.0f}" for r in rs)
        p50 = statistics.median(r["p50_us"] or 0 for r in rs)
        p99 = statistics.median(r["p99_us"] or 0 for r in rs)
        bad = sum(int(r["non2xx"] or 0) for r in rs)
        print(f"{name:<28} {med[name]:>9,.0f} {runs:>22} {med[name] / med['mitmdump']:>10.2f}x {cpu[name]:>14.0f} "
              f"{cruns:>18} {1e6 / cpu[name]:>10,.0f} {cpu['mitmdump'] / cpu[name]:>10.2f}x {p50:>7.0f} {p99:>7.0f} "
              f"{bad:>7}")
    print("(capacity/s = 1e6 / CPU-us per request: what one fully available core would serve)")
    print()
    for label, a, b, target in (("shield-default / mitmdump", "shield-default", "mitmdump", ">= 1.3x"),
                                ("shield-default / shield-empty", "shield-default", "shield-empty", ">= 0.9x"),
                                ("shield-default-xff / shield-empty", "shield-default-xff", "shield-empty", ""),
                                ("shield-rules-only / shield-empty", "shield-rules-only", "shield-empty", ""),
                                ("shield-default / python: shield-default", "shield-default",
                                 "python: shield-default", ""),
                                ("shield-empty / python: shield-empty", "shield-empty", "python: shield-empty", ""),
                                *_before_ratios(args.before)):
        if a in med and b in med:
            print(f"{label:<50} req/s {med[a] / med[b]:.2f}x   by CPU per request {cpu[b] / cpu[a]:.2f}x"
                  f"   {'(target ' + target + ')' if target else ''}")
    return 0


def _before_ratios(checkouts: list[str]) -> list[tuple[str, str, str, str]]:
    """This tree against each --before checkout, and each checkout against the one before it."""
    names = [Path(c).name for c in checkouts]
    pairs = [(f"shield-{k}", f"{n}: shield-{k}") for n in names for k in ("empty", "default")]
    pairs += [(f"{n1}: shield-{k}", f"{n0}: shield-{k}") for n0, n1 in itertools.pairwise(names)
              for k in ("empty", "default")]
    return [(f"{a} / {b}", a, b, "") for a, b in pairs]


def _scaling_table(results: dict[str, list[dict]], med: dict[str, float], cpu: dict[str, float]) -> int:
    print()
    print(f"{'config':<26} {'req/s med':>9} {'runs':>22} {'CPU-us/req med':>14} {'p50 us':>7} {'p99 us':>7} "
          f"{'non-2xx':>7}")
    for name, rs in results.items():
        runs = ", ".join(f"{r['rps'] or 0:.0f}" for r in rs)
        p50 = statistics.median(r["p50_us"] or 0 for r in rs)
        p99 = statistics.median(r["p99_us"] or 0 for r in rs)
        bad = sum(int(r["non2xx"] or 0) for r in rs)
        print(f"{name:<26} {med[name]:>9,.0f} {runs:>22} {cpu[name]:>14.0f} {p50:>7.0f} {p99:>7.0f} {bad:>7}")
    print()
    for label, a, b, target in (
            ("2 workers / 1 worker (asyncio)", "shield-default w2", "shield-default w1", ">= 1.6x"),
            ("2 workers / 1 worker (uvloop)", "shield-default w2 uvloop", "shield-default w1 uvloop", ""),
            ("uvloop / asyncio, 1 worker", "shield-default w1 uvloop", "shield-default w1", ""),
            ("uvloop / asyncio, 2 workers", "shield-default w2 uvloop", "shield-default w2", "")):
        print(f"{label:<34} req/s {med[a] / med[b]:.2f}x   by CPU per request {cpu[b] / cpu[a]:.2f}x"
              f"   {'(target ' + target + ')' if target else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Challenge benchmark: proof-of-work solve time in real headless Chromium, and server-side costs.

    PYTHONPATH=addons .venv/bin/python bench/bench_challenge.py [--bits 12-22] [--runs 10]
    PYTHONPATH=addons .venv/bin/python bench/bench_challenge.py --bits 28 --runs 3 --no-warmup --timeout 900 \
        --webcrypto-max 0     # the default policy's maximum: a person's worst case, measured

Solve time is measured two ways per difficulty, over fresh browser contexts:
- solver: what the page reports (script start to solution found; workers, hashing);
- total: from navigation start to the original URL answering 200 with the cookie (page load,
  solving, POST, 303, second request): what a user waits;
- MH/s: hashes per second across the page's workers, estimated from the winning nonce. Solve
  times scale with the machine's idle cores: check the rate (and the load average, printed) before
  comparing runs.
Engines: "js" on a plain-HTTP non-localhost origin (http://shield.test, no crypto.subtle) and
"webcrypto" on http://127.0.0.1 (a secure context) with the page asked to use crypto.subtle.
Uses /usr/bin/chromium; never downloads a browser.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "browser"))

from pow_server import PowServer

from scrapeshield.challenge import ChallengeConfig, ChallengeService, KeyRing, clearance, pow
from scrapeshield.challenge.binding import ClientBinding
from scrapeshield.store.memory import MemoryStore

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync", "--host-resolver-rules=MAP shield.test 127.0.0.1"]


def _range(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


async def solve_times(bits: list[int], runs: int, solver: str, host: str, warmup: bool = True,
                      timeout_s: float = 120.0) -> list[tuple[int, list[float], list[float]]]:
    from playwright.async_api import async_playwright

    service = ChallengeService(KeyRing.generate(), ChallengeConfig(solver=solver))
    server = PowServer(service=service)
    port = await server.start(("127.0.0.1",))
    rows = []
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            for b in bits:
                server.difficulty = b
                solver_ms, total_ms, rates = [], [], []
                first = 0 if warmup else 1
                for i in range(first, runs + 1):  # one warm-up run per difficulty, not counted
                    ctx = await browser.new_context()
                    page = await ctx.new_page()
                    target = f"/protected/bench?bits={b}&run={i}"
                    t0 = time.perf_counter()
                    async with page.expect_response(
                            lambda r, target=target: r.url.endswith(target) and r.status == 200,  # type: ignore[misc]
                            timeout=timeout_s * 1000):
                        await page.goto(f"http://{host}:{port}{target}")
                    total = (time.perf_counter() - t0) * 1000
                    sub = server.submissions[-1]
                    await ctx.close()
                    if i:
                        solver_ms.append(sub.client_ms)
                        total_ms.append(total)
                        rates.append(_hash_rate(sub.engine, sub.nonce, sub.client_ms))
                engine = server.submissions[-1].engine
                rows.append((b, solver_ms, total_ms))
                print(f"  {solver:9s} {host:11s} {b:2d} bits  solver median {statistics.median(solver_ms):7.1f} ms"
                      f"  p90 {_p90(solver_ms):7.1f}  total median {statistics.median(total_ms):7.1f} ms"
                      f"  p90 {_p90(total_ms):7.1f}  ~{statistics.median(rates) / 1e6:4.2f} MH/s  [{engine}]",
                      flush=True)
                if len(total_ms) <= 5:  # a few long runs: every one (a solve's time is random, geometric)
                    print(f"    each run: total {', '.join(f'{t / 1000:.1f} s' for t in total_ms)}; solver "
                          f"{', '.join(f'{t / 1000:.1f} s' for t in solver_ms)}", flush=True)
            await browser.close()
    finally:
        await server.stop()
    return rows


def _hash_rate(engine: str, nonce: str, ms: float) -> float:
    """Hashes per second the page managed, all workers together: the page's nonces are two worker
    digits and ten counter digits, and every worker had reached about the winner's counter."""
    tail = engine.rpartition("workers")[2]
    workers = int(tail) if tail.isdigit() else 1  # "js/main": the page fell back to the main thread
    return workers * (int(nonce[2:]) + 1) / max(ms, 1.0) * 1000


def _p90(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(0.9 * len(s)))]


def _us(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def server_costs(bits: int = 16, n: int = 20000) -> None:
    keys = KeyRing.generate()
    service = ChallengeService(keys)
    b = ClientBinding.of("203.0.113.7", "Mozilla/5.0 bench")
    now = 1_700_000_000.0
    c = pow.issue(keys, b, "bench", bits, "/x?y=1", now)
    nonce = next(str(i) for i in range(1 << 30) if pow.proof_ok(c.seed, str(i).encode(), bits))
    store = MemoryStore(max_spent=n + 10)

    async def spend_never(token_id: str, expires: float, t: float) -> bool:  # measure without store growth
        return True

    loop = asyncio.new_event_loop()
    try:
        verify_us = _us(lambda: loop.run_until_complete(pow.verify(keys, c.token, nonce, b, now, spend_never)), n)
        store_us = _us(lambda: loop.run_until_complete(pow.verify(keys, c.token, nonce, b, now, store.spend_once)), n)
    finally:
        loop.close()
    tampered = c.token[:-2] + ("A" if c.token[-2] != "A" else "B") + c.token[-1]
    cookie = clearance.issue_cookie(keys, b, "bench", 3600, now)
    header = f"a=1; {clearance.COOKIE_NAME}={cookie}; b=2"
    print(f"  pow.verify, valid solution ({bits} bits), spend_once stubbed : {verify_us:6.1f} us")
    print(f"  pow.verify, replayed, MemoryStore.spend_once           : {store_us:6.1f} us")
    print(f"  token with a bad MAC refused (unseal)                   : "
          f"{_us(lambda: pow.unseal(keys, 'p', tampered), n):6.1f} us")
    print(f"  pow.issue                                               : "
          f"{_us(lambda: pow.issue(keys, b, 'bench', bits, '/x?y=1', now), n):6.1f} us")
    print(f"  check_clearance (Cookie header, valid cookie)           : "
          f"{_us(lambda: service.check_clearance(header, b, 'bench', now), n):6.1f} us")
    print(f"  issue_cookie                                            : "
          f"{_us(lambda: clearance.issue_cookie(keys, b, 'bench', 3600, now), n):6.1f} us")
    print(f"  challenge_response (HTML page, 2 tokens with no_js)     : "
          f"{_us(lambda: service.challenge_response('bench', bits, '/x', b, 'text/html', True, now), n // 4):6.1f} us")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bits", default="12-22", help="difficulties, e.g. 12-22 or 18")
    ap.add_argument("--runs", type=int, default=10, help="measured runs per difficulty (median reported)")
    ap.add_argument("--webcrypto-max", type=int, default=18, help="highest difficulty for the slow webcrypto engine")
    ap.add_argument("--no-browser", action="store_true", help="server costs only")
    ap.add_argument("--no-warmup", action="store_true", help="no warm-up run per difficulty (long solves)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds one solve may take")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"default difficulty {pow.DEFAULT_DIFFICULTY} bits")
    print("server side (per call):")
    server_costs()
    if args.no_browser:
        return
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} not found; browser benchmark skipped")
    bits = _range(args.bits)
    warmup = not args.no_warmup
    print(f"headless Chromium, {args.runs} runs per difficulty{' (+1 warm-up)' if warmup else ''}:")
    asyncio.run(solve_times(bits, args.runs, "js", "shield.test", warmup, args.timeout))
    crypto_bits = [b for b in bits if b <= args.webcrypto_max]
    if crypto_bits:
        asyncio.run(solve_times(crypto_bits, args.runs, "webcrypto", "127.0.0.1", warmup, args.timeout))
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

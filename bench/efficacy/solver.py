"""Proof-of-work solving as the two sides do it: a person's browser, and a harvester's native farm.

The proof (addons/scrapeshield/challenge/pow.py): SHA-256(seed || nonce) starts with `bits` zero
bits; the page's JavaScript tries 12-digit decimal nonces. `ChallengeForm.parse` reads what the
page gives a browser: the form action, the token, the seed and the difficulty.

- `BrowserSolver` finds the nonce (with the native solver when it is given one, else hashlib;
  either way off the event loop) and then takes as long as the page's solver would in a browser
  (docs/challenge.md: ~1.3 M hashes/s over two workers plus ~120 ms of worker start-up): a person
  waits the browser's time, not Python's, and the bench's own CPU stays out of the shield's way.
- `NativeSolver` is what a harvester runs: `powsolve.c` compiled with gcc against OpenSSL at bench
  time and called through ctypes (one core per process; the fleet runs one process per core).
"""
from __future__ import annotations

import asyncio
import ctypes
import hashlib
import html
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

_FORM = re.compile(r'<form id="shield-form" method="post" action="([^"]+)"[^>]*'
                   r'data-seed="([0-9a-f]{32})" data-bits="(\d+)"')
_TOKEN = re.compile(r'<input type="hidden" name="token" value="([^"]+)">')
C_SOURCE = Path(__file__).with_name("powsolve.c")

BROWSER_HASHES_PER_S = 1.3e6  # the page's JS over two workers, measured in docs/challenge.md
BROWSER_FIXED_S = 0.12        # worker start-up and V8 warm-up, same source


@dataclass(frozen=True, slots=True)
class ChallengeForm:
    action: str
    token: str
    seed: bytes
    bits: int

    @classmethod
    def parse(cls, page: str) -> ChallengeForm | None:
        """The proof-of-work form of a challenge page, or None if `page` is not one."""
        form, token = _FORM.search(page), _TOKEN.search(page)
        if form is None or token is None:
            return None
        return cls(html.unescape(form.group(1)), html.unescape(token.group(1)), bytes.fromhex(form.group(2)),
                   int(form.group(3)))

    def fields(self, nonce: str, engine: str, ms: int) -> dict[str, str]:
        return {"token": self.token, "nonce": nonce, "engine": engine, "ms": str(ms)}


def hashlib_solve(seed: bytes, bits: int) -> tuple[str, int]:
    """(nonce, hashes tried) with 12-digit nonces, as the page's JS builds them."""
    shift = 256 - bits
    for i in range(1 << 40):
        nonce = f"{i:012d}"
        if int.from_bytes(hashlib.sha256(seed + nonce.encode()).digest(), "big") >> shift == 0:
            return nonce, i + 1
    raise AssertionError("unreachable")


class BrowserSolver:
    """Solves like the challenge page in a browser: the right nonce, at the browser's speed."""

    def __init__(self, native: NativeSolver | None = None, hashes_per_s: float = BROWSER_HASHES_PER_S,
                 fixed_s: float = BROWSER_FIXED_S) -> None:
        self.native = native
        self.hashes_per_s = hashes_per_s
        self.fixed_s = fixed_s

    def browser_seconds(self, bits: int) -> float:
        """What the page takes on average in a browser for a `bits`-bit challenge."""
        return self.fixed_s + (1 << bits) / self.hashes_per_s

    def _search(self, seed: bytes, bits: int) -> tuple[str, int]:
        if self.native is not None:
            nonce, tries, _cpu = self.native.solve(seed, bits)
            return nonce, tries
        return hashlib_solve(seed, bits)

    async def solve(self, form: ChallengeForm) -> tuple[str, int]:
        """(nonce, milliseconds the browser took). Hashes off the event loop, then waits out the rest."""
        started = time.monotonic()
        nonce, tries = await asyncio.to_thread(self._search, form.seed, form.bits)
        browser_s = self.fixed_s + tries / self.hashes_per_s
        remaining = browser_s - (time.monotonic() - started)
        if remaining > 0:
            await asyncio.sleep(remaining)
        return nonce, int(1000 * max(browser_s, time.monotonic() - started))


class NativeSolver:
    """OpenSSL SHA-256 in C, one core: `solve(seed, bits)` -> (nonce, hashes, cpu seconds)."""

    def __init__(self, library: Path) -> None:
        self._lib = ctypes.CDLL(str(library))
        self._fn = self._lib.shield_solve
        self._fn.restype = ctypes.c_longlong
        self._fn.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_ulonglong, ctypes.c_ulonglong,
                             ctypes.c_char_p]

    def solve(self, seed: bytes, bits: int) -> tuple[str, int, float]:
        out = ctypes.create_string_buffer(13)
        cpu0 = time.thread_time()
        tried = self._fn(seed, len(seed), bits, 0, 1 << 40, out)
        cpu = time.thread_time() - cpu0
        if tried <= 0:
            raise RuntimeError(f"no nonce for {bits} bits")
        return out.value.decode("ascii"), int(tried), cpu


def build_native_solver(directory: Path | None = None) -> Path:
    """Compile powsolve.c into a shared library (gcc, -lcrypto); returns its path. Fails loudly."""
    out_dir = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="powsolve-"))
    library = out_dir / "powsolve.so"
    command = ["gcc", "-O2", "-shared", "-fPIC", "-o", str(library), str(C_SOURCE), "-lcrypto"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr}")
    return library


def native_rate(library: Path, bits: int = 20) -> float:
    """Hashes per CPU-second of the native solver on this machine (one core), from one solve."""
    solver = NativeSolver(library)
    tried, cpu = 0, 0.0
    seed = 0
    while cpu < 0.3:
        _nonce, n, c = solver.solve(hashlib.sha256(str(seed).encode()).digest()[:16], bits)
        tried, cpu, seed = tried + n, cpu + c, seed + 1
    return tried / cpu

"""The interstitial pages: proof of work in Web Workers, and the no-JS wait page.

Both are self-contained (no external resource, inline style and script under a per-response
CSP nonce) and carry nothing from the request except values we minted (token, seed, paths that
`safe_return_path` produced), and those are HTML-escaped anyway.

Solver, in order of preference:
- N Web Workers (N = navigator.hardwareConcurrency, at most 8); worker i tries only nonces that
  begin with its own two-digit number, so they split the nonce space without talking;
- each hashes with the pure-JS SHA-256 below, specialised to this one-block message: measured in
  headless Chromium it is many times faster than `crypto.subtle.digest` (a promise round trip per
  digest; see docs/challenge.md), and it works where crypto.subtle does not exist (plain-HTTP
  origins other than localhost). solver="webcrypto" makes the page use crypto.subtle where the
  context is secure, for comparison;
- if workers cannot start (old browser, CSP without blob: workers), the same solver runs on the
  main thread in slices that yield to the event loop.
The first solution found is POSTed with a form, so the browser itself follows the 303 and stores
the clearance cookie.
"""
from __future__ import annotations

import html

from .pow import Challenge
from .wait import WaitChallenge

WORKERS_MAX = 8
SOLVERS = ("js", "webcrypto")

# SHA-256 round constants.
_K = (
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
)

# The solver. One function so that it runs in a worker (serialised with Function.toString into a
# blob: URL, no eval) and on the main thread alike. Keep in step with `pow.proof_ok`.
#
# Nonces are 12 ASCII digits: 2 for the worker, 10 for its counter, so workers never overlap and
# seed || nonce is always 28 bytes. That fixes the padding and length words, and lets the search
# reuse work: message words 0-3 (seed) fix SHA-256 rounds 0-3 and schedule words 16-18 once per
# challenge; words 4-5 (worker, high digits) fix rounds 4-5 and words 19-20 once per 10,000
# nonces; only word 6 (the last four digits, from a table) changes in the inner loop.
_SOLVER_JS = r"""
function shieldSolver() {
  "use strict";
  var K = new Int32Array([K_WORDS]);
  var IV = new Int32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                           0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  var W = new Int32Array(64);
  var S4 = new Int32Array(8), S6 = new Int32Array(8);
  var FOUR = new Int32Array(10000);  // "0000".."9999" as big-endian ASCII words
  for (var q = 0; q < 10000; q++) FOUR[q] = digits4(q);

  function digits4(k) {
    return (48 + (k / 1000 | 0) % 10) << 24 | (48 + (k / 100 | 0) % 10) << 16 |
           (48 + (k / 10 | 0) % 10) << 8 | (48 + k % 10);
  }

  function schedule(i) {
    var x = W[i - 15], y = W[i - 2];
    W[i] = ((x >>> 7 | x << 25) ^ (x >>> 18 | x << 14) ^ (x >>> 3)) + W[i - 16] + W[i - 7] +
           ((y >>> 17 | y << 15) ^ (y >>> 19 | y << 13) ^ (y >>> 10)) | 0;
  }

  // Rounds from..to-1 on state `s` in place (only for the per-challenge / per-block parts).
  function rounds(s, from, to) {
    var a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7], t1, t2;
    for (var i = from; i < to; i++) {
      t1 = h + ((e >>> 6 | e << 26) ^ (e >>> 11 | e << 21) ^ (e >>> 25 | e << 7)) +
           ((e & f) ^ (~e & g)) + K[i] + W[i] | 0;
      t2 = ((a >>> 2 | a << 30) ^ (a >>> 13 | a << 19) ^ (a >>> 22 | a << 10)) +
           ((a & b) ^ (a & c) ^ (b & c)) | 0;
      h = g; g = f; f = e; e = d + t1 | 0; d = c; c = b; b = a; a = t1 + t2 | 0;
    }
    s[0] = a; s[1] = b; s[2] = c; s[3] = d; s[4] = e; s[5] = f; s[6] = g; s[7] = h;
  }

  function seedWords(hex) {
    var w = new Int32Array(4);
    for (var i = 0; i < 4; i++) w[i] = parseInt(hex.substr(8 * i, 8), 16) | 0;
    return w;
  }

  function pad(n, width) {
    var s = "" + n;
    while (s.length < width) s = "0" + s;
    return s;
  }

  function nonce(worker, counter) {
    return pad(worker, 2) + pad(counter, 10);
  }

  // Pure JS: try counters start .. start+count-1 (both multiples of 10000) of `worker`.
  // Returns the counter whose nonce solves the challenge, or -1.
  function searchJS(seed, bits, worker, start, count) {
    if (bits === 0) return start;
    var shift = 32 - bits, i, lo, hi;
    W[0] = seed[0]; W[1] = seed[1]; W[2] = seed[2]; W[3] = seed[3];
    W[7] = 0x80000000 | 0;
    for (i = 8; i < 15; i++) W[i] = 0;
    W[15] = 28 * 8;
    schedule(16); schedule(17); schedule(18);
    S4.set(IV);
    rounds(S4, 0, 4);
    for (hi = start / 10000; hi < (start + count) / 10000; hi++) {
      // nonce = ww hhhhhh llll: W[4] = w w h h, W[5] = h h h h, W[6] = l l l l
      W[4] = (48 + (worker / 10 | 0) % 10) << 24 | (48 + worker % 10) << 16 |
             (48 + (hi / 100000 | 0) % 10) << 8 | (48 + (hi / 10000 | 0) % 10);
      W[5] = digits4(hi % 10000);
      schedule(19); schedule(20);
      S6.set(S4);
      rounds(S6, 4, 6);
      lo = block(S6, FOUR, shift);
      if (lo >= 0) return hi * 10000 + lo;
    }
    return -1;
  }

  // The 10,000 nonces of one block: word 6 from FOUR, then schedule words 21-63 and rounds 6-63.
  // Plain loops on purpose: V8 optimises them within milliseconds. A fully unrolled version ran
  // about twice as fast once optimised, but spent ~60 ms in the interpreter first and did not
  // win end to end below 20 bits.
  function block(S, T, shift) {
    var i, t1, t2, a, b, c, d, e, f, g, h, x, y, lo;
    for (lo = 0; lo < 10000; lo++) {
      W[6] = T[lo];
      for (i = 21; i < 64; i++) {
        x = W[i - 15]; y = W[i - 2];
        W[i] = ((x >>> 7 | x << 25) ^ (x >>> 18 | x << 14) ^ (x >>> 3)) + W[i - 16] + W[i - 7] +
               ((y >>> 17 | y << 15) ^ (y >>> 19 | y << 13) ^ (y >>> 10)) | 0;
      }
      a = S[0]; b = S[1]; c = S[2]; d = S[3]; e = S[4]; f = S[5]; g = S[6]; h = S[7];
      for (i = 6; i < 64; i++) {
        t1 = h + ((e >>> 6 | e << 26) ^ (e >>> 11 | e << 21) ^ (e >>> 25 | e << 7)) +
             ((e & f) ^ (~e & g)) + K[i] + W[i] | 0;
        t2 = ((a >>> 2 | a << 30) ^ (a >>> 13 | a << 19) ^ (a >>> 22 | a << 10)) +
             ((a & b) ^ (a & c) ^ (b & c)) | 0;
        h = g; g = f; f = e; e = d + t1 | 0; d = c; c = b; b = a; a = t1 + t2 | 0;
      }
      if ((IV[0] + a | 0) >>> shift === 0) return lo;
    }
    return -1;
  }

  // The same with WebCrypto, `count` digests in flight at once. Resolves to the counter or -1.
  function searchSubtle(seedBytes, bits, worker, start, count) {
    var jobs = [], k, s, msg, j;
    for (k = 0; k < count; k++) {
      s = nonce(worker, start + k);
      msg = new Uint8Array(28);
      msg.set(seedBytes, 0);
      for (j = 0; j < 12; j++) msg[16 + j] = s.charCodeAt(j);
      jobs.push(crypto.subtle.digest("SHA-256", msg));
    }
    return Promise.all(jobs).then(function (digests) {
      for (var i = 0; i < digests.length; i++) {
        if (bits === 0 || new DataView(digests[i]).getUint32(0) >>> (32 - bits) === 0) return start + i;
      }
      return -1;
    });
  }

  // Search until found, then found(nonce string). `pause`: yield between slices (main thread).
  function run(seedHex, bits, worker, engine, found, pause) {
    var seed = seedWords(seedHex), counter = 0, slice = 20000;
    var seedBytes = new Uint8Array(16);
    for (var i = 0; i < 16; i++) seedBytes[i] = parseInt(seedHex.substr(2 * i, 2), 16);
    var subtle = engine === "subtle" && typeof crypto !== "undefined" && !!crypto.subtle;
    function next() {
      if (subtle) {
        searchSubtle(seedBytes, bits, worker, counter, 1000).then(function (r) {
          if (r >= 0) return found(nonce(worker, r));
          counter += 1000;
          next();
        }, function () { subtle = false; counter = Math.ceil(counter / 10000) * 10000; next(); });
        return;
      }
      var r = searchJS(seed, bits, worker, counter, slice);
      if (r >= 0) return found(nonce(worker, r));
      counter += slice;
      if (pause) setTimeout(next, 0); else next();
    }
    next();
  }

  return {run: run, searchJS: searchJS, seedWords: seedWords, nonce: nonce};
}

function shieldWorker(solver) {
  var s = solver();
  self.onmessage = function (e) {
    var d = e.data;
    s.run(d.seed, d.bits, d.worker, d.engine, function (n) { self.postMessage({nonce: n}); }, false);
  };
}
"""

_SOLVER_JS = _SOLVER_JS.replace("K_WORDS", ", ".join(f"0x{k:08x}" for k in _K))


_MAIN_JS = r"""
(function () {
  "use strict";
  var form = document.getElementById("shield-form");
  var status = document.getElementById("shield-status");
  var seed = form.getAttribute("data-seed");
  var bits = parseInt(form.getAttribute("data-bits"), 10);
  var hasSubtle = typeof crypto !== "undefined" && !!crypto.subtle && typeof crypto.subtle.digest === "function";
  // Pure JS unless asked otherwise: for one-block messages it is several times faster than
  // crypto.subtle.digest, whose every call is a promise round trip, and it works everywhere.
  var engine = form.getAttribute("data-engine") === "webcrypto" && hasSubtle ? "subtle" : "js";
  var t0 = Date.now(), done = false, workers = [], onMain = false;

  function finish(nonce, how) {
    if (done) return;
    done = true;
    for (var i = 0; i < workers.length; i++) workers[i].terminate();
    form.elements.nonce.value = nonce;
    form.elements.engine.value = how;
    form.elements.ms.value = String(Date.now() - t0);
    status.textContent = "Done. Continuing\u2026";
    form.submit();
  }

  function mainThread() {
    if (done || onMain) return;
    onMain = true;
    for (var i = 0; i < workers.length; i++) workers[i].terminate();
    workers = [];
    shieldSolver().run(seed, bits, 0, engine, function (n) { finish(n, engine + "/main"); }, true);
  }

  var count = Math.max(1, Math.min(navigator.hardwareConcurrency || 2, WORKERS_MAX));
  try {
    var source = "(" + shieldWorker.toString() + ")(" + shieldSolver.toString() + ");";
    var url = URL.createObjectURL(new Blob([source], {type: "text/javascript"}));
    for (var i = 0; i < count; i++) {
      var w = new Worker(url);
      w.onmessage = function (e) { finish(e.data.nonce, engine + "/workers" + count); };
      w.onerror = function (e) { if (e && e.preventDefault) e.preventDefault(); mainThread(); };
      w.postMessage({seed: seed, bits: bits, worker: i, engine: engine});
      workers.push(w);
    }
  } catch (err) {
    mainThread();
  }
})();
""".replace("WORKERS_MAX", str(WORKERS_MAX))

_STYLE = """
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;display:flex;
min-height:100vh;align-items:center;justify-content:center;background:#f6f7f9;color:#1f2328}
main{max-width:32rem;padding:2rem;text-align:center}
h1{font-size:1.25rem;font-weight:600;margin:0 0 .5rem}
p{margin:.5rem 0;color:#57606a}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _headers(nonce: str, scripts: bool) -> dict[str, str]:
    # No default source; each need is granted by name. Worker scripts come from blob: URLs made by
    # our own nonce'd script (a blob worker inherits this policy: it cannot fetch anything either).
    # The PoW page sets no form-action on purpose: browsers apply it to every redirect after the
    # submission, so `form-action 'self'` blocks the whole POST when the return path redirects to
    # another origin (an HTTPS upgrade, an SSO login) -- tests/browser shows it. The page has no
    # injection point for a foreign form, so the directive would buy nothing. The wait page has
    # no form at all: 'none'.
    policy = f"script-src 'nonce-{nonce}'; worker-src blob:; " if scripts else "form-action 'none'; "
    csp = (f"default-src 'none'; {policy}style-src 'nonce-{nonce}'; connect-src 'none'; img-src 'none'; "
           "base-uri 'none'; frame-ancestors 'none'")
    return {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Security-Policy": csp,
        "Cache-Control": "no-store",
        "X-Robots-Tag": "noindex, nofollow",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
    }


def _head(nonce: str, extra: str = "") -> str:
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            "<meta name=\"robots\" content=\"noindex, nofollow\">"
            f"<title>Checking your browser</title><style nonce=\"{_e(nonce)}\">{_STYLE}</style>{extra}</head>")


def wait_url(verify_path: str, wait: WaitChallenge) -> str:
    return f"{verify_path}?wait={wait.token}"


def render_challenge_page(challenge: Challenge, verify_path: str, nonce_for_csp: str,
                          no_js_fallback: WaitChallenge | None = None, solver: str = "js"
                          ) -> tuple[str, dict[str, str]]:
    """The proof-of-work page. With `no_js_fallback`, browsers without JavaScript follow a meta refresh
    to the (weaker) wait challenge instead of being stuck. `solver`: "js" (default, fastest) or
    "webcrypto" (crypto.subtle where the context is secure; for comparison, much slower)."""
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, not {solver!r}")
    n = _e(nonce_for_csp)
    if no_js_fallback is not None:
        url = _e(wait_url(verify_path, no_js_fallback))
        secs = no_js_fallback.wait
        noscript_head = f"<noscript><meta http-equiv=\"refresh\" content=\"{secs};url={url}\"></noscript>"
        noscript_body = (f"<noscript><p>JavaScript is off: this page continues by itself in {secs} seconds, "
                         f"or <a href=\"{url}\">continue</a> after that.</p></noscript>")
    else:
        noscript_head = ""
        noscript_body = "<noscript><p>Please enable JavaScript to continue to this site.</p></noscript>"
    body = (
        f"<body><main><h1>Checking your browser</h1>"
        f"<p id=\"shield-status\">This takes a moment and happens once.</p>{noscript_body}"
        f"<form id=\"shield-form\" method=\"post\" action=\"{_e(verify_path)}\" "
        f"data-seed=\"{_e(challenge.seed_hex)}\" data-bits=\"{int(challenge.difficulty)}\" "
        f"data-engine=\"{_e(solver)}\">"
        f"<input type=\"hidden\" name=\"token\" value=\"{_e(challenge.token)}\">"
        "<input type=\"hidden\" name=\"nonce\" value=\"\">"
        "<input type=\"hidden\" name=\"engine\" value=\"\">"
        "<input type=\"hidden\" name=\"ms\" value=\"\">"
        "</form></main>"
        f"<script nonce=\"{n}\">{_SOLVER_JS}{_MAIN_JS}</script></body></html>\n"
    )
    return _head(nonce_for_csp, noscript_head) + body, _headers(nonce_for_csp, scripts=True)


def render_wait_page(wait: WaitChallenge, verify_path: str, nonce_for_csp: str) -> tuple[str, dict[str, str]]:
    """The no-JS page: a meta refresh to the verify URL after `wait.wait` seconds. Weak; see wait.py."""
    url = _e(wait_url(verify_path, wait))
    secs = wait.wait
    refresh = f"<meta http-equiv=\"refresh\" content=\"{secs};url={url}\">"
    body = (f"<body><main><h1>Checking your browser</h1>"
            f"<p>This page continues by itself in {secs} seconds.</p>"
            f"<p><a href=\"{url}\">Continue</a> if it does not.</p></main></body></html>\n")
    return _head(nonce_for_csp, refresh) + body, _headers(nonce_for_csp, scripts=False)


def solver_js() -> str:
    """The solver source, for tests that run it outside a page."""
    return _SOLVER_JS

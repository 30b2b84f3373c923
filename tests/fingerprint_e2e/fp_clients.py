"""Real clients for the fingerprint end-to-end tests, and a reader for the shield's decision log.

Every client speaks TLS to the shield's listen port (self-signed certificate: verification is
off), ignores proxy environment variables, and opens a fresh connection per call unless said
otherwise, so every call is one full ClientHello for the shield to fingerprint.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import requests
from curl_cffi import CurlHttpVersion
from curl_cffi import requests as curl_requests

from harness import ShieldProcess, bind_session

# What Chrome 156 on Linux sends, minus "Headless": the UA a script copies from a real browser.
CHROME_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/156.0.0.0 Safari/537.36")
GOOGLEBOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
TIMEOUT = 10.0


@dataclass(frozen=True)
class Answer:
    status: int
    http_version: str  # "HTTP/1.1", "HTTP/2"
    body: str

    def echoed_headers(self) -> dict[str, str]:
        return echoed_headers(self.body)


def echoed_headers(echo_body: str) -> dict[str, str]:
    """The request headers as the origin's /echo saw them, by lowercase name (minus the shield's XFF)."""
    return {k.lower(): v for k, v in json.loads(echo_body)["headers"] if k.lower() != "x-forwarded-for"}


# --- clients ----------------------------------------------------------------------------------

def via_requests(url: str, *, headers: dict[str, str] | None = None, source: str | None = None) -> Answer:
    with (bind_session(source) if source else requests.Session()) as session:
        session.trust_env = False
        response = session.get(url, headers=headers, verify=False, timeout=TIMEOUT)
    return Answer(response.status_code, {10: "HTTP/1.0", 11: "HTTP/1.1"}[response.raw.version], response.text)


def via_httpx(url: str, *, http2: bool = False, source: str | None = None,
              headers: dict[str, str] | None = None) -> Answer:
    # With an explicit transport, httpx takes `verify` from the transport, not the client.
    transport = httpx.HTTPTransport(local_address=source, verify=False, http2=http2)
    with httpx.Client(transport=transport, http2=http2, trust_env=False, timeout=TIMEOUT) as client:
        response = client.get(url, headers=headers)
    return Answer(response.status_code, response.http_version, response.text)


def via_aiohttp(url: str) -> Answer:
    async def fetch() -> Answer:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        async with aiohttp.ClientSession(trust_env=False) as session, session.get(url, ssl=False,
                                                                                  timeout=timeout) as response:
            body = await response.text()
            version = f"HTTP/{response.version.major}.{response.version.minor}" if response.version else "?"
            return Answer(response.status, version, body)

    return asyncio.run(fetch())


def via_curl(url: str, *, http2: bool = False, headers: dict[str, str] | None = None) -> Answer:
    """The curl binary, as a user types it: `curl -k URL` (or with `--http2`)."""
    marker = "\n--curl-meta--"
    argv = ["curl", "--silent", "--show-error", "--insecure", "--noproxy", "*", "--max-time", str(int(TIMEOUT))]
    if http2:
        argv.append("--http2")
    for name, value in (headers or {}).items():
        argv += ["--header", f"{name}: {value}"]
    argv += ["--write-out", marker + "%{http_code} %{http_version}", url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=2 * TIMEOUT, check=True)
    body, _, meta = done.stdout.rpartition(marker)
    code, version = meta.split()
    return Answer(int(code), "HTTP/2" if version == "2" else f"HTTP/{version}", body)


def via_curl_cffi(url: str, target: str, *, headers: dict[str, str] | None = None,
                  http1: bool = False) -> Answer:
    """curl_cffi impersonating a browser (`chrome`, `firefox`, `safari`): a new session, so a new handshake."""
    kwargs: dict[str, Any] = {"impersonate": target, "verify": False, "timeout": TIMEOUT, "proxies": {}}
    if headers:
        kwargs["headers"] = headers
    if http1:
        kwargs["http_version"] = CurlHttpVersion.V1_1
    response = curl_requests.get(url, **kwargs)
    version = {int(CurlHttpVersion.V2_0): "HTTP/2", int(CurlHttpVersion.V1_1): "HTTP/1.1"}.get(
        int(response.http_version), "?")
    return Answer(response.status_code, version, response.text)


@contextlib.contextmanager
def chromium_page(browser: Any, **context: Any) -> Iterator[Any]:
    """A page in a fresh browser context (its own connections), closed afterwards."""
    ctx = browser.new_context(ignore_https_errors=True, **context)
    try:
        yield ctx.new_page()
    finally:
        ctx.close()


# --- the decision log ------------------------------------------------------------------------------

def ja4_alpn(ja4: str) -> str:
    """The JA4 part naming the first ALPN value offered: `h2`, `h1`, or `00` for none."""
    return ja4.split("_")[0][-2:]


class DecisionLogFile:
    """The shield's `--decision-log` file, read as JSON lines.

    The shield writes a line before it answers, line-buffered; polling briefly covers the rest.
    `mark()` / `since=` select the lines written after a point, for paths several requests share
    (a browser's /static assets).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def entries(self, since: int = 0) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as fh:
            fh.seek(since)
            data = fh.read()
        return [json.loads(line) for line in data.decode().splitlines() if line.strip()]

    def wait(self, path: str, *, rule: str = "all", since: int = 0, count: int = 1,
             timeout: float = 5.0) -> list[dict[str, Any]]:
        """At least `count` lines of `rule` for `path`, waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.entries(since) if e["path"] == path and e["rule"] == rule]
            if len(found) >= count or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        assert len(found) >= count, f"expected {count} {rule!r} line(s) for {path}, found {len(found)}"
        return found

    def fp(self, path: str, since: int = 0) -> dict[str, Any]:
        """The fingerprint logged for the one request to `path` (by the log-everything rule `all`)."""
        (line,) = self.wait(path, since=since)
        fp: dict[str, Any] = line["fp"]
        return fp


@dataclass(frozen=True)
class RunningShield:
    process: ShieldProcess
    log: DecisionLogFile

    @property
    def url(self) -> str:
        """The listen port over TLS: every client here speaks HTTPS."""
        return self.process.https_url

    @property
    def admin_url(self) -> str:
        return self.process.admin_url

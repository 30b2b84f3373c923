"""End to end: hostile bytes on a raw socket to a real `scrapeshield run`.

Whatever arrives, the shield answers it (or closes the connection), keeps running, and the
next ordinary request gets through. Hostile input is decided like any other request: the fail mode
is for the shield's own faults, never for what a client sends.
"""
from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import ShieldProcess

pytestmark = pytest.mark.e2e

POLICY = """\
version: 1
name: e2e-hostile-{fail}
fail: {fail}
trusted_proxies: [127.0.0.1/32]
rules:
  - name: spoofed-client
    match: {{client_ip: [1.2.3.4]}}
    action: block
"""

# 1000 hops is far past what the shield reads (64), yet in under 8 KB, so that an origin with the usual
# 8190-byte header cap would take it: what happens to it is the shield's doing alone. The right-most
# hop is the one a trusted proxy appended: the client.
STUFFED_CHAIN = ",".join(["9.9.9.9"] * 1000) + ",1.2.3.4"
UNTRUSTED = "127.0.0.5"


def _shield(demo_origin: str, tmp_path_factory: pytest.TempPathFactory, fail: str) -> ShieldProcess:
    workdir = tmp_path_factory.mktemp(f"hostile-{fail}")
    return ShieldProcess(demo_origin, policy_text=POLICY.format(fail=fail), workdir=workdir)


@pytest.fixture(scope="module")
def shield(demo_origin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShieldProcess]:
    """`fail: closed`: a request the shield cannot reason about is refused."""
    with _shield(demo_origin, tmp_path_factory, "closed") as running:
        yield running


@pytest.fixture(scope="module")
def open_shield(demo_origin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShieldProcess]:
    """`fail: open`: such a request is passed on."""
    with _shield(demo_origin, tmp_path_factory, "open") as running:
        yield running


# --- raw HTTP ---------------------------------------------------------------------------------------

def send_raw(shield: ShieldProcess, data: bytes, source_ip: str = "127.0.0.1") -> bytes:
    """Send `data` as it is and read until the peer closes; b"" if it closed without a word."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(10.0)
        sock.bind((source_ip, 0))
        sock.connect((shield.host, shield.port))
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
        return b"".join(chunks)


def status_of(answer: bytes) -> int:
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1."), f"not an HTTP answer: {answer[:200]!r}"
    return int(status_line.split()[1])


def header_of(answer: bytes, name: bytes) -> bytes | None:
    head = answer.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def request(shield: ShieldProcess, *headers: bytes, target: bytes = b"/echo", version: bytes = b"HTTP/1.1") -> bytes:
    host = f"Host: {shield.host}:{shield.port}".encode()
    lines = [b"GET " + target + b" " + version, host, *headers, b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def assert_still_serving(shield: ShieldProcess) -> None:
    """Up, answering, and no exception escaped into the log (mitmproxy would catch and log one)."""
    assert shield.running, shield.log_text()
    log = shield.stderr_path.read_text(errors="replace")
    assert "Traceback" not in log and "Addon error" not in log, log
    response = httpx.get(f"{shield.proxy_url}/products/1", trust_env=False, timeout=10.0)
    assert response.status_code == 200


def errors_total(shield: ShieldProcess, kind: str) -> float:
    text = httpx.get(f"{shield.admin_url}/metrics", trust_env=False).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "scrapeshield_errors_total" and sample.labels.get("kind") == kind:
                return sample.value
    return 0.0


# --- odd but survivable ----------------------------------------------------------------------------

def test_invalid_utf8_in_a_header_value_passes_through_byte_for_byte(shield: ShieldProcess) -> None:
    answer = send_raw(shield, request(shield, b"X-Bytes: ok\xff\xfe\xc3\x28end"))

    assert status_of(answer) == 200
    assert b'["X-Bytes", "ok\\u00ff\\u00fe\\u00c3(end"]' in answer  # the origin's latin-1 echo of the bytes
    assert_still_serving(shield)


def test_a_60kb_header_gets_an_http_answer_not_a_crash(shield: ShieldProcess) -> None:
    answer = send_raw(shield, request(shield, b"X-Huge: " + b"a" * 60_000))

    assert 400 <= status_of(answer) < 500  # the origin refuses it; the shield neither crashes nor hangs
    assert_still_serving(shield)


def test_http11_without_host_is_answered_400(shield: ShieldProcess) -> None:
    answer = send_raw(shield, b"GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n")

    assert status_of(answer) == 400
    assert_still_serving(shield)


def test_http10_without_host_is_served(shield: ShieldProcess) -> None:
    answer = send_raw(shield, b"GET /echo HTTP/1.0\r\n\r\n")

    assert status_of(answer) == 200
    assert_still_serving(shield)


GARBAGE = {
    "no-target": b"GET\r\n\r\n",
    "four-words": b"FOO BAR BAZ QUX\r\n\r\n",
    "control-bytes": b"\x00\x01\x02\x03\r\n\r\n",
    "binary-method": b"G\xffT / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "unknown-version": b"GET / HTTP/9.9\r\nHost: x\r\nConnection: close\r\n\r\n",
    "header-without-colon": b"GET / HTTP/1.1\r\nHost: x\r\nno-colon-here\r\n\r\n",
    "negative-content-length": b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "length-and-chunked": b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
                          b"0\r\n\r\n",
}


@pytest.mark.parametrize("data", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_request_is_answered_400(shield: ShieldProcess, data: bytes) -> None:
    answer = send_raw(shield, data)

    assert status_of(answer) == 400
    assert_still_serving(shield)


def test_garbage_tls_record_closes_the_connection(shield: ShieldProcess) -> None:
    answer = send_raw(shield, b"\x16\x03\x01\x00\x05hello, not a ClientHello\r\n\r\n")

    assert answer == b""
    assert_still_serving(shield)


# --- forwarding headers ------------------------------------------------------------------------------

@pytest.mark.parametrize("fail", ["closed", "open"])
def test_a_stuffed_forwarded_for_chain_from_a_trusted_peer_is_decided_by_the_rules(
    shield: ShieldProcess, open_shield: ShieldProcess, fail: str
) -> None:
    # given 1000 client-written hops, then the address the trusted proxy saw (blocked by a rule)
    target = shield if fail == "closed" else open_shield
    before = errors_total(target, "request")
    # when it arrives
    answer = send_raw(target, request(target, b"X-Forwarded-For: " + STUFFED_CHAIN.encode()))
    # then the rule blocks the client under either fail mode, and nothing counts as an error
    assert status_of(answer) == 403
    assert header_of(answer, b"Shield-Action") == b"block"
    assert errors_total(target, "request") == before
    assert_still_serving(target)


def test_spoofed_forwarded_from_untrusted_peer_is_ignored(shield: ShieldProcess) -> None:
    answer = send_raw(shield, request(shield, b"Forwarded: for=1.2.3.4"), source_ip=UNTRUSTED)

    assert status_of(answer) == 200  # keyed by the real peer, so the rule against 1.2.3.4 does not apply


def test_forwarded_from_trusted_peer_is_believed(shield: ShieldProcess) -> None:
    """The counterpart of the spoofing test: the same header from a trusted proxy names the client."""
    answer = send_raw(shield, request(shield, b"Forwarded: for=1.2.3.4"), source_ip="127.0.0.1")

    assert status_of(answer) == 403

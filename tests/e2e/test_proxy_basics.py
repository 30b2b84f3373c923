"""End to end: a real `scrapeshield run` in front of the real demo origin, driven by real clients.

What a site operator relies on before any rule matters: every common client gets through over
HTTP/1.1, TLS and HTTP/2; what reaches the origin is what the client sent (plus X-Forwarded-For and X-Request-Id);
the admin endpoints answer on their own port and only there; a bad policy stops the start.
"""
from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from harness import PYTHON, REPO, ShieldProcess, bind_client, free_port, origin_stats, subprocess_env

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]

POLICY = """\
version: 1
name: e2e-basics
rules:
  - name: blocked-path
    match: {path: [/blocked/*]}
    action: block
"""

PRODUCT_1_PAGE_MARK = 'data-product-id="1"'


@pytest.fixture(scope="module")
def shield(demo_origin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShieldProcess]:
    """One shield for the whole module: nothing here spends a budget or bans anyone."""
    with ShieldProcess(demo_origin, policy_text=POLICY, workdir=tmp_path_factory.mktemp("basics")) as running:
        yield running


# --- real clients, one answer shape -----------------------------------------------------------

@dataclass(frozen=True)
class Answer:
    status: int
    http_version: str  # "HTTP/1.1", "HTTP/2"
    body: str


def _httpx(url: str, *, http2: bool = False) -> Answer:
    with httpx.Client(verify=False, http2=http2, trust_env=False, timeout=10.0) as client:
        response = client.get(url)
    return Answer(response.status_code, response.http_version, response.text)


def _requests(url: str, *, http2: bool = False) -> Answer:
    assert not http2, "requests speaks HTTP/1.1 only"
    with requests.Session() as session:
        session.trust_env = False
        response = session.get(url, verify=False, timeout=10.0)
    version = {10: "HTTP/1.0", 11: "HTTP/1.1"}[response.raw.version]
    return Answer(response.status_code, version, response.text)


def _curl(url: str, *, http2: bool = False) -> Answer:
    marker = "\n--curl-meta--"
    argv = ["curl", "--silent", "--show-error", "--insecure", "--noproxy", "*", "--max-time", "10",
            "--http2" if http2 else "--http1.1", "--write-out", marker + "%{http_code} %{http_version}", url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=True)
    body, _, meta = done.stdout.rpartition(marker)
    code, version = meta.split()
    return Answer(int(code), "HTTP/2" if version == "2" else f"HTTP/{version}", body)


CLIENTS: dict[str, Callable[..., Answer]] = {"httpx": _httpx, "requests": _requests, "curl": _curl}


# --- getting through ------------------------------------------------------------------------------

@pytest.mark.parametrize("client", CLIENTS.values(), ids=CLIENTS.keys())
def test_client_gets_origin_page_over_plain_http11(shield: ShieldProcess, client: Callable[..., Answer]) -> None:
    answer = client(f"{shield.proxy_url}/products/1")

    assert (answer.status, answer.http_version) == (200, "HTTP/1.1")
    assert PRODUCT_1_PAGE_MARK in answer.body


@pytest.mark.parametrize("client", CLIENTS.values(), ids=CLIENTS.keys())
def test_client_gets_origin_page_over_tls_on_the_same_port(shield: ShieldProcess,
                                                           client: Callable[..., Answer]) -> None:
    answer = client(f"{shield.https_url}/products/1")

    assert (answer.status, answer.http_version) == (200, "HTTP/1.1")
    assert PRODUCT_1_PAGE_MARK in answer.body


@pytest.mark.parametrize("client", [_httpx, _curl], ids=["httpx", "curl"])
def test_client_offering_h2_gets_http2_over_tls(shield: ShieldProcess, client: Callable[..., Answer]) -> None:
    answer = client(f"{shield.https_url}/products/1", http2=True)

    assert (answer.status, answer.http_version) == (200, "HTTP/2")
    assert PRODUCT_1_PAGE_MARK in answer.body


# --- what the origin sees -------------------------------------------------------------------------

def _request_id_appended(headers: list[list[str]]) -> list[list[str]]:
    """The headers before the shield's X-Request-Id, which must come last and be the only one."""
    assert headers[-1][0] == "X-Request-Id" and headers[-1][1].isalnum(), headers[-1]
    assert all(k.lower() != "x-request-id" for k, _ in headers[:-1])
    return headers[:-1]


def test_allowed_request_reaches_origin_unchanged_but_for_appended_forwarded_for(shield: ShieldProcess) -> None:
    sent_headers = [("X-Dup", "one"), ("x-MiXeD-Case", "Value  with   spaces"), ("X-Dup", "two"),
                    ("Cookie", "a=1; b=2")]
    with bind_client("127.0.0.3") as client:
        response = client.post(f"{shield.proxy_url}/echo/some/path?q=1&b=%20x&q=2", headers=sent_headers,
                               content=b"payload \x00\xff bytes")
    seen = response.json()
    sent = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in response.request.headers.raw]

    assert response.status_code == 200
    assert seen["method"] == "POST"
    assert seen["raw_path"] == "/echo/some/path?q=1&b=%20x&q=2"
    assert seen["body_b64"] == "cGF5bG9hZCAA/yBieXRlcw=="  # base64 of the exact bytes sent
    assert _request_id_appended(seen["headers"]) == [*sent, ["X-Forwarded-For", "127.0.0.3"]]


def test_client_forwarded_for_gets_the_peer_appended_in_place(shield: ShieldProcess) -> None:
    sent_headers = [("X-Before", "1"), ("X-Forwarded-For", "198.51.100.7"), ("X-After", "2")]
    with bind_client("127.0.0.4") as client:
        response = client.get(f"{shield.proxy_url}/echo", headers=sent_headers)
    sent = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in response.request.headers.raw]
    expected = [[k, v + ", 127.0.0.4" if k == "X-Forwarded-For" else v] for k, v in sent]

    assert _request_id_appended(response.json()["headers"]) == expected


def test_without_upstream_the_builtin_demo_shop_is_fronted(shield_factory: Callable[..., ShieldProcess]) -> None:
    own = shield_factory(upstream=None, policy_text=POLICY)

    page = httpx.get(f"{own.proxy_url}/products/1", trust_env=False, timeout=10.0)
    builtin_stats = httpx.get(f"{own.proxy_url}/__origin/stats", trust_env=False, timeout=10.0).json()

    assert "--upstream" not in own.argv
    assert page.status_code == 200 and PRODUCT_1_PAGE_MARK in page.text
    assert builtin_stats["paths"] == {"/products/1": 1}  # a fresh origin of its own saw exactly that


# --- admin endpoints -------------------------------------------------------------------------------

def _samples(metrics_text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def test_metrics_is_prometheus_text_with_the_core_series(shield: ShieldProcess) -> None:
    httpx.get(f"{shield.proxy_url}/products/2", trust_env=False)  # at least one decision

    response = httpx.get(f"{shield.admin_url}/metrics", trust_env=False)
    samples = _samples(response.text)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert any(labels.get("enforced") == "true" for labels, _ in samples["scrapeshield_decisions_total"])
    assert samples["scrapeshield_evaluation_seconds_count"][0][1] >= 1
    assert "scrapeshield_tracked_keys" in samples
    [(info_labels, _)] = samples["scrapeshield_policy_info"]
    assert info_labels["name"] == "e2e-basics"


def test_healthz_answers_ok_with_the_policy_version(shield: ShieldProcess) -> None:
    response = httpx.get(f"{shield.admin_url}/healthz", trust_env=False)

    assert response.status_code == 200
    assert response.json() == {"ok": True, "policy": hashlib.sha256(POLICY.encode()).hexdigest()[:16]}


def test_status_reports_policy_file_version_and_counters(shield: ShieldProcess) -> None:
    def block_count() -> int:
        status = httpx.get(f"{shield.admin_url}/status", trust_env=False).json()
        return int(status["counters"]["decisions"].get("blocked-path/block", 0))

    before = block_count()
    refused = httpx.get(f"{shield.proxy_url}/blocked/x", trust_env=False)
    status = httpx.get(f"{shield.admin_url}/status", trust_env=False).json()

    assert refused.status_code == 403
    assert status["policy"]["file"] == str(shield.policy)
    assert status["policy"]["version"] == hashlib.sha256(POLICY.encode()).hexdigest()[:16]
    assert status["policy"]["rules"] == 1
    assert block_count() == before + 1


@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/status"])
def test_admin_paths_on_the_proxy_port_go_to_the_origin(shield: ShieldProcess, demo_origin: str, path: str) -> None:
    before = origin_stats(demo_origin)["paths"].get(path, 0)

    response = httpx.get(f"{shield.proxy_url}{path}", trust_env=False)

    assert response.status_code == 404  # the origin's "not found", not the admin answer
    assert "scrapeshield_" not in response.text and "Demo Shop" in response.text
    assert origin_stats(demo_origin)["paths"].get(path, 0) == before + 1


# --- refusing to start ----------------------------------------------------------------------------

def test_invalid_policy_stops_run_with_file_line_col_error(tmp_path: Path) -> None:
    policy = tmp_path / "bad.yaml"
    policy.write_text("version: 1\nrules:\n  - name: oops\n    action: explode\n")

    done = subprocess.run(
        [PYTHON, "-m", "scrapeshield", "run", "--upstream", "http://127.0.0.1:9", "--policy", str(policy),
         "--listen", f"127.0.0.1:{free_port()}", "--admin", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=30, cwd=REPO, env=subprocess_env(),
    )

    assert done.returncode != 0
    assert f"{policy}:4:13: rule 'oops': action must be one of" in done.stderr

"""The dashboard in real headless Chromium: it renders live numbers after traffic, with no console
error and nothing loaded from outside the admin listener. A screenshot is kept among the test
artefacts (tests/artifacts/dashboard.png, ignored by git)."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import REPO, bind_client

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--no-first-run",
        "--disable-gpu"]
ARTIFACTS = REPO / "tests" / "artifacts"

POLICY = """\
version: 1
name: dashboard-demo
rules:
  - name: blocked-path
    match: {path: ["/admin/*"]}
    action: block
  - name: records
    match: {path: ["/api/*"]}
    limits: ["5/m burst 3"]
"""


def make_traffic(proxy_url: str) -> None:
    with bind_client("127.0.0.2", base_url=proxy_url) as client:
        for i in range(12):
            client.get(f"/api/users/{i}")
        client.get("/admin/secret")
    with bind_client("127.0.0.3", base_url=proxy_url) as client:
        client.get("/")


def test_the_dashboard_renders_live_numbers_without_errors(shield_factory: Any, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    shield = shield_factory(policy_text=POLICY)
    page_response = httpx.get(f"{shield.admin_url}/dashboard", trust_env=False)
    csp = page_response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert "http" not in page_response.text.split("<script>")[1].replace("http://www.w3.org/2000/svg", "")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            problems: list[str] = []
            outside: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("request", lambda r: None if r.url.startswith(shield.admin_url) else outside.append(r.url))
            page.goto(f"{shield.admin_url}/dashboard")
            page.wait_for_function("() => document.body.dataset.updated")  # first poll rendered
            make_traffic(shield.proxy_url)
            # A rate is the difference between two polls: the poll after the traffic shows it.
            page.wait_for_function("() => parseFloat(document.getElementById('rps').textContent) > 0",
                                   timeout=15_000)
            page.wait_for_function(
                "() => [...document.querySelectorAll('#rules tbody tr')].some(r => r.textContent.includes('records'))"
                " && document.querySelector('#topkeys tbody').textContent.includes('ip=127.0.0.2')", timeout=15_000)
            rules_text = page.inner_text("#rules")
            assert "blocked-path" in rules_text and "block" in rules_text
            assert page.inner_text("#ready") == "ready"
            assert "dashboard-demo" in page.inner_text("#policy")
            assert "memory" in page.inner_text("#state")
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "dashboard.png")
    assert not problems, problems
    assert not outside, outside

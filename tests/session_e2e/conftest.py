"""One real `scrapeshield run` with sessions (key file, session policy) per test module."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "challenge_e2e"))

from challenge_helpers import start_shield

from harness import ShieldProcess

FRONT_PROXY = "127.0.0.5"
CHROME_JA4 = "t13d1516h2_8daaf6152771_e5627efa2ab1"
SESSION_POLICY = f"""
version: 1
trusted_proxies: [{FRONT_PROXY}/32]
keys:
  client: session_or:ip
session:
  record_budget: 2
  difficulty: {{base: 8, maximum: 10, net_unit: 100, stack_unit: 100}}
rules:
  - name: front-ja4
    match: {{ja4: [{CHROME_JA4}]}}
    action: block
  - name: gate
    match: {{path: [/user/*]}}
    action: challenge
    difficulty: 8
  - name: per-client
    match: {{path: [/]}}
    key: client
    limits: ["3/m"]
    exceed: throttle
"""


@pytest.fixture(scope="module")
def shield(tmp_path_factory: pytest.TempPathFactory, demo_origin: str) -> Iterator[ShieldProcess]:
    proc = start_shield(tmp_path_factory.mktemp("sessions"), demo_origin, SESSION_POLICY)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def default_shield(tmp_path_factory: pytest.TempPathFactory, demo_origin: str) -> Iterator[ShieldProcess]:
    """The shipped default policy."""
    default = Path(__file__).resolve().parents[2] / "policies" / "default.yaml"
    proc = ShieldProcess(demo_origin, policy=default, workdir=tmp_path_factory.mktemp("default")).start()
    try:
        yield proc
    finally:
        proc.stop()

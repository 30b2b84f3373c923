"""docs/metrics.md names every metric a live shield exports, with its labels, and nothing else."""
from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import REPO, bind_client

pytestmark = pytest.mark.e2e

POLICY = """\
version: 1
name: metrics
rules:
  - name: records
    match: {path: ["/api/*"]}
    limits: ["2/m burst 1"]
  - name: gate
    match: {path: ["/gate/*"]}
    action: challenge
"""
ROW = re.compile(r"^\| `(scrapeshield_[a-z_]+)` \| (\w+) \|([^|]*)\|")


def documented() -> dict[str, tuple[str, frozenset[str]]]:
    """Documented metrics of a single-process shield (rows saying "Only with `--workers`" left out:
    the supervisor adds those)."""
    out = {}
    for line in (REPO / "docs" / "metrics.md").read_text().splitlines():
        if (m := ROW.match(line)) and "Only with `--workers`" not in line:
            out[m.group(1)] = (m.group(2), frozenset(re.findall(r"`(\w+)`", m.group(3))))
    return out


def exported(text: str) -> dict[str, tuple[str, frozenset[str]]]:
    out = {}
    for family in text_string_to_metric_families(text):
        name = family.name + {"counter": "_total", "info": "_info"}.get(family.type, "")
        labels = frozenset(k for s in family.samples for k in s.labels if k not in ("le", "quantile"))
        out[name] = ("gauge" if family.type == "info" else family.type, labels)
    return out


def test_every_live_metric_is_documented_with_its_labels(shield_factory: Any) -> None:
    shield = shield_factory(policy_text=POLICY, shadow_policy=REPO / "tests" / "policies" / "good" / "minimal.yaml")
    with bind_client("127.0.0.2", base_url=shield.proxy_url) as client:
        for i in range(4):
            client.get(f"/api/{i}")  # decisions, including refusals (so a shadow difference)
        client.get("/gate/x", headers={"Accept": "text/html"})  # a challenge issued
    shield.policy.write_text("version: 1\nrules: [{name: x, action: nonsense}]\n")  # a failed reload
    text = ""
    for _ in range(80):  # the policy file is polled once a second
        text = httpx.get(f"{shield.admin_url}/metrics", trust_env=False).text
        if 'result="failed"' in text:
            break
        time.sleep(0.1)
    live, docs = exported(text), documented()
    assert sorted(set(live) - set(docs)) == [], "exported but not in docs/metrics.md"
    assert sorted(set(docs) - set(live)) == [], "in docs/metrics.md but not exported"
    for name, (kind, labels) in live.items():
        assert docs[name][0] == kind, f"{name}: documented as {docs[name][0]}, exported as {kind}"
        if labels:  # a labelled metric without samples yet shows no labels to compare
            assert docs[name][1] == labels, f"{name}: documented labels {sorted(docs[name][1])}, live {sorted(labels)}"

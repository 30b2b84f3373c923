"""`scrapeshield replay`: deterministic, time-ordered, reported per client and rule, checked by --expect."""
from __future__ import annotations

import gzip
import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy.io import FlowWriter
from mitmproxy.test import tflow

from harness import PYTHON, REPO, subprocess_env
from replaytools import capture, replay_decisions, replay_report
from scrapeshield.cli import main
from scrapeshield.runtime import ShieldRuntime

T0 = 1_764_000_000.0

# /user/*: three requests at once per client (then one per 20 s); a fourth in a burst is blocked.
LIMITED = """\
version: 1
name: limited
rules:
  - name: assets-free
    match: {path: ["/static/*"]}
    action: allow
  - name: records
    match: {path: ["/user/*"]}
    limits: ["3/m burst 2"]
    exceed: block
"""


def make_flow(path: str, t: float, client: str = "203.0.113.7", *, user_agent: str = "pytest-client",
              status: int = 200, content_type: str = "text/html", body: bytes = b"<html></html>",
              metadata: dict[str, Any] | None = None, headers: Sequence[tuple[str, str]] = ()) -> http.HTTPFlow:
    flow = tflow.tflow(resp=True)
    flow.client_conn.peername = (client, 40000)
    flow.request.path = path
    flow.request.timestamp_start = t
    flow.request.headers["host"] = "shop.example"
    flow.request.headers["user-agent"] = user_agent
    for name, value in headers:
        flow.request.headers.add(name, value)
    assert flow.response is not None
    flow.response.status_code = status
    flow.response.headers["content-type"] = content_type
    flow.response.content = body
    flow.metadata.update(metadata or {})
    return flow


def write_flows(path: Path, flows: Sequence[http.HTTPFlow], compress: bool = False) -> Path:
    with (gzip.open(path, "wb") if compress else open(path, "wb")) as fh:
        writer = FlowWriter(fh)
        for flow in flows:
            writer.add(flow)
    return path


def run_cli(args: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["replay", *args])
    out, err = capsys.readouterr()
    return code, out, err


# --- order and determinism ----------------------------------------------------------------------

def test_the_same_captures_give_a_byte_identical_json_report_twice(capsys: pytest.CaptureFixture[str]) -> None:
    args = [str(capture("scrapy")), str(capture("chromium")), "--policy", "policies/default.yaml", "--format", "json"]
    first = run_cli(args, capsys)
    second = run_cli(args, capsys)
    assert first[0] == 0
    assert first == second


def test_separate_processes_with_different_hash_seeds_give_the_same_report() -> None:
    """Nothing in a replay may depend on the process: not str hashes, not the wall clock."""
    outputs = []
    for seed in ("1", "2"):
        proc = subprocess.run(
            [PYTHON, "-m", "scrapeshield", "replay", str(capture("scrapy")), str(capture("chromium")),
             str(capture("requests")), "--policy", "policies/default.yaml", "--format", "json"],
            capture_output=True, cwd=REPO, env=subprocess_env({"PYTHONHASHSEED": seed}), timeout=60, check=False,
        )
        assert proc.returncode == 0, proc.stderr.decode()
        outputs.append(proc.stdout)
    assert outputs[0] == outputs[1]


def test_requests_from_all_files_are_replayed_in_timestamp_order(tmp_path: Path, policy_file: Any) -> None:
    a = write_flows(tmp_path / "a.flows", [make_flow("/a1", T0 + 1), make_flow("/a2", T0 + 3)])
    b = write_flows(tmp_path / "b.flows", [make_flow("/b1", T0 + 2), make_flow("/b2", T0 + 4)])

    decisions = replay_decisions([a, b], policy_file(LIMITED))

    assert [d.path for d in decisions] == ["/a1", "/b1", "/a2", "/b2"]
    assert [d.index for d in decisions] == [1, 2, 3, 4]


def test_equal_timestamps_keep_file_order_then_position_in_the_file(tmp_path: Path, policy_file: Any) -> None:
    a = write_flows(tmp_path / "a.flows", [make_flow("/a1", T0), make_flow("/a2", T0)])
    b = write_flows(tmp_path / "b.flows", [make_flow("/b1", T0)])
    policy = policy_file(LIMITED)

    assert [d.path for d in replay_decisions([a, b], policy)] == ["/a1", "/a2", "/b1"]
    assert [d.path for d in replay_decisions([b, a], policy)] == ["/b1", "/a1", "/a2"]


def test_the_clock_is_each_requests_own_timestamp(tmp_path: Path, policy_file: Any) -> None:
    # Four requests in one second exhaust the burst; four a minute apart never do.
    burst = [make_flow(f"/user/{i}", T0 + i * 0.25, client="198.51.100.1") for i in range(4)]
    slow = [make_flow(f"/user/{i}", T0 + i * 60, client="198.51.100.2") for i in range(4)]
    flows = write_flows(tmp_path / "t.flows", burst + slow)

    decisions = replay_decisions([flows], policy_file(LIMITED))

    assert [d.effective.value for d in decisions if d.client == "198.51.100.1"] == ["allow"] * 3 + ["block"]
    assert [d.effective.value for d in decisions if d.client == "198.51.100.2"] == ["allow"] * 4


def test_gzip_compressed_flow_files_replay_like_plain_ones(tmp_path: Path, policy_file: Any) -> None:
    flows = [make_flow(f"/user/{i}", T0 + i) for i in range(5)]
    plain = write_flows(tmp_path / "p.flows", flows)
    packed = write_flows(tmp_path / "p.flows.gz", flows, compress=True)
    policy = policy_file(LIMITED)

    strip = [(d.path, d.action, d.rule) for d in replay_decisions([plain], policy)]
    assert strip == [(d.path, d.action, d.rule) for d in replay_decisions([packed], policy)]


# --- what the policy sees -----------------------------------------------------------------------

def test_the_forwarded_for_hop_added_by_the_shield_is_removed_before_deciding(tmp_path: Path,
                                                                               policy_file: Any) -> None:
    added = make_flow("/", T0, headers=[("X-Forwarded-For", "203.0.113.7")],
                      metadata={"scrapeshield_xff_prior": []})
    appended = make_flow("/", T0 + 1, headers=[("x-forwarded-for", "10.0.0.1, 203.0.113.7")],
                         metadata={"scrapeshield_xff_prior": ["10.0.0.1"]})
    client_sent = make_flow("/", T0 + 2, headers=[("X-Forwarded-For", "10.9.9.9")])  # not from our shield
    flows = write_flows(tmp_path / "x.flows", [added, appended, client_sent])

    decisions = replay_decisions([flows], policy_file(LIMITED))

    assert [d.facts.header("x-forwarded-for") if d.facts else "?" for d in decisions] == [None, "10.0.0.1", "10.9.9.9"]


def test_a_saved_tls_fingerprint_reaches_the_policy(tmp_path: Path, policy_file: Any) -> None:
    from scrapeshield.fingerprint import tls as tls_module
    saved = {"ja3": "771,4865,0,29,0", "ja3_hash": "0" * 32, "ja4": "t13d0101h2_x_y", "ja4_r": "t13d0101h2_x_y",
             "alpn_offered": ["h2", "http/1.1"], "sni": None, "tls_family": "chromium"}
    flows = write_flows(tmp_path / "t.flows", [make_flow("/", T0, metadata={"scrapeshield_tls": saved}),
                                               make_flow("/", T0 + 1)])

    decisions = replay_decisions([flows], policy_file(LIMITED))

    assert decisions[0].facts is not None and decisions[1].facts is not None
    assert decisions[0].facts.tls == tls_module.TlsFingerprint(**{**saved, "alpn_offered": ("h2", "http/1.1")})
    assert decisions[1].facts.tls is None


def test_recorded_responses_are_observed_only_for_requests_the_policy_lets_through(
        tmp_path: Path, policy_file: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, int, str, bytes | None]] = []

    async def observe_response(self: ShieldRuntime, ctx: Any, status: int, content_type: str,
                               body: bytes | None) -> None:
        seen.append((ctx.facts.path, status, content_type, body))

    monkeypatch.setattr(ShieldRuntime, "observe_response", observe_response, raising=False)
    flows = [make_flow(f"/user/{i}", T0 + i * 0.1, body=f"<p>{i}</p>".encode()) for i in range(4)]
    flows.append(make_flow("/missing", T0 + 1, status=404, content_type="text/plain", body=b"nope"))

    replay_decisions([write_flows(tmp_path / "r.flows", flows)], policy_file(LIMITED))

    assert seen == [("/user/0", 200, "text/html", b"<p>0</p>"), ("/user/1", 200, "text/html", b"<p>1</p>"),
                    ("/user/2", 200, "text/html", b"<p>2</p>"), ("/missing", 404, "text/plain", b"nope")]


# --- the report ---------------------------------------------------------------------------------

def test_the_report_names_when_each_client_was_first_refused(tmp_path: Path, policy_file: Any) -> None:
    flows = [make_flow("/static/site.css", T0, client="198.51.100.1")]
    flows += [make_flow(f"/user/{i}", T0 + 1 + i, client="198.51.100.1") for i in range(5)]
    flows += [make_flow("/user/1", T0 + 2.5, client="198.51.100.2")]

    report = replay_report([write_flows(tmp_path / "r.flows", flows)], policy_file(LIMITED))

    harvester = report.client("198.51.100.1")
    assert (harvester.requests, harvester.actions) == (6, {"allow": 4, "block": 2})
    first = harvester.first_refused
    assert first is not None
    assert (first.request, first.at, first.action, first.rule, first.path) == (5, 4.0, "block", "records", "/user/3")
    assert report.client("198.51.100.2").first_refused is None
    records = report.rule("records")
    assert (records.matched, records.decided) == (6, {"block": 2})
    assert report.rule("assets-free").decided == {"allow": 1}


def test_monitored_decisions_are_reported_but_let_through(tmp_path: Path, policy_file: Any) -> None:
    flows = write_flows(tmp_path / "m.flows", [make_flow(f"/user/{i}", T0 + i * 0.1) for i in range(5)])

    report = replay_report([flows], policy_file(LIMITED.replace("name: limited", "name: limited\nmonitor: true")))

    assert report.actions == {"allow": 5}
    assert report.rule("records").monitored == {"block": 2}


def test_table_output_lists_clients_and_rules(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli([str(capture("scrapy")), "--policy", "policies/default.yaml"], capsys)

    assert code == 0
    assert "127.0.0.5" in out and "Scrapy/" in out
    assert "records-per-ip" in out


# --- --expect -----------------------------------------------------------------------------------

EXPECT_OK = """\
expect:
  - client: 198.51.100.1
    first_block_by: 5
  - filter: {path: "/static/*"}
    all: allow
  - client: 198.51.100.2
    never: [block, drop]
"""


@pytest.fixture
def harvest(tmp_path: Path) -> Path:
    flows = [make_flow("/static/site.css", T0, client="198.51.100.1")]
    flows += [make_flow(f"/user/{i}", T0 + 1 + i * 0.1, client="198.51.100.1", user_agent="Scrapy/2.19")
              for i in range(8)]
    flows += [make_flow("/user/1", T0 + 2, client="198.51.100.2")]
    return write_flows(tmp_path / "harvest.flows", flows)


def test_expectations_that_hold_exit_0(harvest: Path, policy_file: Any, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    expect = tmp_path / "expect.yaml"
    expect.write_text(EXPECT_OK)

    code, out, _ = run_cli([str(harvest), "--policy", str(policy_file(LIMITED)), "--expect", str(expect)], capsys)

    assert code == 0, out
    assert "expectations: 3 passed, 0 failed" in out


def test_a_broken_expectation_exits_1_with_expected_got_and_the_requests(
        harvest: Path, policy_file: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expect = tmp_path / "expect.yaml"
    expect.write_text("""\
expect:
  - user_agent: Scrapy
    first_block_by: 2
  - client: 198.51.100.1
    never: [block]
  - client: 198.51.100.1
    first_block_after: 2
""")

    code, out, err = run_cli([str(harvest), "--policy", str(policy_file(LIMITED)), "--expect", str(expect),
                              "--format", "json"], capsys)

    assert code == 1
    results = json.loads(out)["expectations"]
    assert [r["ok"] for r in results] == [False, False, True]
    assert f"FAIL {expect}:2:5  user_agent: Scrapy, first_block_by: 2" in err
    assert "expected: first refusal (throttle/challenge/block/drop) at or before request 2 of 8" in err
    assert "got:      first refusal at request 4: GET /user/3 -> block by records" in err
    assert f"FAIL {expect}:4:5  client: 198.51.100.1, never: [block]" in err
    assert "got:      5 otherwise (block 5)" in err
    assert "request 5: GET /user/3 -> block" in err  # the client's 5th request: after /static/site.css
    assert "expectations: 1 passed, 2 failed" in err


def test_a_selector_that_selects_nothing_fails(harvest: Path, policy_file: Any, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    expect = tmp_path / "expect.yaml"
    expect.write_text("expect:\n  - client: 192.0.2.0/24\n    never: [block]\n")

    code, out, _ = run_cli([str(harvest), "--policy", str(policy_file(LIMITED)), "--expect", str(expect)], capsys)

    assert code == 1
    assert "no replayed request matches it" in out


def test_an_invalid_expectations_file_exits_2_with_every_error_at_file_line_col(
        harvest: Path, policy_file: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expect = tmp_path / "expect.yaml"
    expect.write_text("""\
expect:
  - client: not-an-ip
    never: [blok]
  - filter: {paht: "/x"}
    all: allow
  - user_agent: "("
  - first_block_by: zero
""")

    code, _, err = run_cli([str(harvest), "--policy", str(policy_file(LIMITED)), "--expect", str(expect)], capsys)

    assert code == 2
    lines = err.strip().splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [
        f"{expect}:2:13", f"{expect}:3:13", f"{expect}:4:14", f"{expect}:6:5", f"{expect}:6:17", f"{expect}:7:21"]
    assert "never must be one of allow, delay, throttle, challenge, block, drop, not 'blok'" in err
    assert "unknown field 'paht' (did you mean 'path'?)" in err
    assert "needs a check" in err


def test_an_invalid_policy_exits_2_with_file_line_col(harvest: Path, policy_file: Any,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    bad = policy_file("version: 1\nrules:\n  - name: x\n    limits: ['lots']\n")

    code, _, err = run_cli([str(harvest), "--policy", str(bad)], capsys)

    assert code == 2
    assert f"{bad}:4:14:" in err


def test_a_file_that_is_not_a_flow_file_exits_2_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.flows"
    junk.write_bytes(b"GET / HTTP/1.1\r\n\r\n")

    code, _, err = run_cli([str(junk), "--policy", "policies/default.yaml"], capsys)

    assert code == 2
    assert f"{junk}: not a flow file and no known access log format" in err


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_a_flow_file_cut_off_while_written_replays_what_came_before_the_cut(
        tmp_path: Path, policy_file: Any, capsys: pytest.CaptureFixture[str], compress: bool) -> None:
    # A `--save` whose process was killed mid-write, or a copy of a file still growing.
    whole = write_flows(tmp_path / "whole.flows", [make_flow(f"/user/{i}", T0 + i) for i in range(5)])
    data = whole.read_bytes()
    cut = tmp_path / ("cut.flows.gz" if compress else "cut.flows")
    cut.write_bytes(gzip.compress(data)[:-40] if compress else data[:len(data) - 100])  # inside the 5th flow

    code, out, err = run_cli([str(cut), "--policy", str(policy_file(LIMITED)), "--format", "json"], capsys)

    assert code == 0
    report = json.loads(out)
    assert report["requests"] == 4 and [c["file"] for c in report["cut_off"]] == [str(cut)]
    assert report["cut_off"][0]["flows_read"] == 4
    assert f"scrapeshield replay: {cut}: cut off after 4 flows (" in err


def test_a_flow_file_cut_inside_its_first_flow_is_an_error_naming_it(
        tmp_path: Path, policy_file: Any, capsys: pytest.CaptureFixture[str]) -> None:
    whole = write_flows(tmp_path / "whole.flows", [make_flow("/", T0)])
    cut = tmp_path / "cut.flows"
    cut.write_bytes(whole.read_bytes()[:-100])

    code, _, err = run_cli([str(cut), "--policy", str(policy_file(LIMITED)), "--log-format", "flows"], capsys)

    assert code == 2 and f"scrapeshield replay: {cut}: not a mitmproxy flow file" in err


def test_explain_takes_a_request_from_a_flow_file_cut_off_or_not(
        tmp_path: Path, policy_file: Any, capsys: pytest.CaptureFixture[str]) -> None:
    whole = write_flows(tmp_path / "whole.flows", [make_flow(f"/user/{i}", T0 + i) for i in range(5)])
    cut = tmp_path / "cut.flows"
    cut.write_bytes(whole.read_bytes()[:-100])  # inside the 5th flow
    policy = str(policy_file(LIMITED))

    for path in (whole, cut):
        assert main(["explain", "--flow", str(path), "--index", "4", "--policy", policy, "--format", "json"]) == 0
        assert json.loads(capsys.readouterr().out)["request"]["url"].endswith("/user/3")
    assert main(["explain", "--flow", str(cut), "--index", "5", "--policy", policy]) == 2
    assert f"{cut}: cut off after 4 flows (" in capsys.readouterr().err


def test_replay_from_a_running_event_loop_works(tmp_path: Path, policy_file: Any) -> None:
    import asyncio

    flows = write_flows(tmp_path / "l.flows", [make_flow("/", T0)])

    async def inside() -> int:
        return len(replay_decisions([flows], policy_file(LIMITED)))

    assert asyncio.run(inside()) == 1


def test_helpers_accept_paths_as_strings(tmp_path: Path, policy_file: Any) -> None:
    flows = write_flows(tmp_path / "s.flows", [make_flow("/", T0)])
    assert len(replay_decisions([os.fspath(flows)], os.fspath(policy_file(LIMITED)))) == 1


def test_a_stuffed_forwarding_chain_is_decided_like_any_request(tmp_path: Path, policy_file: Any) -> None:
    # given a policy behind a proxy, and one client whose requests each carry 500 forged hops
    # before the address the proxy appended
    behind_proxy = LIMITED.replace("rules:", "trusted_proxies: [203.0.113.0/24]\nrules:")
    flows = write_flows(tmp_path / "m.flows", [
        make_flow(f"/user/{i}", T0 + i,
                  headers=[("X-Forwarded-For", ", ".join([f"192.0.2.{i}"] * 500) + ", 198.51.100.60")])
        for i in range(4)
    ])
    # when replayed
    decisions = replay_decisions([flows], policy_file(behind_proxy))
    # then no fail mode is taken: the record limit holds for the real client
    assert [(d.rule, d.effective.value) for d in decisions] == [
        ("default", "allow"), ("default", "allow"), ("default", "allow"), ("records", "block")]

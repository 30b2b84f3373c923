"""`scrapeshield replay` on web-server access logs: every format read, streamed, reported and checked."""
from __future__ import annotations

import gzip
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from logfiles import combined_line, write_combined_log

from harness import PYTHON, REPO, subprocess_env
from scrapeshield.cli import main
from scrapeshield.replay import accesslog
from scrapeshield.replay.accesslog import LogReadStats, facts_from_record, iter_records, sniff

CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
NGINX_COMBINED = (
    f'203.0.113.7 - - [29/Nov/2026:10:00:00 +0100] "GET /products?page=2 HTTP/1.1" 200 512 '
    f'"https://shop.example/" "{CHROME}"\n'
    '203.0.113.8 - - [29/Nov/2026:10:00:01 +0100] "POST /api/cart HTTP/2.0" 404 12 "-" "say \\x22hi\\x22"\n'
)
NGINX_JSON = (
    '{"time_iso8601":"2026-11-29T10:00:00+00:00","remote_addr":"203.0.113.9","request_method":"GET",'
    '"request_uri":"/api/users/1?x=1","status":"200","http_user_agent":"curl/8.5.0","http_referer":"",'
    '"host":"shop.example"}\n'
    '{"msec":"1795946401.250","remote_addr":"203.0.113.9","request":"GET /api/users/2 HTTP/1.1","status":301,'
    '"http_user_agent":"curl/8.5.0"}\n'
)
CADDY = json.dumps({
    "level": "info", "ts": 1795946400.5, "logger": "http.log.access", "msg": "handled request",
    "request": {"remote_ip": "203.0.113.10", "remote_port": "5555", "client_ip": "203.0.113.10",
                "proto": "HTTP/2.0", "method": "GET", "host": "shop.example", "uri": "/products?a=1",
                "headers": {"User-Agent": [CHROME], "Accept": ["text/html"], "Accept-Language": ["en"]},
                "tls": {"resumed": False, "version": 772}},
    "status": 200, "size": 10}) + "\n"
ALB = (
    'https 2026-11-29T10:00:00.186641Z app/my-lb/50dc6c495c0c9188 203.0.113.11:2817 10.0.0.1:80 0.000 0.001 0.000 '
    '200 200 34 366 "GET https://shop.example:443/api/users/5?x=1 HTTP/1.1" "python-requests/2.31" '
    'ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 arn:aws:elasticloadbalancing:us-east-2:1:targetgroup/t/7 '
    '"Root=1-58337262-36d228ad5d99923122bbe354" "-" "-" 0 2026-11-29T10:00:00.186641Z "forward" "-" "-" '
    '"10.0.0.1:80" "200" "-" "-"\n'
)
CLOUDFRONT = (
    "#Version: 1.0\n"
    "#Fields: date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) "
    "cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id x-host-header cs-protocol\n"
    "2026-11-29\t10:00:00\tFRA2\t2390\t203.0.113.12\tGET\td1.cloudfront.net\t/index.html\t200\t"
    "https://shop.example/\tMozilla/5.0%20(Windows%20NT%2010.0)\tpage=2\t-\tHit\tabc\tshop.example\thttps\n"
)

ALLOW_ALL = "version: 1\nname: all\nrules: []\n"
RECORDS = """\
version: 1
name: records
rules:
  - name: records
    match: {path: ["/api/users/*"]}
    key: ip
    limits: ["10/m burst 5"]
    exceed: block
"""


def records_of(tmp_path: Path, name: str, text: str, fmt: str | None = None) -> tuple[str, list[Any]]:
    path = tmp_path / name
    path.write_text(text)
    fmt = fmt or sniff(str(path))
    return fmt, list(iter_records(str(path), fmt, LogReadStats(str(path), fmt)))


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["replay", *args])
    out, err = capsys.readouterr()
    return code, out, err


# --- reading each format -----------------------------------------------------------------------

def test_nginx_combined_lines_give_client_time_method_target_status_ua_and_referer(tmp_path: Path) -> None:
    fmt, recs = records_of(tmp_path, "access.log", NGINX_COMBINED)
    assert fmt == "combined"
    first, second = recs
    assert (first.client, first.method, first.target, first.status) == ("203.0.113.7", "GET", "/products?page=2", 200)
    assert first.time == 1795942800.0  # 10:00 at +0100 is 09:00 UTC
    assert (first.user_agent, first.referer) == (CHROME, "https://shop.example/")
    assert (second.method, second.status, second.referer, second.user_agent) == ("POST", 404, "", 'say "hi"')


def test_nginx_json_lines_take_the_common_variable_names(tmp_path: Path) -> None:
    fmt, recs = records_of(tmp_path, "access.json", NGINX_JSON)
    assert fmt == "json"
    assert [(r.client, r.method, r.target, r.status) for r in recs] == [
        ("203.0.113.9", "GET", "/api/users/1?x=1", 200), ("203.0.113.9", "GET", "/api/users/2", 301)]
    assert recs[0].host == "shop.example"
    assert recs[1].time == pytest.approx(1795946401.25)


def test_caddy_json_keeps_every_request_header(tmp_path: Path) -> None:
    fmt, (rec,) = records_of(tmp_path, "caddy.json", CADDY)
    assert fmt == "json"
    assert (rec.client, rec.host, rec.target, rec.scheme) == ("203.0.113.10", "shop.example", "/products?a=1", "https")
    facts = facts_from_record(rec)
    assert facts.header_map["accept-language"] == "en"
    assert facts.user_agent == CHROME


def test_alb_lines_split_the_absolute_request_target(tmp_path: Path) -> None:
    fmt, (rec,) = records_of(tmp_path, "alb.log", ALB)
    assert fmt == "alb"
    assert (rec.client, rec.host, rec.target, rec.status, rec.scheme) == (
        "203.0.113.11", "shop.example", "/api/users/5?x=1", 200, "https")
    assert rec.user_agent == "python-requests/2.31"


def test_cloudfront_columns_come_from_the_fields_header(tmp_path: Path) -> None:
    fmt, (rec,) = records_of(tmp_path, "cf.log", CLOUDFRONT)
    assert fmt == "cloudfront"
    assert (rec.client, rec.host, rec.target, rec.status) == ("203.0.113.12", "shop.example", "/index.html?page=2", 200)
    assert rec.user_agent == "Mozilla/5.0 (Windows NT 10.0)"
    assert rec.referer == "https://shop.example/"


def test_gzip_compressed_logs_are_read_through(tmp_path: Path) -> None:
    path = tmp_path / "access.log.gz"
    path.write_bytes(gzip.compress(NGINX_COMBINED.encode()))
    assert sniff(str(path)) == "combined"
    assert len(list(iter_records(str(path), "combined", LogReadStats(str(path), "combined")))) == 2


def test_a_logged_request_lacks_what_the_log_could_not_carry(tmp_path: Path) -> None:
    _, (rec,) = records_of(tmp_path, "alb.log", ALB)
    facts = facts_from_record(rec)
    assert facts.tls is None and not facts.is_tls  # no ClientHello: TLS signals stay silent
    assert [name for name, _ in facts.headers] == ["Host", "User-Agent"]


# --- the replay ------------------------------------------------------------------------------------

def test_a_combined_log_replays_to_the_same_report_shape_with_what_it_cannot_carry(
        tmp_path: Path, policy_file: Any, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "access.log"
    log.write_text("".join(combined_line(i, clients=2) for i in range(60)) + "not a log line\n")
    code, out, _ = run_cli(capsys, str(log), "--policy", str(policy_file(RECORDS)), "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert report["requests"] == 60
    assert {c["client"] for c in report["clients"]} == {"10.0.0.0", "10.0.0.1"}
    assert report["logs"] == [{"file": str(log), "format": "combined", "lines": 61, "requests": 60, "skipped": 1,
                               "first_skipped": {"line": 61, "text": "not a log line"}}]
    assert any("TLS fingerprint" in m for m in report["log_limits"]["missing"])
    assert any("header order" in m for m in report["log_limits"]["missing"])
    records = next(r for r in report["rules"] if r["rule"] == "records")
    assert records["decided"]["block"] > 0  # 30 requests per client in 0.6 s: over 10/m burst 5


def test_expectations_are_checked_on_a_streamed_log(tmp_path: Path, policy_file: Any,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "access.log"
    log.write_text("".join(combined_line(i, clients=1) for i in range(40)))
    expect = tmp_path / "expect.yaml"
    expect.write_text("expect:\n  - client: 10.0.0.0\n    first_block_by: 7\n"
                      "  - client: 10.0.0.0\n    never: [block]\n")
    code, _, err = run_cli(capsys, str(log), "--policy", str(policy_file(RECORDS)), "--expect", str(expect),
                           "--format", "json")
    assert code == 1  # the first holds (blocked at request 7), the second cannot
    assert "FAIL" in err and "never: [block]" in err and "expectations: 1 passed, 1 failed" in err


def test_the_table_names_the_log_and_its_limits(tmp_path: Path, policy_file: Any,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "cf.log"
    log.write_text(CLOUDFRONT)
    code, out, _ = run_cli(capsys, str(log), "--policy", str(policy_file(ALLOW_ALL)))
    assert code == 0
    assert "cloudfront, 3 lines" in out
    assert "TLS fingerprint" in out and "203.0.113.12" in out


def test_an_unknown_format_is_one_line_naming_the_file(tmp_path: Path, policy_file: Any,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "mystery.txt"
    log.write_text("hello world\nthis is not a log\n")
    code, _, err = run_cli(capsys, str(log), "--policy", str(policy_file(ALLOW_ALL)))
    assert code == 2
    assert err.startswith(f"scrapeshield replay: {log}: not a flow file and no known access log format")


# Lines a format cannot read, each of which ended a replay with a traceback before (found with the
# `accesslog` fuzz target): a field of the wrong type or value, or a time that is no time.
_UNREADABLE = [
    ("combined", '1.2.3.4 - - [01/Foo/2026:00:00:00 +0000] "GET /x HTTP/1.1" 200 0 "-" "curl/8"'),
    ("combined", '1.2.3.4 - - [99/Nov/2026:77:00:00 +0000] "GET /x HTTP/1.1" 200 0 "-" "curl/8"'),
    ("json", '{"ts": "abc", "request": {"client_ip": "1.2.3.4"}}'),
    ("json", '{"ts": {}, "request": {"client_ip": "1.2.3.4"}}'),
    ("json", '{"ts": "1e999", "request": {"client_ip": "1.2.3.4"}}'),
    ("json", '{"remote_addr": "1.2.3.4", "time": 1795946400, "status": [1], "request": "GET /"}'),
    ("json", '{"remote_addr": "1.2.3.4", "time": 1795946400, "status": 1e400, "request": "GET /"}'),
    ("json", '{"remote_addr": "1.2.3.4", "time": NaN, "request": "GET /"}'),
    ("json", '{"remote_addr": "1.2.3.4", "time": Infinity, "request": "GET /"}'),
]


@pytest.mark.parametrize(("fmt", "bad"), _UNREADABLE)
def test_a_line_the_format_cannot_read_is_skipped_and_counted_not_the_end_of_the_replay(
        tmp_path: Path, policy_file: Any, capsys: pytest.CaptureFixture[str], fmt: str, bad: str) -> None:
    good = NGINX_COMBINED if fmt == "combined" else NGINX_JSON
    log = tmp_path / "x.log"
    log.write_text(good + bad + "\n" + good)
    code, out, _ = run_cli(capsys, str(log), "--policy", str(policy_file(ALLOW_ALL)), "--format", "json")
    report = json.loads(out)
    assert code == 0 and report["requests"] == 4
    assert report["logs"][0]["skipped"] == 1 and report["logs"][0]["first_skipped"] == {"line": 3, "text": bad}


def test_a_compressed_log_cut_off_while_written_replays_what_came_before_the_cut(
        tmp_path: Path, policy_file: Any, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "access.log.gz"
    log.write_bytes(gzip.compress("".join(combined_line(i, clients=3) for i in range(2000)).encode())[:-200])

    code, out, err = run_cli(capsys, str(log), "--policy", str(policy_file(ALLOW_ALL)), "--format", "json")

    assert code == 0
    stats = json.loads(out)["logs"][0]
    assert 1000 < stats["requests"] < 2000 and "ended before the end-of-stream marker" in stats["cut_off"]
    assert f"scrapeshield replay: {log}: cut off after line {stats['lines']} (" in err


def test_the_format_can_be_named(tmp_path: Path, policy_file: Any, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "x.log"
    log.write_text(ALB)
    code, out, _ = run_cli(capsys, str(log), "--policy", str(policy_file(ALLOW_ALL)), "--log-format", "alb",
                           "--format", "json")
    assert code == 0 and json.loads(out)["logs"][0]["format"] == "alb"


def test_a_progress_bar_goes_to_stderr_and_leaves_the_report_alone(tmp_path: Path, policy_file: Any,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "access.log"
    log.write_text("".join(combined_line(i, clients=3) for i in range(50)))
    code, out, err = run_cli(capsys, str(log), "--policy", str(policy_file(ALLOW_ALL)), "--format", "json",
                             "--progress", "on")
    assert code == 0 and json.loads(out)["requests"] == 50
    kb = f"{log.stat().st_size / 1000:.1f}"
    assert "access.log" in err and f"{kb}/{kb} kB" in err  # the bar reached the end of the file


# The line formats as they were written before their quoted fields were unrolled
# (`"((?:[^"\\]|\\.)*)"`, one alternation a character): the unrolled ones must match the same.
_QUOTED_AS_BEFORE = r'"((?:[^"\\]|\\.)*)"'
_COMBINED_BEFORE = re.compile(
    r'(\S+) \S+ \S+ \[([^\]]+)\] ' + _QUOTED_AS_BEFORE + r' (\d{3}|-) \S+(?: ' + _QUOTED_AS_BEFORE + " "
    + _QUOTED_AS_BEFORE + ")?")
_ALB_BEFORE = re.compile(r'(\S+) (\S+) \S+ (\S+) \S+ \S+ \S+ \S+ (\S+) \S+ \S+ \S+ ' + _QUOTED_AS_BEFORE + " "
                         + _QUOTED_AS_BEFORE)
_FIELD = st.text(alphabet='ab "\\-x/?=', max_size=12)


@settings(max_examples=400, deadline=None)
@given(request=_FIELD, referer=_FIELD, ua=_FIELD, status=st.sampled_from(["200", "-", "20", "404x"]),
       tail=st.sampled_from(["", " ", ' "', " extra"]))
def test_the_unrolled_line_formats_match_exactly_what_the_alternations_did(
        request: str, referer: str, ua: str, status: str, tail: str) -> None:
    combined = f'1.2.3.4 - - [29/Nov/2026:10:00:00 +0000] "{request}" {status} 5 "{referer}" "{ua}"{tail}'
    for line in (combined, combined.partition(f" {status} 5 ")[0] + f" {status} 5"):
        before, after = _COMBINED_BEFORE.match(line), accesslog._COMBINED.match(line)
        assert (before and before.groups()) == (after and after.groups())
    alb = f'h2 2026-11-29T10:00:00Z lb 1.2.3.4:5 - 0 0 0 200 200 1 2 "{request}" "{ua}"{tail}'
    before, after = _ALB_BEFORE.match(alb), accesslog._ALB.match(alb)
    assert (before and before.groups()) == (after and after.groups())


@pytest.mark.e2e
def test_a_one_gigabyte_nginx_log_replays_in_bounded_memory(tmp_path: Path) -> None:
    # Long lines (tracking parameters, ~7.8 KB: still under nginx's 8 KB request-line buffer) keep
    # the line count -- and the test's run time -- down; the memory bound is about bytes and
    # clients, which are real: 1 GiB, 5000 addresses.
    log = tmp_path / "access.log"
    lines = write_combined_log(log, size=1 << 30, clients=5000, pad=7600)
    assert log.stat().st_size >= 1 << 30
    # The replay reports its own peak RSS: VmHWM starts afresh at exec, whereas ru_maxrss would
    # carry over this (large) pytest process's high-water mark from the fork.
    proc = subprocess.run(
        [PYTHON, "-c", _PEAK_RSS_MAIN, "replay", str(log), "--policy", str(REPO / "policies" / "default.yaml"),
         "--format", "json", "--progress", "off"],
        capture_output=True, text=True, env=subprocess_env(), timeout=900, check=False)
    log.unlink()
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["requests"] == lines
    assert len(report["clients"]) == 5000
    peak_mib = int(proc.stderr.strip().splitlines()[-1].removeprefix("peak_rss_kib=")) // 1024
    assert peak_mib < 200, f"peak RSS {peak_mib} MiB for a 1 GiB log"


_PEAK_RSS_MAIN = """
import sys
from scrapeshield.cli import main
code = main(sys.argv[1:])
with open("/proc/self/status") as status:
    peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
print(f"peak_rss_kib={peak}", file=sys.stderr)
sys.exit(code)
"""

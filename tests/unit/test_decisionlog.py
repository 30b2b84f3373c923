"""The decision log: one JSON line per decision that did something, safe to keep."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from scrapeshield.context import DecisionContext
from scrapeshield.decision import ALLOW_DEFAULT, Action, Decision, RateInfo
from scrapeshield.decisionlog import DecisionLog
from scrapeshield.facts import RequestFacts

CLIENT = "203.0.113.7"
NOW = 1_700_000_000.1234
RATE = RateInfo("per-ip/0", 10, 1.0, 20, 0, 2.1, 0.0999)


def facts(client: str = CLIENT) -> RequestFacts:
    return RequestFacts(peer_ip=client, method="GET", host="shop.example", path="/user/42")


def throttle(key: str = f"ip={CLIENT}") -> Decision:
    return Decision(Action.THROTTLE, "per-ip", "over 10/s burst 20", key=key, rate=RATE)


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(ln) for ln in path.read_text().splitlines()]


@pytest.fixture
def sink(tmp_path: Path) -> Path:
    return tmp_path / "decisions.jsonl"


def test_an_allowed_request_writes_nothing(sink: Path) -> None:
    log = DecisionLog(str(sink))
    log.record(facts(), ALLOW_DEFAULT, NOW)
    log.record(facts(), Decision(Action.ALLOW, "robots", "allow rule matched"), NOW)
    log.close()
    assert sink.read_text() == ""


def test_a_refusal_writes_one_json_line_with_what_was_decided_and_why(sink: Path) -> None:
    # given a decision log on a file
    log = DecisionLog(str(sink))
    # when a throttle decision is recorded
    log.record(facts(), throttle(), NOW)
    log.close()
    # then one line holds time, client, key, rule, action, reason, the request and the bucket state
    (line,) = lines(sink)
    fp = line.pop("fp")
    assert fp["ua_class"] and "httpsig" in fp  # who the client looked like (fingerprint fields)
    assert line == {
        "time": "2023-11-14T22:13:20.123Z", "request_id": "", "client": CLIENT, "key": f"ip={CLIENT}",
        "rule": "per-ip", "action": "throttle", "enforced": True, "reason": "over 10/s burst 20", "status": None,
        "method": "GET", "host": "shop.example", "path": "/user/42", "user_agent": "", "signals": [],
        "bucket": {"name": "per-ip/0", "quota": 10, "window": 1.0, "burst": 20, "remaining": 0, "retry_after": 0.1},
    }


def test_a_line_is_compact_json_ending_in_a_newline(sink: Path) -> None:
    log = DecisionLog(str(sink))
    log.record(facts(), throttle(), NOW)
    log.close()
    text = sink.read_text()
    assert text == json.dumps(json.loads(text), separators=(",", ":")) + "\n"


def test_a_monitored_decision_is_logged_as_not_enforced(sink: Path) -> None:
    log = DecisionLog(str(sink))
    log.record(facts(), Decision(Action.BLOCK, "deny", "rule deny matched", enforced=False), NOW)
    log.close()
    (line,) = lines(sink)
    assert (line["action"], line["enforced"]) == ("block", False)


def test_each_shadowed_decision_gets_its_own_line(sink: Path) -> None:
    # given an allowed request that two monitored rules would have refused
    shadows = (Decision(Action.BLOCK, "try-a", "rule try-a matched", enforced=False),
               Decision(Action.LOG, "audit", "log rule matched", enforced=False))
    decision = Decision(Action.ALLOW, "default", "no rule matched", shadowed=shadows)
    log = DecisionLog(str(sink))
    # when it is recorded
    log.record(facts(), decision, NOW)
    log.close()
    # then only the shadows are written, one line each
    assert [(ln["rule"], ln["action"], ln["enforced"]) for ln in lines(sink)] == [
        ("try-a", "block", False), ("audit", "log", False)]


def test_an_error_decision_is_logged_even_when_it_fails_open(sink: Path) -> None:
    log = DecisionLog(str(sink))
    log.record(facts(), Decision(Action.ALLOW, "error", "store unavailable: timeout"), NOW)
    log.close()
    (line,) = lines(sink)
    assert (line["rule"], line["action"], line["reason"]) == ("error", "allow", "store unavailable: timeout")


def test_a_score_decision_carries_the_score(sink: Path) -> None:
    log = DecisionLog(str(sink))
    log.record(facts(), Decision(Action.CHALLENGE, "score:abuse", "score 12.3 >= 10", score=12.345), NOW)
    log.close()
    (line,) = lines(sink)
    assert line["score"] == 12.35 and "bucket" not in line


def test_extra_fields_are_added_to_the_line(sink: Path) -> None:
    log = DecisionLog(str(sink))
    log.record(facts(), throttle(), NOW, extra={"shadow": {"rule": "x", "action": "allow"}})
    log.close()
    assert lines(sink)[0]["shadow"] == {"rule": "x", "action": "allow"}


def test_a_very_long_path_is_cut(sink: Path) -> None:
    log = DecisionLog(str(sink))
    long = RequestFacts(peer_ip=CLIENT, path="/" + "a" * 5000)
    log.record(long, throttle(), NOW)
    log.close()
    assert len(str(lines(sink)[0]["path"])) == 512


def test_a_path_spelled_otherwise_also_logs_the_raw_spelling(sink: Path) -> None:
    log = DecisionLog(str(sink))
    log.record(RequestFacts(peer_ip=CLIENT, path="/%75ser//42"), throttle(), NOW)
    log.record(facts(), throttle(), NOW)
    log.close()
    spelled, canonical = lines(sink)
    assert spelled["path"] == "/user/42" and spelled["raw_path"] == "/%75ser//42"
    assert "raw_path" not in canonical


def test_a_broken_sink_never_raises(sink: Path) -> None:
    log = DecisionLog(str(sink))
    log.close()
    log.record(facts(), throttle(), NOW)  # writing to a closed file: swallowed


# -- hashed addresses ---------------------------------------------------------------------------

def test_hashed_ips_replace_client_and_key_with_a_keyed_hash(sink: Path) -> None:
    log = DecisionLog(str(sink), hash_ips=True, hash_key=b"k1")
    log.record(facts(), throttle(), NOW)
    log.close()
    text = sink.read_text()
    (line,) = lines(sink)
    assert CLIENT not in text
    assert str(line["client"]).startswith("h:") and len(str(line["client"])) == 18
    assert str(line["key"]).startswith("h:")


def test_a_hashed_ip_is_stable_for_the_same_key(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for path in (a, b):
        log = DecisionLog(str(path), hash_ips=True, hash_key=b"same key")
        log.record(facts(), throttle(), NOW)
        log.record(facts(), throttle(), NOW + 1)
        log.close()
    clients = {ln["client"] for ln in lines(a) + lines(b)}
    assert len(clients) == 1


def test_different_hash_keys_give_different_hashes(tmp_path: Path) -> None:
    got = []
    for i, key in enumerate((b"key one", b"key two")):
        path = tmp_path / f"{i}.jsonl"
        log = DecisionLog(str(path), hash_ips=True, hash_key=key)
        log.record(facts(), throttle(), NOW)
        log.close()
        got.append(lines(path)[0]["client"])
    assert got[0] != got[1]


def test_different_clients_hash_differently(sink: Path) -> None:
    log = DecisionLog(str(sink), hash_ips=True, hash_key=b"k")
    log.record(facts("192.0.2.1"), throttle("ip=192.0.2.1"), NOW)
    log.record(facts("192.0.2.2"), throttle("ip=192.0.2.2"), NOW)
    log.close()
    first, second = lines(sink)
    assert first["client"] != second["client"] and first["key"] != second["key"]


def test_the_hash_key_can_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRAPESHIELD_LOG_KEY", "from-env")
    from_env, explicit = tmp_path / "env.jsonl", tmp_path / "explicit.jsonl"
    for path, key in ((from_env, None), (explicit, b"from-env")):
        log = DecisionLog(str(path), hash_ips=True, hash_key=key)
        log.record(facts(), throttle(), NOW)
        log.close()
    assert lines(from_env)[0]["client"] == lines(explicit)[0]["client"]


def test_without_hash_ips_addresses_are_logged_as_they_are(sink: Path) -> None:
    log = DecisionLog(str(sink), hash_ips=False, hash_key=b"k")
    log.record(facts(), throttle(), NOW)
    log.close()
    assert lines(sink)[0]["client"] == CLIENT


def test_a_line_carries_the_request_id_status_user_agent_and_signals(sink: Path) -> None:
    # given a log that knows the answer status, and a request with an id and a browser UA
    log = DecisionLog(str(sink))
    log.answer_status = lambda d: 429
    request = RequestFacts(peer_ip=CLIENT, method="GET", host="shop.example", path="/user/42", scheme="https",
                           headers=[("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
                                     "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36")], request_id="abc123")
    context = DecisionContext(request)
    context.detector_signals = {"sequential_ids": 0.8, "probe_rate": 0.0}
    # when a throttle is recorded
    log.record(request, throttle(), NOW, context=context)
    log.close()
    # then the line names the id, the status, the UA, and every signal that fired
    (line,) = lines(sink)
    assert line["request_id"] == "abc123" and line["status"] == 429
    assert str(line["user_agent"]).startswith("Mozilla/5.0")
    assert line["signals"] == ["chromium_without_client_hints", "sequential_ids"]


def test_reopen_writes_to_a_new_file_after_logrotate_moved_the_old_one(sink: Path) -> None:
    log = DecisionLog(str(sink))
    log.record(facts(), throttle(), NOW)
    rotated = sink.with_suffix(".1")
    sink.rename(rotated)  # what logrotate does before it sends SIGUSR1
    log.reopen()
    log.record(facts(), throttle(), NOW + 1)
    log.close()
    assert len(lines(rotated)) == 1 and len(lines(sink)) == 1


def test_operator_changes_are_always_written(sink: Path) -> None:
    log = DecisionLog(str(sink), hash_ips=True, hash_key=b"k")
    log.operator("ban", NOW, key=f"ip={CLIENT}", until=NOW + 60, reason="scraper", by="control-api")
    log.close()
    (line,) = lines(sink)
    assert line["event"] == "ban" and line["reason"] == "scraper" and line["time"] == "2023-11-14T22:13:20.123Z"
    assert line["key"] != f"ip={CLIENT}"  # hashed like every other key when hash_ips is on

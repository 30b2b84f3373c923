"""Property tests: hostile input to every parser of client or operator input. The properties are
stated once, in fuzz/targets.py, and shared with the atheris harness and the corpus replay."""
from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import targets
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from scrapeshield.challenge.tokens import b64e, seal
from scrapeshield.extensions import standard_registry
from scrapeshield.policy.compiler import RULE_FIELDS, TOP_FIELDS
from scrapeshield.session import cookie as session_cookie

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = [ROOT / "policies" / "default.yaml", *sorted((ROOT / "tests" / "policies" / "good").glob("*.yaml"))]

# -- the policy compiler ------------------------------------------------------------------------
REGISTRY = standard_registry()
SECTIONS = tuple(REGISTRY.sections)  # detectors, goodbots, sessions, ...: top-level fields of their packages
_words = st.sampled_from([*TOP_FIELDS, *SECTIONS, *RULE_FIELDS, *REGISTRY.conditions, *REGISTRY.key_parts,
                          "at", "weights", "thresholds", "version", "file", "ipv4", "ipv6", "max_keys", "every",
                          "ban", "action", "block"])
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**12), st.floats(allow_nan=True),
    st.sampled_from(["10/s", "2/s burst 10", "1/m burst 0", "0/s", "30s", "1h", "-1", "ip", "prefix+ua_class",
                     "header:x-api-key", "cookie:sid", "/user/*", "^/a(b|c)/", "[", "(?i)bot", "10.0.0.0/8",
                     "@list", "::/0", "open", "closed", "allow", "block", "challenge", "throttle", "delay"]),
    st.text(max_size=20),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(_words, st.text(max_size=8)), inner, max_size=4)),
    max_leaves=24,
)
_rules = st.lists(st.dictionaries(st.sampled_from(RULE_FIELDS), _values, max_size=6), max_size=4)
_documents = st.fixed_dictionaries(
    {"version": st.one_of(st.just(1), _scalars)},
    optional={"rules": _rules, **{f: _values for f in (*TOP_FIELDS, *SECTIONS) if f not in ("version", "rules")}},
)


@given(_documents)
def test_a_random_policy_compiles_or_says_where_it_is_wrong(document: dict[str, object]) -> None:
    targets.check_policy(yaml.safe_dump(document, allow_unicode=True).encode())


@st.composite
def _mutated_policy(draw: st.DrawFn) -> bytes:
    lines = draw(st.sampled_from(SHIPPED)).read_text().splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "insert", "indent", "dedent", "replace"]))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "insert":
            pos = draw(st.integers(0, len(lines[i])))
            noise = draw(st.text(alphabet="&*:-[]{},'\"#|>!%@ \t\nab1", max_size=6))
            lines[i] = lines[i][:pos] + noise + lines[i][pos:]
        elif op == "indent":
            lines[i] = "  " + lines[i]
        elif op == "dedent":
            lines[i] = lines[i][2:] if lines[i].startswith("  ") else lines[i]
        else:
            words = lines[i].split(" ")
            k = draw(st.integers(0, len(words) - 1))
            words[k] = str(draw(_scalars))
            lines[i] = " ".join(words)
    return "".join(lines).encode("utf-8", "surrogatepass")


@given(_mutated_policy())
def test_a_mutated_shipped_policy_compiles_or_says_where_it_is_wrong(data: bytes) -> None:
    targets.check_policy(data)


def test_every_shipped_policy_compiles() -> None:
    for path in SHIPPED:
        targets.check_policy(path.read_bytes())


# -- the forwarding chain -----------------------------------------------------------------------
_addresses = st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str),
                       st.sampled_from(["10.0.0.5", "10.1.2.3", "2001:db8:ffff::9", "::ffff:192.0.2.1"]))
_hops = st.one_of(
    _addresses,
    _addresses.map(lambda a: f"[{a}]:4711" if ":" in a else f"{a}:4711"),
    st.sampled_from(["unknown", "_hidden", "", " ", "garbage", "1.2.3", "[::1", "x" * 100]),
    st.text(max_size=12),
)
_chains = st.lists(st.lists(_hops, max_size=8).map(", ".join), max_size=4)
_forwarded = st.lists(st.lists(st.one_of(_hops.map(lambda h: f"for={h}"), _hops.map(lambda h: f'for="{h}";proto=https'),
                                         st.text(max_size=10)), max_size=6).map(", ".join), max_size=3)
_peers = st.one_of(st.sampled_from(["10.0.0.1", "2001:db8:ffff::1", "198.51.100.7", "127.0.0.1", "garbage", ""]),
                   _addresses)


@given(_peers, _chains, _forwarded)
@example("10.0.0.1", [", ".join(["6.6.6.6"] * 70) + ", 198.51.100.60"], [])
@example("10.0.0.1", ["x" * 9000 + ", 198.51.100.60"], [])
@example("10.0.0.1", [], ["for=" + "1" * 9000 + ", for=198.51.100.60"])
@example("10.0.0.1", [", ".join(["10.0.0.9"] * 200)], [])
def test_any_forwarding_chain_resolves_to_an_address(peer: str, xff: list[str], forwarded: list[str]) -> None:
    targets.check_forwarding(peer, xff, forwarded)


@given(st.lists(st.text(max_size=30), max_size=100),
       st.ip_addresses(v=4).filter(lambda ip: not targets.TRUSTED.contains(ip)))
def test_whatever_a_client_writes_left_of_its_address_it_is_still_itself(stuffing: list[str],
                                                                          client: ipaddress.IPv4Address) -> None:
    # a trusted proxy appends the address it saw; the client wrote everything before it
    chain = ", ".join(stuffing) + f", {client}"
    assert targets.resolve_client_ip("10.0.0.1", [chain], [], targets.TRUSTED) == str(client)


# -- paths ----------------------------------------------------------------------------------------
_path_text = st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from(["/", "//", ".", "..", "%2e", "%2E", "%2f", "%2F", "%75", "%25", "%", "%2", "user",
                              "7", "~", "%7e", "%zz", ";x=1", "\\", "é"]), max_size=20).map("".join),
)


@given(_path_text)
@example("/%2%46")
@example("/" + "../" * 1000 + "user/7")
def test_canonical_paths_are_total_and_idempotent(raw: str) -> None:
    targets.check_path(raw)


# -- cookies --------------------------------------------------------------------------------------
_cookie_text = st.one_of(
    st.text(max_size=200),
    st.lists(st.tuples(st.text(max_size=8), st.text(max_size=12)), max_size=30).map(
        lambda pairs: "; ".join(f"{k}={v}" for k, v in pairs)),
)


@given(_cookie_text)
@example("; ".join(f"c{i}=v" for i in range(5000)))
@example('a="' + "\\" * 20000 + '"')
def test_cookie_headers_parse_within_bounds(raw: str) -> None:
    targets.check_cookie_header(raw)


# -- tokens ---------------------------------------------------------------------------------------
_genuine = [seal(targets.KEYS, kind, [1, "x", [2]]) for kind in ("clearance", "pow", "wait")]


@st.composite
def _tampered(draw: st.DrawFn) -> str:
    token = list(draw(st.sampled_from(_genuine)))
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(token) - 1))
        token[i] = draw(st.sampled_from("ABCDEFGHabcdefgh0123456789-_.=+/ "))
    return "".join(token)


@given(st.one_of(_tampered(), st.text(alphabet="ABCabc019-_.=+/ \x00é", max_size=80), st.text(max_size=50)))
@example("A" * 5000)
def test_any_token_text_unseals_to_fields_or_a_reason(text: str) -> None:
    targets.check_token(text)


_fields = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2, 1 << 41), st.floats(allow_nan=False),
                                 st.text(alphabet="abcXYZ019-_", max_size=24)),
                       lambda inner: st.lists(inner, max_size=3), max_leaves=6)


_minted = session_cookie.mint("192.0.2.0/24", "t13d|browser", 1e9)
_SESSION_FIELDS = [_minted.id, _minted.issued, _minted.net, _minted.stack, _minted.returned]


@st.composite
def _session_payloads(draw: st.DrawFn) -> list[object]:
    """A genuine session's fields with some replaced, cut or added; or any list."""
    if draw(st.booleans()):
        return draw(st.lists(_fields, max_size=7))
    fields: list[object] = list(_SESSION_FIELDS)
    fields[draw(st.integers(0, len(fields) - 1))] = draw(_fields)
    shape = draw(st.sampled_from(["as is", "as is", "cut", "longer"]))
    return fields[:-1] if shape == "cut" else [*fields, draw(_fields)] if shape == "longer" else fields


@given(_session_payloads())
@example([_minted.id, None, _minted.net, _minted.stack, 0])
@example([_minted.id, _minted.issued, _minted.net, _minted.stack, "1"])
@example([5, _minted.issued, _minted.net, [_minted.stack], 0])
def test_a_genuine_session_cookie_of_any_shape_decodes_to_a_session_or_malformed(fields: list[object]) -> None:
    # A payload the MAC vouches for but of another shape: an older version's cookie, a bug's.
    targets.check_session_cookie(seal(targets.KEYS, session_cookie.KIND, fields))


@given(st.binary(max_size=64))
def test_strict_base64_round_trips(data: bytes) -> None:
    targets.check_token(b64e(data))


# -- TLS ClientHellos -------------------------------------------------------------------------------
_HELLOS = [p.read_bytes() for p in sorted((targets.CORPUS / "tls").iterdir())]


@st.composite
def _hello_mutations(draw: st.DrawFn) -> bytes:
    """A stored ClientHello with a few bytes changed, cut, inserted or doubled: lengths that lie."""
    data = bytearray(draw(st.sampled_from(_HELLOS)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        kind = draw(st.sampled_from(["flip", "cut", "insert", "double"]))
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:at + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            data[at:at] = data[at:at + draw(st.integers(1, 64))]
    return bytes(data)


@given(st.one_of(_hello_mutations(), st.binary(max_size=600)))
def test_any_client_hello_fingerprints_or_raises_value_error(body: bytes) -> None:
    targets.check_client_hello(body)


# -- access logs -----------------------------------------------------------------------------------
_json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30),
              st.sampled_from(["1795946400", "1795946400.5", "1e999", "-", "", "29/Nov/2026:10:00:00 +0100",
                               "2026-11-29T10:00:00Z", "99/Foo/2026:77:00:00 +9999", "GET /x HTTP/1.1"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8)
_json_keys = st.sampled_from(["ts", "time", "msec", "time_iso8601", "remote_addr", "client_ip", "status", "request",
                              "request_uri", "request_method", "http_user_agent", "host", "scheme", "uri", "headers",
                              "method", "tls", "remote_ip"])
_json_objects = st.dictionaries(_json_keys, _json_values, max_size=6)
_json_lines = st.dictionaries(_json_keys, st.one_of(_json_values, _json_objects), max_size=8).map(
    lambda obj: json.dumps(obj, allow_nan=True))
_clf_field = st.one_of(st.text(max_size=20), st.sampled_from([
    "-", "29/Nov/2026:10:00:00 +0100", "99/Nov/2026:77:61:61 +9999", "01/Foo/2026:00:00:00 +0000", "GET / HTTP/1.1",
    "200"]))
_combined_lines = st.builds(lambda a, t, r, s, f, u: f'{a} - - [{t}] "{r}" {s} 0 "{f}" "{u}"',
                            _clf_field, _clf_field, _clf_field, st.sampled_from(["200", "-", "999", "20"]), _clf_field,
                            _clf_field)
_alb_lines = st.builds(lambda t, a, s, r: f'h2 {t} lb {a} - 0 0 0 {s} 200 1 2 "{r}" "ua"',
                       _clf_field, _clf_field, st.sampled_from(["200", "-", "x"]), _clf_field)
_cf_lines = st.lists(st.text(alphabet="0123456789-:.T abc\t/%", max_size=40), max_size=4).map(
    lambda rows: ["#Fields: date time c-ip cs-method cs-uri-stem sc-status cs(User-Agent) cs-uri-query", *rows])


@given(st.one_of(st.tuples(st.just("json"), st.lists(_json_lines, max_size=4)),
                 st.tuples(st.just("combined"), st.lists(_combined_lines, max_size=4)),
                 st.tuples(st.just("alb"), st.lists(_alb_lines, max_size=4)),
                 st.tuples(st.just("cloudfront"), _cf_lines),
                 st.tuples(st.sampled_from(["json", "combined", "alb", "cloudfront"]), st.lists(st.text(max_size=80),
                                                                                                max_size=4))))
def test_any_access_log_line_is_a_record_or_skipped_never_an_error(log: tuple[str, list[str]]) -> None:
    targets.check_log_lines(*log)


# -- the HTTP adapter and the engine --------------------------------------------------------------
_header_names = st.one_of(
    st.sampled_from([b"Host", b"User-Agent", b"Cookie", b"Accept", b"Accept-Language", b"X-Forwarded-For",
                     b"Forwarded", b"X-Api-Key", b"Content-Type", b"Referer", b"Sec-Fetch-Mode", b"cookie"]),
    st.binary(max_size=12),
)
_header_values = st.one_of(
    st.binary(max_size=60),
    st.sampled_from([b"Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0", b"python-requests/2.32", b"Googlebot/2.1",
                     b"k-123", b"en-US,en;q=0.9", b"sid=abc; shield_clearance=x.y.z.w", b"1.2.3.4, 10.0.0.2",
                     b"for=192.0.2.1", b"text/html", b"\xff\xfe\x00"]),
    _chains.map(lambda c: ", ".join(c).encode("utf-8", "surrogatepass")),
)
_methods = st.one_of(st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "get"]),
                     st.text(min_size=1, max_size=8))
_paths = st.one_of(_path_text.map(lambda p: p if p.startswith("/") else "/" + p),
                   st.sampled_from(["/.shield/verify", "/.shield/verify?wait=abc", "/user/1?x=1", "/admin/x",
                                    "/%2e%2e/admin/x", "*", "/robots.txt"]))


@given(_methods, _paths, st.lists(st.tuples(_header_names, _header_values), max_size=12), st.binary(max_size=300),
       st.sampled_from(["203.0.113.7", "10.0.0.1", "2001:db8::5", "::ffff:10.0.0.1"]))
@example("GET", "/user/1", [(b"X-Forwarded-For", b", ".join([b"6.6.6.6"] * 70))], b"", "10.0.0.1")
@example("GET", "/user/1", [(b"X-Forwarded-For", b"x" * 9000)], b"", "10.0.0.1")
@example("GET", "/user/1", [(b"Cookie", b"a=" + b"b" * 100_000)], b"", "203.0.113.7")
@example("GET", "/user/1", [(b"Cookie", b"; ".join(b"c%d=v" % i for i in range(3000)))], b"", "203.0.113.7")
@example("POST", "/.shield/verify", [(b"Content-Type", b"application/x-www-form-urlencoded")],
         b"token=" + b"A" * 5000 + b"&nonce=1", "203.0.113.7")
def test_any_request_through_the_adapter_gets_a_decision_that_is_not_the_fail_mode(
    adapter: targets.AdapterHarness, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes,
    peer: str,
) -> None:
    adapter.check(method, path, headers, body, peer)

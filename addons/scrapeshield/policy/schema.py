"""A JSON Schema of the policy format, for editors (validation and completion) and CI.

Generated from the compiler's own tables -- top-level and rule fields, the registered match
conditions and key parts, detector parameters, score signals -- so it cannot drift from what
the compiler accepts: tests compare the published file (schema/policy.schema.json) with this
output. The schema checks shapes; the compiler still has the last word (regexes, CIDRs, names
that must exist elsewhere in the file), with file:line:col messages.

    python -m scrapeshield.policy.schema > schema/policy.schema.json
"""
from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

from .. import __version__
from .compiler import DIRECT_ACTIONS, EXCEED_ACTIONS, RULE_FIELDS, THRESHOLD_ACTIONS, TOP_FIELDS
from .registry import Registry

SCHEMA_ID = "https://scrapeshield.dev/schema/policy.schema.json"
Json = dict[str, Any]


def _ref(name: str) -> Json:
    return {"$ref": f"#/$defs/{name}"}


def _one_or_more(item: Json) -> Json:
    """One value, or a non-empty list of them (an empty list is a compile error: it matched everything)."""
    return {"anyOf": [item, {"type": "array", "items": item, "minItems": 1}]}


def _mapping(properties: dict[str, Json], description: str, required: tuple[str, ...] = ()) -> Json:
    out: Json = {"type": "object", "description": description, "properties": properties,
                 "additionalProperties": False}
    if required:
        out["required"] = list(required)
    return out


def _condition_schemas() -> dict[str, Json]:
    from ..fingerprint import SIGNALS, TLS_FAMILIES, UA_KINDS

    text = {"type": "string"}
    nonempty_map = {"type": "object", "minProperties": 1}
    return {
        "all": {"type": "array", "items": _ref("match"), "minItems": 1, "description": "every condition holds"},
        "any": {"type": "array", "items": _ref("match"), "minItems": 1, "description": "at least one holds"},
        "not": {**_ref("match"), "description": "the conditions do not all hold"},
        "method": {**_one_or_more(text), "description": "HTTP methods, e.g. [GET, HEAD]"},
        "host": {**_one_or_more(text), "description": "host globs, e.g. '*.example.com'"},
        "path": {**_one_or_more(text), "description": "globs over the canonical path (no query); * also crosses /"},
        "path_regex": {"type": "string", "description": "regular expression searched in the canonical path"},
        "raw_path": {**_one_or_more(text), "description": "globs over the path exactly as sent (no query)"},
        "raw_path_regex": {"type": "string", "description": "regular expression searched in the path as sent"},
        "query": {**nonempty_map, "additionalProperties": {"anyOf": [{"const": True}, text]},
                  "description": "parameter: regex (or true = present)"},
        "query_regex": {"type": "string", "description": "regular expression searched in the query string"},
        "header": {**nonempty_map, "additionalProperties": {"anyOf": [{"type": "boolean"}, text]},
                   "description": "header: true (present), false (absent) or a regex"},
        "user_agent": {"type": "string", "description": "regular expression searched in the User-Agent"},
        "client_ip": {**_one_or_more(text), "description": "CIDRs, addresses, or @name from ip_lists"},
        "scheme": {**_one_or_more({"enum": ["http", "https"]})},
        "http_version": {**_one_or_more(text), "description": "e.g. HTTP/1.1, HTTP/2.0"},
        "ua_class": {**_one_or_more({"enum": sorted(UA_KINDS)}), "description": "User-Agent class"},
        "ua_family": {**_one_or_more(text), "description": "browser/library family, e.g. chrome, curl"},
        "tls_family": {**_one_or_more({"enum": [*sorted(TLS_FAMILIES), "-"]}),
                       "description": "TLS stack family from the ClientHello ('-' = no TLS)"},
        "ja3": {**_one_or_more(text), "description": "JA3 hashes"},
        "ja4": {**_one_or_more(text), "description": "JA4 fingerprints"},
        "httpsig": {**_one_or_more(text), "description": "HTTP header signatures"},
        "crawler": {**_one_or_more(text), "description": "crawler names (crawler-user-agents)"},
        "signal": {**_one_or_more({"enum": sorted(SIGNALS)}), "description": "consistency signals that fired"},
        "good_bot": {"anyOf": [{"type": "boolean"}, {"type": "array", "items": text, "minItems": 1}, text],
                     "description": "verified crawler (UA claim AND published range); needs goodbots:"},
        # the session package (docs/sessions.md)
        "session": {**_one_or_more({"enum": ["absent", "fresh", "established"]}),
                    "description": "the request's session state"},
        "session_signal": {**_one_or_more(text), "description": "session signals known before the store is asked"},
        "document": {"type": "boolean", "description": "a page navigation (not an asset or API call)"},
        "record": {"type": "boolean", "description": "a page navigation to a URL with a numeric id"},
        "history": {"type": "boolean", "description": "an established session with a person's history (it followed "
                    "a link from a page it fetched, whose assets it loaded)"},
    }


def _detector_properties() -> dict[str, Json]:
    from ..detectors.config import DetectorConfig

    props: dict[str, Json] = {
        "key": {**_ref("key"), "description": "what one identity is, e.g. [ja4, ua_class]"},
        "enabled": {"type": "boolean", "description": "false turns every detector off"},
    }
    for f in dataclasses.fields(DetectorConfig):
        default = f.default
        if f.name.endswith("_s"):
            props[f.name] = _ref("duration")
        elif isinstance(default, bool):
            props[f.name] = {"type": "boolean"}
        elif isinstance(default, int):
            props[f.name] = {"type": "integer", "minimum": 0}
        elif isinstance(default, float):
            props[f.name] = {"type": "number"}
        elif f.name == "probe_statuses":
            props[f.name] = {"anyOf": [{"type": "string"}, {"type": "array", "items": {
                "type": "integer", "minimum": 100, "maximum": 599}, "minItems": 1}]}
        else:
            props[f.name] = {"type": "string"}
        props[f.name]["default"] = default
    return props


def _extension_sections() -> dict[str, Json]:
    """Sections of packages that may or may not be part of the build (used when registered)."""
    header = {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"}
    positive = {"type": "number", "exclusiveMinimum": 0}
    difficulty = {"type": "integer", "minimum": 1, "maximum": 32}
    return {
        "session": _mapping({
            "cookie_name": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
            "ttl": _ref("duration"), "fresh_for": _ref("duration"), "half_life": _ref("duration"),
            "refuser_at": positive, "roaming_at": positive, "burst_net_at": positive, "burst_stack_at": positive,
            "record_budget": {"type": "integer", "minimum": 0, "maximum": 1_000_000},
            "fresh_record_budget": {"type": "integer", "minimum": 0, "maximum": 1_000_000},
            "history_assets": {"type": "integer", "minimum": 0, "maximum": 1_000_000},
            "difficulty": _mapping({"base": difficulty, "maximum": difficulty, "stack_unit": {"type": "number"},
                                    "stack_cap": {"type": "number"}, "cold_stack_cap": {"type": "number"},
                                    "net_unit": {"type": "number"}, "net_cap": {"type": "number"},
                                    "repeat_bits": {"type": "number", "minimum": 0}},
                                   "adaptive proof-of-work difficulty"),
        }, "session cookie identity; present = sessions on (docs/sessions.md)"),
        "fingerprint_headers": _mapping(
            {"ja3": header, "ja4": header},
            "headers in which a trusted front proxy passes the client's JA3 hash and JA4 "
            "(default: CloudFront-Viewer-JA3-Fingerprint, CloudFront-Viewer-JA4-Fingerprint)"),
    }


def policy_schema(registry: Registry | None = None) -> Json:
    """The schema of what `registry` (default: the built-in packages) compiles."""
    if registry is None:
        from ..extensions import standard_registry

        registry = standard_registry()
    conditions = {name: schema for name, schema in _condition_schemas().items() if name in registry.conditions}
    for name in registry.conditions:  # a condition registered elsewhere still gets completion
        conditions.setdefault(name, _one_or_more({"type": "string"}))
    parts = sorted(n for n, p in registry.key_parts.items() if not p.needs_argument)
    arg_parts = sorted(n for n, p in registry.key_parts.items() if p.needs_argument)
    status = {"type": "integer", "minimum": 200, "maximum": 599}
    top: dict[str, Json] = {
        "version": {"const": 1, "description": "policy format version"},
        "name": {"type": "string"},
        "monitor": {"type": "boolean", "description": "dry run: decide, log and count, enforce nothing"},
        "fail": {"enum": ["open", "closed"], "description": "on an internal error or store outage"},
        "default_action": {"enum": ["allow", "log", "block", "challenge"]},
        "trusted_proxies": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                            "description": "CIDRs whose X-Forwarded-For / Forwarded is believed"},
        "ip_prefix": _mapping({"ipv4": {"type": "integer", "minimum": 8, "maximum": 32},
                               "ipv6": {"type": "integer", "minimum": 16, "maximum": 128}},
                              "what the `prefix` key part groups by"),
        "keys": {"type": "object", "additionalProperties": _ref("key"), "description": "named keys"},
        "ip_lists": {"type": "object", "description": "named CIDR lists for client_ip: '@name'",
                     "additionalProperties": {"anyOf": [
                         {"type": "array", "items": {"type": "string"}}, {"type": "string"},
                         _mapping({"file": {"type": "string"}}, "one CIDR per line", ("file",))]}},
        "state": _mapping({"max_keys": {"type": "integer", "minimum": 1}}, "bounds of the shield's state"),
        "penalty_box": _mapping({"action": {"enum": ["block", "drop"]}}, "how banned clients are answered"),
        "log": _mapping({"hash_ips": {"type": "boolean"}}, "decision log"),
        "responses": _mapping({"block_status": {"type": "integer", "minimum": 400, "maximum": 599},
                               "throttle_status": {"type": "integer", "minimum": 400, "maximum": 599}},
                              "statuses of the shield's own answers"),
        "challenge": _mapping({
            "difficulty": {"type": "integer", "minimum": 1, "maximum": 32}, "status": status,
            "cookie_ttl": _ref("duration"), "challenge_ttl": _ref("duration"), "wait_seconds": _ref("duration"),
            "ipv4_prefix": {"type": "integer", "minimum": 8, "maximum": 32},
            "ipv6_prefix": {"type": "integer", "minimum": 16, "maximum": 128}}, "proof-of-work challenge"),
        "rules": {"type": "array", "items": _ref("rule"), "description": "evaluated in order"},
        "scores": {"type": "array", "items": _ref("score")},
        "detectors": _mapping(_detector_properties(), "behaviour-over-time detectors (docs/detectors.md)"),
        "goodbots": {"type": "string", "examples": ["builtin"],
                     "description": "'builtin' (the shipped crawler ranges) or a directory relative to the policy"},
    }
    top = {name: schema for name, schema in top.items() if name in TOP_FIELDS or name in registry.sections}
    top.update({name: schema for name, schema in _extension_sections().items()
                if name in registry.sections or name in TOP_FIELDS})
    for name in (*TOP_FIELDS, *registry.sections):  # not known here yet: accepted, flagged by the tests
        top.setdefault(name, {"description": "see docs/policy.md"})
    rule: dict[str, Json] = {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "match": _ref("match"),
        "action": {"enum": list(DIRECT_ACTIONS)},
        "limits": _one_or_more(_ref("rate")),
        "exceed": {"enum": list(EXCEED_ACTIONS)},
        "key": _ref("key"),
        "delay_max": _ref("duration"),
        "ban": {"anyOf": [_ref("duration"), _mapping({"for": _ref("duration")}, "ban duration", ("for",))]},
        "monitor": {"type": "boolean"},
        "status": status,
        "difficulty": {"type": "integer", "minimum": 1, "maximum": 32},
        "no_js": {"type": "boolean"},
        "score": {"type": "object", "additionalProperties": {"type": "number"},
                  "description": "score name: amount added when the rule matches"},
    }
    for name in RULE_FIELDS:
        rule.setdefault(name, {"description": "see docs/policy.md"})
    threshold = _mapping({
        "at": {"type": "number"}, "action": {"enum": list(THRESHOLD_ACTIONS)},
        "difficulty": {"type": "integer", "minimum": 1, "maximum": 32}, "ban": _ref("duration"), "status": status,
        "when": {**_ref("match"), "description": "the threshold acts on requests matching these conditions only"},
    }, "what happens when the score reaches `at`", ("at", "action"))
    score = _mapping({
        "name": {"type": "string"}, "key": _ref("key"), "half_life": _ref("duration"),
        "weights": {"type": "object", "propertyNames": {"enum": sorted(registry.signals)},
                    "additionalProperties": {"type": "number"}, "description": "signal: weight"},
        "thresholds": {"type": "array", "items": threshold},
    }, "a decaying score per key, fed by signals and rules", ("name",))
    key_part = ("^(" + "|".join(parts) + "|(" + "|".join(arg_parts) + "):.+)$")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": f"ScrapeShield policy (version 1, scrapeshield {__version__.rpartition('.')[0]}.x)",
        "description": "See docs/policy.md. Generated by scrapeshield.policy.schema; do not edit.",
        "type": "object",
        "required": ["version"],
        "additionalProperties": False,
        "properties": top,
        "$defs": {
            "duration": {"anyOf": [{"type": "number", "minimum": 0},
                                   {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"}],
                         "description": "30s, 10m, 1h, 2d, 250ms, or seconds"},
            "rate": {"type": "string", "pattern": r"^\d+/\d*[smhd]( burst \d+)?$",
                     "description": "'10/s', '10/s burst 20', '1000/h', '5/10s'", "examples": ["10/s burst 20"]},
            "key": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string", "pattern": key_part},
                                                   "minItems": 1}],
                    "description": f"a named key, or parts joined by + : {', '.join(parts)}, "
                                   f"{', '.join(p + ':NAME' for p in arg_parts)}",
                    "examples": ["ip", "prefix", "ip+header:x-api-key", ["ja4", "httpsig", "ua_class"]]},
            "match": {"type": "object", "properties": dict(sorted(conditions.items())),
                      "additionalProperties": False, "description": "conditions that must all hold"},
            "rule": _mapping(rule, "a rule: a match and an action, or a match and limits", ("name",)),
            "score": score,
        },
    }


def render() -> str:
    return json.dumps(policy_schema(), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())

"""The published JSON Schema (schema/policy.schema.json) matches the compiler and accepts every
policy we ship or keep as a good fixture, and rejects the structural mistakes of bad fixtures."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from test_policy_compiler import FIXTURES, REPO

from scrapeshield import builtin
from scrapeshield.extensions import standard_registry
from scrapeshield.policy.schema import _condition_schemas, policy_schema, render

PUBLISHED = REPO / "schema" / "policy.schema.json"
ACCEPTED = sorted((FIXTURES / "good").glob("*.yaml")) + sorted((FIXTURES / "warn").glob("*.yaml")) + [
    builtin.policies_dir() / f"{name}.yaml" for name in builtin.policy_names()] + [
    REPO / "deploy" / "compose" / "conf" / "policy.yaml"]
# Bad fixtures whose mistake is one of shape, which a schema can see (the rest need the compiler).
REJECTED = ["empty_lists", "nginx_rate", "unknown_signal", "unknown_field_did_you_mean",
            "unknown_field_expected_one_of", "missing_version", "unsupported_version", "wrong_types",
            "action_shape", "limits_empty"]


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(PUBLISHED.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_the_published_schema_is_the_generated_one() -> None:
    assert PUBLISHED.read_text() == render(), (
        "schema/policy.schema.json is stale: python -m scrapeshield.policy.schema > schema/policy.schema.json")


@pytest.mark.parametrize("path", ACCEPTED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_and_good_policy_validates(validator: jsonschema.Draft202012Validator, path: Path) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(_load(path))]
    assert not errors


@pytest.mark.parametrize("name", REJECTED)
def test_structural_mistakes_of_bad_fixtures_are_rejected(validator: jsonschema.Draft202012Validator,
                                                          name: str) -> None:
    assert not validator.is_valid(_load(FIXTURES / "bad" / f"{name}.yaml"))


def test_every_registered_condition_has_its_own_schema() -> None:
    assert set(standard_registry().conditions) <= set(_condition_schemas())


def test_weights_complete_to_the_known_signals() -> None:
    names = policy_schema()["$defs"]["score"]["properties"]["weights"]["propertyNames"]["enum"]
    assert {"sequential_ids", "ua_class:library", "good_bot", "ua_tls_mismatch"} <= set(names)


def test_every_top_level_and_rule_field_has_its_own_schema() -> None:
    from scrapeshield.policy.compiler import RULE_FIELDS, TOP_FIELDS

    schema = policy_schema()
    generic = {"description": "see docs/policy.md"}
    top = (*TOP_FIELDS, *standard_registry().sections)
    assert set(schema["properties"]) == set(top)
    assert [f for f in top if schema["properties"][f] == generic] == []
    assert [f for f in RULE_FIELDS if schema["$defs"]["rule"]["properties"][f] == generic] == []

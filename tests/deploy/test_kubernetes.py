"""Kubernetes manifests: rendered by kustomize, valid against the Kubernetes schemas, and wired
the way the sidecar pattern needs (probes on the admin port, policy as a ConfigMap directory,
secret from a Secret, the Service on the shield, one Redis for several replicas).

`kubectl apply --dry-run=client` cannot be used: it asks a cluster for the API's discovery
document. `kubectl kustomize` renders offline and `kubernetes-validate --strict` checks every
object against the published OpenAPI schemas, rejecting unknown fields.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploytools import REPO, need

from scrapeshield.policy.report import cmd_check

pytestmark = pytest.mark.e2e

K8S = REPO / "deploy" / "kubernetes"
VARIANTS = ("sidecar", "redis")
KUBE_VERSIONS = ("1.28.0", "1.33.0")  # the oldest still supported by the major clouds, and a current one


def render(variant: str) -> list[dict[str, Any]]:
    need("kubectl")
    out = subprocess.run(["kubectl", "kustomize", str(K8S / variant)], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def validate(docs: list[dict[str, Any]], path: Path, version: str) -> subprocess.CompletedProcess[str]:
    path.write_text(yaml.safe_dump_all(docs))
    tool = Path(sys.executable).parent / "kubernetes-validate"
    return subprocess.run([str(tool), "--strict", "-k", version, str(path)], capture_output=True, text=True,
                          timeout=120)


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def shield_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = find(docs, "Deployment", "shop")["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "scrapeshield"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_rendered_object_is_valid_kubernetes(variant: str, version: str, tmp_path: Path) -> None:
    docs = render(variant)
    proc = validate(docs, tmp_path / "rendered.yaml", version)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(" passed for resource ") == len(docs)


def test_the_validator_rejects_a_misspelled_field(tmp_path: Path) -> None:
    docs = render("sidecar")
    shield_container(docs)["livenessProbe"]["httpGet"]["pth"] = "/healthz"
    assert validate(docs, tmp_path / "broken.yaml", KUBE_VERSIONS[0]).returncode != 0


def test_the_shield_is_a_sidecar_probed_on_its_admin_port() -> None:
    docs = render("sidecar")
    shield = shield_container(docs)
    ports = {p["name"]: p["containerPort"] for p in shield["ports"]}
    env = env_of(shield)
    assert env["SCRAPESHIELD_UPSTREAM"] == "http://127.0.0.1:8000"  # the app, over the pod's loopback
    assert env["SCRAPESHIELD_ADMIN"].endswith(f":{ports['admin']}")
    assert env["SCRAPESHIELD_LISTEN"].endswith(f":{ports['http']}")
    assert shield["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert shield["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert shield["resources"]["requests"] and shield["resources"]["limits"]["memory"]
    assert shield["securityContext"]["runAsUser"] == 10001 and shield["securityContext"]["readOnlyRootFilesystem"]
    service = find(docs, "Service", "shop")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]  # the admin port is not exposed


def test_policy_comes_from_a_configmap_directory_and_keys_from_a_secret() -> None:
    docs = render("sidecar")
    shield = shield_container(docs)
    pod = find(docs, "Deployment", "shop")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in shield["volumeMounts"]}
    env = env_of(shield)
    policy_mount = mounts[str(Path(env["SCRAPESHIELD_POLICY"]).parent)]
    assert "subPath" not in policy_mount  # a subPath mount is never updated: no hot reload
    assert volumes[policy_mount["name"]]["configMap"]["name"] == "scrapeshield-policy"
    assert Path(env["SCRAPESHIELD_POLICY"]).name in find(docs, "ConfigMap", "scrapeshield-policy")["data"]
    secret_mount = mounts[str(Path(env["SCRAPESHIELD_SECRET_FILE"]).parent)]
    assert volumes[secret_mount["name"]]["secret"]["secretName"] == "scrapeshield-secrets"
    assert Path(env["SCRAPESHIELD_SECRET_FILE"]).name in find(docs, "Secret", "scrapeshield-secrets")["stringData"]


def test_the_configmaps_policy_passes_a_strict_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(find(render("sidecar"), "ConfigMap", "scrapeshield-policy")["data"]["policy.yaml"])
    assert cmd_check([str(policy)], strict=True) == 0, capsys.readouterr().out


def test_the_redis_variant_runs_replicas_on_one_store() -> None:
    docs = render("redis")
    assert find(docs, "Deployment", "shop")["spec"]["replicas"] >= 2
    store = env_of(shield_container(docs))["SCRAPESHIELD_STORE"]
    redis_service = find(docs, "Service", "scrapeshield-redis")
    assert store == f"redis://scrapeshield-redis:{redis_service['spec']['ports'][0]['port']}/0"
    assert find(docs, "Deployment", "scrapeshield-redis")


def test_every_environment_variable_in_the_manifests_is_a_run_flag() -> None:
    help_text = subprocess.run([sys.executable, "-m", "scrapeshield", "run", "--help"], capture_output=True,
                               text=True, check=True, env={**os.environ, "COLUMNS": "400"}).stdout
    for variant in VARIANTS:
        for name in env_of(shield_container(render(variant))):
            assert "--" + name.removeprefix("SCRAPESHIELD_").lower().replace("_", "-") + " " in help_text, name

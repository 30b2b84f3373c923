"""A ConfigMap update, as the kubelet performs it on disk, reloads a real `scrapeshield run`.

The kubelet's atomic writer keeps each version of a ConfigMap volume in a timestamped directory
`..2026_11_29_19_00_00.000000001/`, points the symlink `..data` at the current one, and exposes
each key as a symlink `policy.yaml -> ..data/policy.yaml`. An update writes a new timestamped
directory, creates `..data_tmp -> <new>`, renames it over `..data` (atomic), and removes the
old directory. The path the shield watches never changes and its inode is a symlink's: only
following the link shows the change.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
import yaml
from deploytools import REPO

pytestmark = pytest.mark.e2e

CONFIGMAP = REPO / "deploy" / "kubernetes" / "sidecar" / "policy-configmap.yaml"


class ConfigMapVolume:
    """A directory laid out and updated exactly as the kubelet's AtomicWriter does it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.generation = 0
        root.mkdir()

    def write(self, files: dict[str, str]) -> None:
        self.generation += 1
        stamp = time.strftime("..%Y_%m_%d_%H_%M_%S", time.gmtime()) + f".{self.generation:09d}"
        new = self.root / stamp
        new.mkdir()
        for name, text in files.items():
            (new / name).write_text(text)
        data = self.root / "..data"
        old = data.resolve() if data.is_symlink() else None
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(stamp)
        os.rename(tmp, data)  # the atomic switch
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")
        if old is not None:
            for f in old.iterdir():
                f.unlink()
            old.rmdir()


def _configmap_policy() -> str:
    return str(yaml.safe_load(CONFIGMAP.read_text())["data"]["policy.yaml"])


def _wait_for_policy(admin_url: str, name: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = httpx.get(f"{admin_url}/status", trust_env=False, timeout=5).json()["policy"]
        if got["name"] == name:
            return
        assert time.monotonic() < deadline, f"policy still {got['name']!r}, last error {got['last_reload_error']}"
        time.sleep(0.1)


def test_a_configmap_symlink_swap_reloads_the_policy(shield_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # given the shield reading its policy from a ConfigMap volume holding the shipped manifest's policy
    volume = ConfigMapVolume(tmp_path / "scrapeshield")
    original = _configmap_policy()
    volume.write({"policy.yaml": original})
    shield = shield_factory(policy=volume.root / "policy.yaml", extra_args=["--reload-interval", "0.2"])
    _wait_for_policy(shield.admin_url, "shop-k8s")
    with httpx.Client(base_url=shield.proxy_url, trust_env=False, timeout=10) as client:
        assert client.get("/products/1").status_code == 200

        # when the ConfigMap is updated with a rule blocking /products/1
        edited = original.replace("name: shop-k8s", "name: shop-k8s-v2").replace(
            "\nrules:\n", "\nrules:\n  - {name: no-products, match: {path: /products/1}, action: block}\n")
        assert "no-products" in edited
        volume.write({"policy.yaml": edited})

        # then the shield reloads it without a restart and enforces it
        _wait_for_policy(shield.admin_url, "shop-k8s-v2")
        refused = client.get("/products/1")
        assert (refused.status_code, refused.headers.get("shield-action")) == (403, "block")

        # and a second swap (the first version's directory is gone by now) is followed too
        volume.write({"policy.yaml": original})
        _wait_for_policy(shield.admin_url, "shop-k8s")
        assert client.get("/products/1").status_code == 200
    assert shield.running

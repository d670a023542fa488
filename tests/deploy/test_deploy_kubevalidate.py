"""Rendered manifests validate strictly against the Kubernetes API schemas (kubernetes-validate)."""

from __future__ import annotations

from typing import Any

import pytest
from support.chart import CRD_KINDS, PROFILES, manifests

kv = pytest.importorskip("kubernetes_validate.utils", reason="kubernetes-validate is not installed")

# The chart's minimum (Chart.yaml kubeVersion) and the newest release the package knows.
KUBE_VERSIONS = ("1.27.0", kv.latest_version())


def _validate(obj: dict[str, Any], version: str) -> str | None:
    """None when valid; a message when the schema rejects the object."""
    try:
        kv.validate(obj, version, strict=True)
    except kv.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        return f"{obj['kind']}/{obj['metadata']['name']}: {path}: {e.message}"
    except kv.SchemaNotFoundError:
        # Custom resources have no built-in schema (kubernetes-validate only warns); check them by hand.
        assert CRD_KINDS.get(obj["kind"]) == obj["apiVersion"], f"unexpected kind {obj['kind']}"
        assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}
    return None


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_manifests_validate_strictly(profile: str, version: str) -> None:
    objects = manifests(profile)
    assert objects
    errors = [msg for obj in objects if (msg := _validate(obj, version))]
    assert errors == []


def test_strict_validation_catches_a_misplaced_field() -> None:
    dep = next(o for o in manifests("default") if o["kind"] == "Deployment")
    broken = {**dep, "spec": {**dep["spec"], "replica": 2}}
    assert _validate(broken, KUBE_VERSIONS[-1]) is not None


def test_custom_resources_use_the_expected_api_versions() -> None:
    kinds = {(o["kind"], o["apiVersion"]) for o in manifests("gpu") if o["kind"] in CRD_KINDS}
    assert kinds == set(CRD_KINDS.items())

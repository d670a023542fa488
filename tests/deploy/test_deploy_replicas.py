"""What runs how many times, and what that needs: the GPU profile runs two policy replicas on a
shared PostgreSQL database with rolling updates, keeps every JetStream stream and bucket in three
copies on its three-node NATS cluster, and the chart refuses more than one llm or policy replica
that would each keep their own SQLite file (schema check and template)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from support.chart import CHART, by_kind, deep_merge, helm, render_raw


def _env(deployment: dict[str, Any]) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_gpu_profile_runs_two_policy_replicas_on_the_shared_database() -> None:
    policy = by_kind("gpu", "Deployment")["policy"]
    assert policy["spec"]["replicas"] == 2
    assert policy["spec"]["strategy"]["type"] == "RollingUpdate"
    assert _env(policy)["PA_POLICY_DB"] == {
        "secretKeyRef": {"name": "pa-phone-agent-secrets", "key": "database-url"}
    }
    volumes = {v["name"] for v in policy["spec"]["template"]["spec"]["volumes"]}
    assert "data" not in volumes and "policy" not in by_kind("gpu", "PersistentVolumeClaim")
    assert (
        _env(by_kind("gpu", "Deployment")["llm"])["PA_DATABASE_URL"]["secretKeyRef"]["key"] == "database-url"
    )


def test_default_profile_keeps_one_policy_replica_on_its_volume() -> None:
    policy = by_kind("default", "Deployment")["policy"]
    assert policy["spec"]["replicas"] == 1 and policy["spec"]["strategy"]["type"] == "Recreate"
    assert _env(policy)["PA_POLICY_DB"] == "/var/lib/phone-agent/policy.sqlite3"


@pytest.mark.parametrize(("profile", "copies"), [("gpu", "3"), ("default", "1")])
def test_streams_keep_three_copies_on_the_nats_cluster(profile: str, copies: str) -> None:
    for name, deployment in by_kind(profile, "Deployment").items():
        assert _env(deployment)["PA_NATS_STREAM_REPLICAS"] == copies, name


def test_stream_copies_can_be_set_for_an_external_cluster() -> None:
    out = render_raw(
        {"nats": {"enabled": False}, "bus": {"externalUrl": "nats://n:4222", "streamReplicas": 3}}
    )
    policy = next(t for p, t in out.items() if p.endswith("policy/deployment.yaml"))
    assert _env(yaml.safe_load(policy))["PA_NATS_STREAM_REPLICAS"] == "3"


def _validate(values: dict[str, Any]) -> None:
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(chart.merge_values(values))


@pytest.mark.parametrize(
    "values",
    [
        {"llm": {"replicas": 2}},
        {"autoscaling": {"mode": "keda"}, "llm": {"autoscaling": {"maxReplicas": 4}}},
        {"policy": {"replicas": 2}},
        {"bus": {"streamReplicas": 7}},
    ],
)
def test_schema_refuses_replicas_that_would_not_share_a_database(values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        _validate(values)


@pytest.mark.parametrize(
    "values",
    [
        {"llm": {"replicas": 2, "database": {"external": True}}},
        {
            "autoscaling": {"mode": "keda"},
            "llm": {"autoscaling": {"maxReplicas": 4}, "database": {"external": True}},
        },
        {"autoscaling": {"mode": "none"}, "llm": {"autoscaling": {"maxReplicas": 4}}},
        {"policy": {"replicas": 2, "database": {"external": True}}},
    ],
)
def test_schema_takes_replicas_on_a_shared_database(values: dict[str, Any]) -> None:
    _validate(values)


def test_an_external_policy_database_needs_its_url() -> None:
    values = {"secrets": {"apiToken": "api-token-0123456789"}, "approvals": {"existingSecret": "a"}}
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(Exception, match="secrets.databaseUrl"):
        chart.render(
            deep_merge(values, {"policy": {"database": {"external": True}}}), name="pa", namespace="pa"
        )


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"llm": {"replicas": 2}}, "/llm/database/external"),
        ({"policy": {"replicas": 3}}, "/policy/database/external"),
    ],
)
def test_the_schema_error_names_the_setting_to_change(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=where):
        _validate(values)

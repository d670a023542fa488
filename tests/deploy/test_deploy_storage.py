"""Every file a service writes lands on a writable volume: the chart runs with a read-only root filesystem.

The services default to paths relative to their working directory (var/...), which is the image's
read-only root in a pod; a SQLite database there fails at start-up (LLM, policy, records) or at the first
recording (edge). The effective value is the rendered env var or, when the chart sets none, the
service's own default.
"""

from __future__ import annotations

import dataclasses
from pathlib import PurePosixPath
from typing import Any

import pytest
import yaml
from phoneagent.edge.settings import EdgeSettings
from phoneagent.llm.settings import LlmSettings
from phoneagent.policy.settings import PolicySettings
from phoneagent.records.worker import RecordsSettings
from phoneagent.tts.settings import TtsSettings
from support.chart import PROFILES, by_kind, helm, notes, render_raw

# (service, settings class, variable): files the service creates or writes.
WRITTEN = [
    ("llm", LlmSettings, "PA_DATABASE_URL"),
    ("policy", PolicySettings, "PA_POLICY_DB"),
    ("records", RecordsSettings, "PA_RECORDS_DB"),
    ("edge", EdgeSettings, "PA_RECORDING_DIR"),
    ("tts", TtsSettings, "PA_TTS_PROMPT_DIR"),
]


def _default(cls: type, variable: str) -> str:
    (field,) = [f for f in dataclasses.fields(cls) if f.metadata.get("env") == variable]
    assert field.default is not dataclasses.MISSING
    return str(field.default)


def _path(value: str) -> PurePosixPath | None:
    """The file a setting points at; None for a server URL (postgresql://)."""
    if value.startswith("sqlite:///"):
        return PurePosixPath(value.removeprefix("sqlite:///"))
    if "://" in value:
        return None
    return PurePosixPath(value)


def _writable_mounts(dep: dict[str, Any]) -> list[PurePosixPath]:
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    return [PurePosixPath(m["mountPath"]) for m in container.get("volumeMounts", []) if not m.get("readOnly")]


def _problems(profile: str) -> list[str]:
    deployments = by_kind(profile, "Deployment")
    problems = []
    for service, cls, variable in WRITTEN:
        dep = deployments[service]
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        if variable in env and "valueFrom" in env[variable]:
            continue  # from the Secret: a server URL
        value = env[variable]["value"] if variable in env else _default(cls, variable)
        path = _path(value)
        if path is None:
            continue
        mounts = _writable_mounts(dep)
        if not (path.is_absolute() and any(path.is_relative_to(m) for m in mounts)):
            problems.append(f"{service}: {variable}={value} is not on a writable volume {mounts}")
    return problems


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_services_write_only_to_writable_volumes(profile: str) -> None:
    assert _problems(profile) == []


def test_the_check_sees_the_services_relative_defaults() -> None:
    assert _path(_default(LlmSettings, "PA_DATABASE_URL")) == PurePosixPath("var/phone-agent.sqlite3")
    assert not _path(_default(RecordsSettings, "PA_RECORDS_DB")).is_absolute()  # type: ignore[union-attr]


def test_records_keeps_call_records_on_its_volume() -> None:
    (container,) = by_kind("default", "Deployment")["records"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PA_RECORDS_DB"] == "/var/lib/phone-agent/records.sqlite3"


def test_llm_external_database_comes_from_the_secret() -> None:
    values = {"llm": {"database": {"external": True}}, "secrets": {"databaseUrl": "postgresql://pa@db/pa"}}
    rendered = render_raw(values)
    assert "database-url" in rendered["phone-agent/templates/common/secret.yaml"]
    dep = rendered["phone-agent/templates/llm/deployment.yaml"]
    assert "key: database-url" in dep and "sqlite" not in dep
    with pytest.raises(helm.HelmError, match="secrets.databaseUrl"):
        render_raw({"llm": {"database": {"external": True}}})


def _edge_env(values: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rendered = render_raw(values)
    dep = yaml.safe_load(rendered["phone-agent/templates/edge/deployment.yaml"])
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    return env, dep["spec"]["template"]["spec"]["volumes"]


def test_edge_recordings_can_use_a_claim() -> None:
    env, volumes = _edge_env({"edge": {"recordings": {"enabled": True, "existingClaim": "pa-recordings"}}})
    (vol,) = [v for v in volumes if v["name"] == "recordings"]
    assert vol["persistentVolumeClaim"]["claimName"] == "pa-recordings"
    assert env["PA_RECORDING_ENABLED"] == "true" and "PA_RECORDING_VOLUME_LIMIT" not in env
    assert (env["PA_RECORDING_RETENTION_DAYS"], env["PA_RECORDING_MIN_FREE_MB"]) == ("30", "1024")


def test_edge_recordings_on_s3_keep_only_calls_in_progress_on_a_bounded_scratch() -> None:
    s3 = {
        "url": "s3://pa-recordings/calls",
        "endpoint": "https://minio.example:9000",
        "credentialsSecret": "s3",
    }
    env, volumes = _edge_env({"edge": {"recordings": {"enabled": True, "s3": s3, "retentionDays": 7}}})
    (vol,) = [v for v in volumes if v["name"] == "recordings"]
    assert vol["emptyDir"]["sizeLimit"] == "2Gi" and env["PA_RECORDING_VOLUME_LIMIT"] == "2Gi"
    assert env["PA_RECORDING_S3_URL"] == "s3://pa-recordings/calls"
    assert env["AWS_ENDPOINT_URL"] == "https://minio.example:9000"
    assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "s3", "key": "AWS_ACCESS_KEY_ID"}}
    assert env["PA_RECORDING_RETENTION_DAYS"] == "7"


def test_recording_on_an_empty_dir_is_refused() -> None:
    with pytest.raises(helm.HelmError, match=r"schema[\s\S]*recordings/s3/url"):
        render_raw({"edge": {"recordings": {"enabled": True}}})
    env, volumes = _edge_env({})  # recording off by default: nothing to keep
    assert env["PA_RECORDING_ENABLED"] == "false"


def test_llm_replicas_never_keep_separate_books() -> None:
    """One replica may book in its own SQLite file (NOTES says so); an autoscaled llm without a
    shared database is refused before install (see test_deploy_replicas)."""
    assert "one LLM replica only" in notes("default")
    assert "SQLite" not in notes("gpu")
    with pytest.raises(helm.HelmError, match="llm/database/external"):
        render_raw({"autoscaling": {"mode": "hpa"}})
    external = render_raw(
        {
            "autoscaling": {"mode": "hpa"},
            "llm": {"database": {"external": True}},
            "secrets": {"existingSecret": "x"},
        }
    )
    text = next(t for p, t in external.items() if p.endswith("NOTES.txt"))
    assert "SQLite" not in text

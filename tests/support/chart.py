"""Rendering the phone-agent Helm chart offline for the deploy tests (no cluster, no helm binary)."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "k8s" / "phone-agent"
DOCKER = REPO / "deploy" / "docker"
NAMESPACE = "phone-agent"
RELEASE = "pa"
SERVICES = ("edge", "asr", "llm", "tts", "policy", "records")
MODEL_SERVICES = ("asr", "llm", "tts")
# Custom resources kubernetes-validate has no schema for; checked by hand instead.
CRD_KINDS = {
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
    "ScaledObject": "keda.sh/v1alpha1",
}

helm = pytest.importorskip(
    "helm_python", reason="helm-python-sdk is not installed (pip install helm-python-sdk)"
)


# The shared PostgreSQL database the GPU profile's llm and policy replicas need (an install names its own).
GPU_DATABASE = {"secrets": {"databaseUrl": "postgresql://pa:secret@postgres.db.svc/phone_agent"}}


def gpu_values() -> dict[str, Any]:
    """values-gpu.yaml with the database URL an install of it must give."""
    return deep_merge(yaml.safe_load((CHART / "values-gpu.yaml").read_text()), GPU_DATABASE)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# Named value sets the tests render: the defaults, the GPU production profile, and variants.
PROFILES: dict[str, dict[str, Any]] = {
    "default": {},
    "gpu": gpu_values(),
    "monitoring": {"metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}},
    "hpa": deep_merge(
        GPU_DATABASE,
        {
            "autoscaling": {"mode": "hpa", "hpa": {"sessionsMetric": True}},
            "llm": {"database": {"external": True}},
        },
    ),
    "nodeport-rtp": {
        "edge": {
            "rtp": {"portMin": 31000, "portMax": 31009, "nodePortService": True},
            "service": {"type": "NodePort", "sipNodePort": 30060},
        },
        "models": {"volume": {"enabled": True, "existingClaim": "pa-models"}},
        "secrets": {"existingSecret": "pa-creds"},
        "nats": {"enabled": False},
        "bus": {"externalUrl": "nats://nats.messaging.svc:4222"},
    },
    "web-page": {"edge": {"web": {"enabled": True}}, "secrets": {"webToken": "page-token-1"}},
    "keda-sessions-only": deep_merge(
        gpu_values(),
        {"autoscaling": {"keda": {"backlog": {"enabled": False}, "jetstream": {"enabled": False}}}},
    ),
    "keda-external-nats": deep_merge(
        gpu_values(),
        {
            "nats": {"enabled": False},
            "bus": {
                "externalUrl": "nats://nats.messaging.svc:4222",
                "externalMonitoringEndpoint": "nats-headless.messaging.svc:8222",
                "account": "PHONE",
            },
            "autoscaling": {"keda": {"jetstream": {"useHttps": True}}},
            "llm": {"autoscaling": {"summaryLagPerReplica": 3}},
        },
    ),
}


# What an install must name (the chart fails without): the control API's token and the Secret with
# policy's approval keys. Every render below has them unless ``required=False``.
REQUIRED: dict[str, Any] = {
    "secrets": {"apiToken": "api-token-0123456789"},
    "approvals": {"existingSecret": "pa-approvals"},
}


def render_raw(values: dict[str, Any] | None = None, *, required: bool = True) -> dict[str, str]:
    merged = deep_merge(REQUIRED, values or {}) if required else (values or {})
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(merged, name=RELEASE, namespace=NAMESPACE, is_install=True)


@functools.cache
def _render_profile(profile: str) -> str:
    return json.dumps(render_raw(PROFILES[profile]))


def rendered(profile: str) -> dict[str, str]:
    """Template path -> rendered text, for a named profile (rendered once per session)."""
    return json.loads(_render_profile(profile))


def manifests(profile: str) -> list[dict[str, Any]]:
    """Every Kubernetes object a profile renders (NOTES.txt excluded)."""
    objects: list[dict[str, Any]] = []
    for path, text in sorted(rendered(profile).items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def by_kind(profile: str, kind: str) -> dict[str, dict[str, Any]]:
    """Objects of one kind, keyed by their app.kubernetes.io/component label (or name)."""
    out: dict[str, dict[str, Any]] = {}
    for obj in manifests(profile):
        if obj["kind"] == kind:
            labels = obj["metadata"].get("labels", {})
            out[labels.get("app.kubernetes.io/component", obj["metadata"]["name"])] = obj
    return out


def notes(profile: str) -> str:
    return next(text for path, text in rendered(profile).items() if path.endswith("NOTES.txt"))

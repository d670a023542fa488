"""The chart's guards on what can dial, transfer and record: policy's approval key comes from a
Secret (private half mounted in policy only, public half in the edge), the control API needs a
token (it listens beyond loopback) and serves TLS from a Secret when one is named."""

from __future__ import annotations

from typing import Any

import pytest
from phoneagent.records.settings import RecordsServiceSettings
from phoneagent.runtime.settings import load
from support.chart import CHART, by_kind, helm, manifests, render_raw

KEY_DIR = "/var/run/phone-agent/approvals"


def _container(dep: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = dep["spec"]["template"]["spec"]["containers"][0]
    return container


def _env(dep: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in _container(dep)["env"]}


def _approvals_volume(dep: dict[str, Any]) -> dict[str, Any]:
    (volume,) = [v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "approvals"]
    return volume


def test_policy_holds_the_signing_key_and_the_edge_only_the_public_key() -> None:
    deps = by_kind("default", "Deployment")
    policy, edge = deps["policy"], deps["edge"]
    assert _env(policy)["PA_POLICY_SIGNING_KEY_FILE"] == f"{KEY_DIR}/signing-key.pem"
    assert _env(edge)["PA_APPROVAL_PUBLIC_KEY_FILES"] == f"{KEY_DIR}/public-key.pem"
    assert _approvals_volume(policy)["secret"]["items"] == [
        {"key": "signing-key.pem", "path": "signing-key.pem"}
    ]
    assert _approvals_volume(edge)["secret"]["items"] == [{"key": "public-key.pem", "path": "public-key.pem"}]
    for dep in (policy, edge):
        secret = _approvals_volume(dep)["secret"]
        assert secret["secretName"] == "pa-approvals" and secret["defaultMode"] == 0o440
        mount = next(m for m in _container(dep)["volumeMounts"] if m["name"] == "approvals")
        assert mount == {"name": "approvals", "mountPath": KEY_DIR, "readOnly": True}
    for name, dep in deps.items():  # nobody else sees either key
        if name not in ("policy", "edge"):
            assert "approvals" not in str(dep["spec"]["template"]["spec"].get("volumes", []))


def test_the_approval_secret_is_required() -> None:
    with pytest.raises(helm.HelmError, match="approvals.existingSecret is required"):
        render_raw({"secrets": {"apiToken": "api-token-0123456789"}}, required=False)


def test_the_api_token_is_required_and_reaches_the_records_service() -> None:
    with pytest.raises(helm.HelmError, match="secrets.apiToken is required"):
        render_raw({"approvals": {"existingSecret": "pa-approvals"}}, required=False)
    # With an existing Secret the chart cannot check it; the key is no longer optional there.
    dep = by_kind("nodeport-rtp", "Deployment")["records"]
    assert _env(dep)["PA_API_TOKEN"]["secretKeyRef"] == {"name": "pa-creds", "key": "api-token"}
    # The chart's own Secret (not the bus users' one) carries the token records reads.
    ref = _env(by_kind("default", "Deployment")["records"])["PA_API_TOKEN"]["secretKeyRef"]
    secrets = {o["metadata"]["name"]: o for o in manifests("default") if o["kind"] == "Secret"}
    assert ref["key"] == "api-token" and "api-token" in secrets[ref["name"]]["data"]
    # The records service starts with what the chart gives it, and would not without the token.
    env = {k: v for k, v in _env(by_kind("default", "Deployment")["records"]).items() if isinstance(v, str)}
    assert load(RecordsServiceSettings, env, api_token="api-token-0123456789").grpc_host == "0.0.0.0"
    with pytest.raises(ValueError, match="PA_API_TOKEN: required when PA_GRPC_HOST"):
        load(RecordsServiceSettings, env)


def test_schema_refuses_a_short_token_and_a_bad_secret_name() -> None:
    with helm.Chart.load(str(CHART)) as chart:
        with pytest.raises(helm.HelmValuesError, match="/secrets/apiToken"):
            chart.validate_schema(chart.merge_values({"secrets": {"apiToken": "short"}}))
        with pytest.raises(helm.HelmValuesError, match="/approvals/existingSecret"):
            chart.validate_schema(chart.merge_values({"approvals": {"existingSecret": "Not_A_Name"}}))


def test_grpc_tls_from_a_secret() -> None:
    plain = _env(by_kind("default", "Deployment")["records"])
    assert "PA_GRPC_TLS_CERT_FILE" not in plain
    text = render_raw({"records": {"grpc": {"tls": {"existingSecret": "pa-grpc-tls"}}}})
    rendered = text["phone-agent/templates/records/deployment.yaml"]
    assert "PA_GRPC_TLS_CERT_FILE" in rendered and "/var/run/phone-agent/grpc-tls/tls.crt" in rendered
    assert "PA_GRPC_TLS_KEY_FILE" in rendered and "secretName: pa-grpc-tls" in rendered

"""Lint and render the Helm chart offline and check what a cluster operator relies on."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from support.chart import (
    CHART,
    MODEL_SERVICES,
    NAMESPACE,
    PROFILES,
    RELEASE,
    SERVICES,
    by_kind,
    helm,
    manifests,
    notes,
    render_raw,
)

# The one lint finding we accept: the NATS subchart is fetched by `helm dependency build`, not vendored.
MISSING_NATS = "chart directory is missing these dependencies: nats"


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_lint_has_no_findings_beyond_the_unfetched_nats_subchart(profile: str) -> None:
    report = helm.lint(
        str(CHART), PROFILES[profile], strict=True, namespace=NAMESPACE, kube_version="v1.30.0"
    )
    findings = [m["error"] for m in report["messages"] if m["severity"] >= 2]
    assert findings == [MISSING_NATS], findings


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


@pytest.mark.parametrize("profile", ["default", "gpu"])
def test_every_service_has_a_deployment_service_and_pdb(profile: str) -> None:
    for kind in ("Deployment", "Service", "PodDisruptionBudget"):
        assert set(SERVICES) <= set(by_kind(profile, kind)), kind


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_probes_are_distinct_and_drain_fits_the_grace_period(profile: str) -> None:
    values = helm.Chart.load(str(CHART)).merge_values(PROFILES[profile])
    drain = values["drain"]
    for name, dep in by_kind(profile, "Deployment").items():
        pod = dep["spec"]["template"]["spec"]
        c = _container(dep)
        startup, ready, live = c["startupProbe"], c["readinessProbe"], c["livenessProbe"]
        assert ready["httpGet"]["path"] == "/readyz"
        assert live["httpGet"]["path"] == "/healthz"
        assert startup != live and startup != ready
        # The startup probe must allow the service's whole model-loading budget.
        budget = values[name]["startupTimeoutSeconds"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= budget
        pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
        assert pre_stop == ["sleep", str(drain["preStopSleepSeconds"])]
        env = _env(c)
        assert env["PA_DRAIN_TIMEOUT_S"] == str(drain["timeoutSeconds"])
        assert pod["terminationGracePeriodSeconds"] > drain["preStopSleepSeconds"] + drain["timeoutSeconds"]


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_images_are_pinned_and_pods_run_as_non_root(profile: str) -> None:
    for name, dep in by_kind(profile, "Deployment").items():
        c = _container(dep)
        repo, _, tag = c["image"].rpartition(":")
        assert repo.endswith(f"-{name}") and tag and "latest" not in tag
        assert c["args"] == ["serve", name]
        assert dep["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        env = _env(c)
        assert env["PA_SERVICE_REPLICA_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        assert env["PA_NATS_URL"].startswith("nats://")
        assert env["PA_HTTP_HOST"] == "0.0.0.0", "probes reach the pod IP, not loopback"


def test_gpu_profile_schedules_model_services_on_gpus_with_cuda_images() -> None:
    deployments = by_kind("gpu", "Deployment")
    for name in MODEL_SERVICES:
        dep = deployments[name]
        pod = dep["spec"]["template"]["spec"]
        c = _container(dep)
        assert c["image"].endswith("-cuda")
        assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert "replicas" not in dep["spec"], "an autoscaler owns the replica count"
    for name in MODEL_SERVICES:
        c = _container(by_kind("default", "Deployment")[name])
        assert not c["image"].endswith("-cuda")
        assert "nvidia.com/gpu" not in str(c["resources"])


def test_keda_scales_model_services_on_active_sessions_and_bus_backlog() -> None:
    scaled = by_kind("gpu", "ScaledObject")
    assert set(scaled) == set(MODEL_SERVICES)
    for name, obj in scaled.items():
        assert obj["spec"]["scaleTargetRef"]["name"] == by_kind("gpu", "Deployment")[name]["metadata"]["name"]
        triggers = {t["name"]: t for t in obj["spec"]["triggers"]}
        # llm also scales on its post-call summary jobs (test_keda_scales_llm_on_the_summary_work_queue).
        assert set(triggers) == {"active-sessions", "bus-backlog"} | (
            {"work-queue"} if name == "llm" else set()
        )
        assert all(t["type"] == "prometheus" for n, t in triggers.items() if n != "work-queue")
        assert f'stage="{name}"' in triggers["active-sessions"]["metadata"]["query"]
        # The queue label is <stage>:<subject kind> with no replica id (runtime/queues.py).
        backlog = triggers["bus-backlog"]["metadata"]
        assert backlog["query"] == f'sum(pa_queue_depth{{namespace="phone-agent",queue=~"{name}:.+"}})'
        assert backlog["threshold"] == "20"
    assert not by_kind("gpu", "HorizontalPodAutoscaler")
    for name in ("asr", "llm"):  # backlog and summary-job triggers off: sessions only
        (only,) = by_kind("keda-sessions-only", "ScaledObject")[name]["spec"]["triggers"]
        assert only["name"] == "active-sessions"


def _jetstream_triggers(profile: str) -> dict[str, list[dict[str, Any]]]:
    return {
        name: [t for t in obj["spec"]["triggers"] if t["type"] == "nats-jetstream"]
        for name, obj in by_kind(profile, "ScaledObject").items()
    }


def test_keda_scales_llm_on_the_summary_work_queue() -> None:
    from phoneagent.runtime import streams, subjects

    found = _jetstream_triggers("gpu")
    assert not found["asr"] and not found["tts"]  # live stage work has no JetStream consumer
    (work,) = found["llm"]
    meta = work["metadata"]
    # The stream and durable consumer the llm's summary worker pulls from (runtime/subjects.py).
    assert (meta["stream"], meta["consumer"]) == (subjects.WORK_STREAM, subjects.LLM_SUMMARIES_CONSUMER)
    consumer = next(c for c in streams.work_consumers() if c.name == meta["consumer"])
    assert consumer.filter_subject == subjects.WORK_SUMMARIZE
    assert any(c.name == subjects.WORK_STREAM for c in streams.stream_configs())
    assert meta["lagThreshold"] == "10" and meta["account"] == "$G" and meta["useHttps"] == "false"
    # The bundled NATS: its headless Service (KEDA reaches a cluster's consumer leader as <pod>.<service>).
    assert meta["natsServerMonitoringEndpoint"] == f"{RELEASE}-nats-headless.{NAMESPACE}.svc:8222"
    (external,) = _jetstream_triggers("keda-external-nats")["llm"]
    assert external["metadata"]["natsServerMonitoringEndpoint"] == "nats-headless.messaging.svc:8222"
    assert external["metadata"]["account"] == "PHONE" and external["metadata"]["useHttps"] == "true"
    assert external["metadata"]["lagThreshold"] == "3"
    # An external NATS without a monitoring endpoint is refused at render time, with what to set.
    values = dict(PROFILES["keda-external-nats"], bus={"externalUrl": "nats://nats.messaging.svc:4222"})
    with pytest.raises(Exception, match="bus.externalMonitoringEndpoint"):
        render_raw(values)


def test_backlog_query_selects_the_labels_the_runtime_queues_use() -> None:
    from phoneagent.runtime import subjects
    from phoneagent.runtime.bus import subject_kind
    from phoneagent.runtime.queues import metric_label

    query = by_kind("gpu", "ScaledObject")["asr"]["spec"]["triggers"][1]["metadata"]["query"]
    pattern = re.search(r'queue=~"([^"]+)"', query)
    assert pattern is not None
    # The name the bus gives an ASR replica's per-call audio queue (runtime/service.py, runtime/bus.py).
    label = metric_label(f"asr/pa-phone-agent-asr-5d9f8b-x2x7q:{subject_kind(subjects.audio_in('c1'))}")
    assert re.fullmatch(pattern[1], label) and not re.fullmatch(pattern[1], "tts:call.say")


def test_hpa_mode_renders_hpas_instead_of_scaled_objects() -> None:
    hpas = by_kind("hpa", "HorizontalPodAutoscaler")
    assert set(hpas) == set(MODEL_SERVICES)
    assert not by_kind("hpa", "ScaledObject")
    metrics = hpas["llm"]["spec"]["metrics"]
    assert {m["type"] for m in metrics} == {"Resource", "Pods"}
    assert not by_kind("default", "HorizontalPodAutoscaler") and not by_kind("default", "ScaledObject")


def test_edge_exposes_sip_on_udp_and_tcp_and_records_exposes_grpc() -> None:
    services = by_kind("default", "Service")
    sip = {
        (p["port"], p["protocol"]) for p in services["edge"]["spec"]["ports"] if p["name"].startswith("sip")
    }
    assert sip == {(5060, "UDP"), (5060, "TCP")}
    grpc = [p for p in services["records"]["spec"]["ports"] if p["name"] == "grpc"]
    assert grpc and grpc[0]["port"] == 50051
    assert [p["name"] for p in services["policy"]["spec"]["ports"]] == ["http"]  # the API moved to records
    env = _env(_container(by_kind("default", "Deployment")["edge"]))
    assert (env["PA_RTP_PORT_MIN"], env["PA_RTP_PORT_MAX"]) == ("30000", "30099")


def test_host_network_edge_keeps_one_replica_per_node_and_advertises_public_address() -> None:
    dep = by_kind("gpu", "Deployment")["edge"]
    pod = dep["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    (term,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert _env(_container(dep))["PA_SIP_PUBLIC_ADDRESS"] == "203.0.113.10"


def test_nodeport_rtp_service_maps_each_port_one_to_one() -> None:
    rtp = [
        o
        for o in manifests("nodeport-rtp")
        if o["kind"] == "Service" and o["metadata"]["name"].endswith("-rtp")
    ]
    (svc,) = rtp
    ports = svc["spec"]["ports"]
    assert [p["port"] for p in ports] == list(range(31000, 31010))
    assert all(p["port"] == p["nodePort"] == p["targetPort"] and p["protocol"] == "UDP" for p in ports)


def test_external_nats_model_volume_and_existing_secret_are_wired() -> None:
    objs = manifests("nodeport-rtp")
    secrets = [o["metadata"]["name"] for o in objs if o["kind"] == "Secret"]
    # the bus users' passwords are a Secret of their own (bus.auth), not the trunk/API one
    assert secrets == ["phone-agent-bus-users"], "existingSecret must suppress the chart's Secret"
    edge = _container(by_kind("nodeport-rtp", "Deployment")["edge"])
    env = _env(edge)
    assert env["PA_NATS_URL"] == "nats://nats.messaging.svc:4222"
    assert env["PA_SIP_TRUNK_PASSWORD"]["secretKeyRef"]["name"] == "pa-creds"
    assert env["PA_MODEL_DIR"] == "/models"
    asr = by_kind("nodeport-rtp", "Deployment")["asr"]["spec"]["template"]["spec"]
    claim = next(v for v in asr["volumes"] if v["name"] == "models")["persistentVolumeClaim"]
    assert claim == {"claimName": "pa-models", "readOnly": True}


def test_agent_file_is_mounted_from_a_config_map_and_rolls_pods_on_change() -> None:
    default = _env(_container(by_kind("default", "Deployment")["llm"]))
    assert "PA_AGENT_FILE" not in default, "no agent file: the services run the bundled demo agent"
    first = render_raw({"agent": {"file": "name: front_desk\n"}})
    cm = next(d for d in yaml.safe_load_all(first["phone-agent/templates/common/configmap-agent.yaml"]) if d)
    assert cm["data"]["agent.yaml"] == "name: front_desk\n"
    dep = yaml.safe_load(first["phone-agent/templates/llm/deployment.yaml"])
    pod = dep["spec"]["template"]["spec"]
    assert _env(pod["containers"][0])["PA_AGENT_FILE"] == "/etc/phone-agent/agent.yaml"
    assert {
        "name": "agent",
        "configMap": {"name": cm["metadata"]["name"], "items": [{"key": "agent.yaml", "path": "agent.yaml"}]},
    } in pod["volumes"]
    second = render_raw({"agent": {"file": "name: other\n"}})
    checksum = dep["spec"]["template"]["metadata"]["annotations"]["checksum/agent"]
    assert checksum not in second["phone-agent/templates/llm/deployment.yaml"]
    own = render_raw({"agent": {"existingConfigMap": "my-agent"}})
    assert not own["phone-agent/templates/common/configmap-agent.yaml"].strip()
    assert "name: my-agent" in own["phone-agent/templates/tts/deployment.yaml"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"nats": {"enabled": False}}, "bus.externalUrl"),
        ({"edge": {"rtp": {"nodePortService": True, "portMin": 20000, "portMax": 20099}}}, "NodePort range"),
        ({"edge": {"rtp": {"nodePortService": True, "portMin": 30000, "portMax": 30999}}}, "at most 256"),
        ({"image": {"tag": "latest"}}, "/image/tag"),
        ({"models": {"volume": {"enabled": True}}}, "existingClaim"),
    ],
)
def test_inconsistent_values_fail_with_a_message_naming_the_setting(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmError, match=message):
        render_raw(values)


def test_notes_explain_sip_nat_and_rtp_exposure() -> None:
    text = notes("default")
    assert "PA_SIP_PUBLIC_ADDRESS" in text and "hostNetwork" in text and "NodePort" in text
    assert "WARNING" in text  # neither RTP exposure nor a public address is configured by default
    sip = notes("gpu").split("SIP and RTP")[1].split("Browser page")[0]
    assert "WARNING" not in sip  # host networking and a public address


def _claim(name: str) -> dict[str, Any]:
    (pvc,) = [
        o
        for o in manifests("default")
        if o["kind"] == "PersistentVolumeClaim" and o["metadata"]["name"].endswith(f"-{name}-data")
    ]
    return pvc


def test_policy_keeps_its_store_on_a_volume() -> None:
    dep = by_kind("default", "Deployment")["policy"]
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    pod = dep["spec"]["template"]["spec"]
    env = _env(_container(dep))
    assert env["PA_POLICY_DB"].startswith("/var/lib/phone-agent/")
    assert "PA_GRPC_PORT" not in env and "PA_RECORDS_DB" not in env
    data = next(v for v in pod["volumes"] if v["name"] == "data")
    assert data["persistentVolumeClaim"]["claimName"] == _claim("policy")["metadata"]["name"]
    # Several replicas share a PostgreSQL database instead (no volume, rolling updates).
    with pytest.raises(helm.HelmError, match="policy/database/external"):
        render_raw({"policy": {"replicas": 2}})
    shared = render_raw(
        {
            "policy": {"replicas": 2, "database": {"external": True}},
            "secrets": {"databaseUrl": "postgresql://h/db"},
        }
    )
    assert "RollingUpdate" in shared["phone-agent/templates/policy/deployment.yaml"]
    assert not shared["phone-agent/templates/policy/pvc.yaml"].strip()
    scratch = render_raw({"policy": {"persistence": {"enabled": False}}})
    assert "emptyDir" in scratch["phone-agent/templates/policy/deployment.yaml"]
    assert not scratch["phone-agent/templates/policy/pvc.yaml"].strip()


def test_records_keeps_its_store_on_a_volume_and_serves_grpc_on_all_interfaces() -> None:
    dep = by_kind("default", "Deployment")["records"]
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    c = _container(dep)
    assert c["args"] == ["serve", "records"]
    assert [p["containerPort"] for p in c["ports"] if p["name"] == "grpc"] == [50051]
    env = _env(c)
    assert env["PA_GRPC_HOST"] == "0.0.0.0" and env["PA_GRPC_PORT"] == "50051"
    assert env["PA_RECORDS_DB"].startswith("/var/lib/phone-agent/")
    assert env["PA_API_TOKEN"]["secretKeyRef"]["key"] == "api-token"
    data = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "data")
    assert data["persistentVolumeClaim"]["claimName"] == _claim("records")["metadata"]["name"]
    with pytest.raises(helm.HelmError, match="records.replicas"):
        render_raw({"records": {"replicas": 2}})
    scratch = render_raw({"records": {"replicas": 2, "persistence": {"enabled": False}}})
    assert "emptyDir" in scratch["phone-agent/templates/records/deployment.yaml"]
    assert not scratch["phone-agent/templates/records/pvc.yaml"].strip()
    off = render_raw({"records": {"enabled": False}})
    assert not off["phone-agent/templates/records/deployment.yaml"].strip()
    assert "Control API (gRPC): pa-phone-agent-records." in notes("default")


def test_records_serves_the_console_behind_the_api_token() -> None:
    c = _container(by_kind("default", "Deployment")["records"])
    assert [p["containerPort"] for p in c["ports"] if p["name"] == "console"] == [8470]
    env = _env(c)
    assert env["PA_CONSOLE_HOST"] == "0.0.0.0" and env["PA_CONSOLE_PORT"] == "8470"
    assert env["PA_CONSOLE_SECURE_COOKIE"] == "false" and "PA_CONSOLE_ENABLED" not in env
    assert env["PA_API_TOKEN"]["secretKeyRef"]["key"] == "api-token"  # the console's token too
    ports = by_kind("default", "Service")["records"]["spec"]["ports"]
    assert [(p["port"], p["targetPort"]) for p in ports if p["name"] == "console"] == [(8470, "console")]
    assert "Operator console (HTTP, the API token)" in notes("default")
    off = render_raw({"records": {"console": {"enabled": False, "port": 8470}}})
    deployment = off["phone-agent/templates/records/deployment.yaml"]
    assert "PA_CONSOLE_ENABLED" in deployment and "containerPort: 8470" not in deployment
    assert "console" not in off["phone-agent/templates/records/service.yaml"]


def test_notes_scale_replicas_the_way_the_autoscaling_mode_allows_and_open_the_dashboards() -> None:
    keda = notes("gpu")
    # Under KEDA a ScaledObject owns the replica count: kubectl scale would be undone.
    assert "--set asr.autoscaling.minReplicas=4" in keda and "get scaledobject,hpa,deployment" in keda
    assert "kubectl scale deployment" not in keda
    assert "--set asr.replicas=4" in notes("default")
    assert "--set asr.autoscaling.minReplicas=4" in notes("hpa") and "scaledobject" not in notes("hpa")
    titles = [json.loads(p.read_text())["title"] for p in sorted((CHART / "dashboards").glob("*.json"))]
    assert titles and all(t.removeprefix("Phone agent ") in keda for t in titles), titles
    assert "port-forward svc/kube-prometheus-stack-grafana" in keda and "grafana_dashboard=1" in keda
    assert "serviceMonitor.enabled is false" in notes("default") and "serviceMonitor" not in keda
    off = render_raw({"metrics": {"dashboards": {"enabled": False}}})
    assert "Dashboards\n" not in next(t for p, t in off.items() if p.endswith("NOTES.txt"))


def test_each_service_connects_as_its_own_bus_user_with_only_its_password() -> None:
    objs = manifests("default")
    secret = next(
        o for o in objs if o["kind"] == "Secret" and o["metadata"]["name"] == "phone-agent-bus-users"
    )
    for name, deployment in by_kind("default", "Deployment").items():
        env = _env(_container(deployment))
        assert env["PA_NATS_USER"] == name and env["PA_NATS_PASSWORD_FILE"] == "/etc/phone-agent/bus/password"
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["bus-password"]["secret"]["items"] == [{"key": name, "path": "password"}]
        assert name in secret["data"]


def test_bus_tls_mounts_the_ca_and_uses_a_tls_url() -> None:
    rendered = render_raw({"bus": {"tls": {"enabled": True, "caSecretName": "nats-ca"}}})
    objs = [
        doc
        for p, t in rendered.items()
        if not p.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(t)
        if doc
    ]
    for deployment in (o for o in objs if o["kind"] == "Deployment"):
        env = _env(_container(deployment))
        assert env["PA_NATS_URL"].startswith("tls://") and env["PA_NATS_TLS_CA_FILE"].endswith("/ca.crt")
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["bus-ca"]["secret"]["secretName"] == "nats-ca"


def test_the_bus_users_values_file_is_what_the_generator_prints() -> None:
    from phoneagent.runtime import bus_auth

    shipped = yaml.safe_load((CHART / "values-bus-users.yaml").read_text())
    assert shipped == bus_auth.helm_values("phone-agent-bus-users"), (
        "regenerate: phone-agent bus-config > deploy/k8s/phone-agent/values-bus-users.yaml"
    )

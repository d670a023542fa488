"""The edge as the chart deploys it: SIP/RTP reachable on the pod, the advertised address, the web page,
who may call in (trunks, the host-network guard), metrics and health on an internal Service only.

The rendered environment is resolved the way the kubelet would (downward API, the chart's Secret) and
loaded with the edge's own settings classes, so a chart that would make the edge refuse to start, or
bind loopback, fails here.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
import yaml
from phoneagent.edge.settings import EdgeSettings
from phoneagent.edge.webrtc.settings import WebRtcSettings
from phoneagent.runtime.settings import SettingsError, load
from support.chart import CHART, DOCKER, by_kind, gpu_values, helm, manifests, notes, render_raw

POD_IP = "10.42.0.17"
NODE_IP = "192.0.2.5"
FIELDS = {"status.podIP": POD_IP, "status.hostIP": NODE_IP, "metadata.name": "pa-phone-agent-edge-0"}


def _objects(values: dict[str, Any] | str) -> list[dict[str, Any]]:
    if isinstance(values, str):
        return manifests(values)
    return [
        d
        for path, text in render_raw(values).items()
        if not path.endswith("NOTES.txt")
        for d in yaml.safe_load_all(text)
        if d
    ]


def _edge(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (dep,) = [
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["labels"]["app.kubernetes.io/component"] == "edge"
    ]
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    return container


def _environ(objects: list[dict[str, Any]]) -> dict[str, str]:
    """The edge container's environment as the kubelet resolves it."""
    secrets = {
        o["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in (o.get("data") or {}).items()}
        for o in objects
        if o["kind"] == "Secret"
    }
    out: dict[str, str] = {}
    for var in _edge(objects)["env"]:
        if "value" in var:
            out[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: out[m[1]], var["value"])
        elif "fieldRef" in var["valueFrom"]:
            out[var["name"]] = FIELDS[var["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            value = secrets.get(ref["name"], {}).get(ref["key"])
            if value is not None:
                out[var["name"]] = value
            else:
                assert ref.get("optional"), f"{var['name']}: secret key {ref['key']} missing"
    return out


def test_default_edge_binds_every_pod_interface_and_advertises_the_pod_ip() -> None:
    objects = _objects("default")
    env = _environ(objects)
    settings = load(EdgeSettings, env)  # the edge would start with this environment
    assert settings.sip_host == "0.0.0.0"
    assert settings.advertised == POD_IP
    assert settings.sip_port == 5060 and settings.sip_port_fallback is False
    ports = {
        (p["containerPort"], p["protocol"]) for p in _edge(objects)["ports"] if p["name"].startswith("sip")
    }
    assert ports == {(5060, "UDP"), (5060, "TCP")}
    assert "status.podIP" in notes("default")


def test_a_configured_public_address_wins_over_the_downward_api() -> None:
    settings = load(EdgeSettings, _environ(_objects("gpu")))  # hostNetwork and edge.sip.publicAddress
    assert settings.sip_host == "0.0.0.0" and settings.advertised == "203.0.113.10"
    assert "203.0.113.10" in notes("gpu")


def test_nodeport_edge_advertises_the_node_address_and_the_node_port() -> None:
    objects = _objects("nodeport-rtp")
    settings = load(EdgeSettings, _environ(objects))
    assert settings.advertised == NODE_IP, "callers reach NodePorts on the node, not the pod IP"
    assert settings.sip_port == 30060, "the port written into Contact/Via must be the SIP NodePort"
    edge = _edge(objects)
    assert {p["containerPort"] for p in edge["ports"] if p["name"].startswith("sip")} == {30060}
    svc = by_kind("nodeport-rtp", "Service")["edge"]
    sip = [p for p in svc["spec"]["ports"] if p["name"].startswith("sip")]
    assert {(p["nodePort"], p["targetPort"]) for p in sip} == {(30060, "sip-udp"), (30060, "sip-tcp")}
    assert "status.hostIP" in notes("nodeport-rtp")


def test_nodeport_without_a_fixed_sip_port_is_refused() -> None:
    with pytest.raises(helm.HelmError, match="edge.service.sipNodePort is required"):
        render_raw({"edge": {"service": {"type": "NodePort"}}})


def test_schema_refuses_a_public_address_the_edge_would_refuse() -> None:
    with helm.Chart.load(str(CHART)) as chart:
        with pytest.raises(helm.HelmValuesError, match="/edge/sip/publicAddress"):
            chart.validate_schema(chart.merge_values({"edge": {"sip": {"publicAddress": "sip.example.com"}}}))
    with pytest.raises(SettingsError, match="PA_SIP_PUBLIC_ADDRESS"):
        load(EdgeSettings, {"PA_SIP_HOST": "0.0.0.0", "PA_SIP_PUBLIC_ADDRESS": "sip.example.com"})


def test_edge_image_binds_sip_on_every_interface() -> None:
    text = (DOCKER / "edge.Dockerfile").read_text()
    assert "PA_SIP_HOST=0.0.0.0" in text and "PA_SIP_PUBLIC_ADDRESS" in text


WEB = {"edge": {"web": {"enabled": True}}, "secrets": {"webToken": "page-token-1"}}


def test_web_page_is_off_by_default_and_its_port_not_exposed() -> None:
    objects = _objects("default")
    assert _environ(objects)["PA_WEB_ENABLED"] == "false"
    svc = by_kind("default", "Service")["edge"]
    assert "web" not in {p["name"] for p in svc["spec"]["ports"]}
    assert "edge.web.enabled=true" in notes("default")


def test_enabled_web_page_listens_on_the_pod_with_a_token_and_is_exposed() -> None:
    objects = _objects(WEB)
    env = _environ(objects)
    web = load(WebRtcSettings, env)  # the gateway would start with this environment
    assert web.host == "0.0.0.0" and web.port == 8088
    assert web.token == "page-token-1", "the token comes from the chart's Secret (key web-token)"
    assert web.ice_addresses == [POD_IP]
    assert env["PA_WEB_ENABLED"] == "true"
    assert {"name": "web", "containerPort": 8088, "protocol": "TCP"} in _edge(objects)["ports"]
    (svc,) = [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"].endswith("-edge")]
    assert {"name": "web", "port": 8088, "targetPort": "web", "protocol": "TCP"} in svc["spec"]["ports"]
    text = next(t for p, t in render_raw(WEB).items() if p.endswith("NOTES.txt"))
    assert "port-forward svc/pa-phone-agent-edge 8088" in text
    assert "HTTPS" in text and "Ingress with TLS" in text
    assert "8080" not in text.split("Browser page")[1], "the page is not on the metrics port"


def test_web_ice_addresses_and_an_existing_secret() -> None:
    values = {
        "edge": {"web": {"enabled": True, "port": 9443, "iceAddresses": ["203.0.113.7", "10.0.0.9"]}},
        "secrets": {"existingSecret": "pa-creds"},
    }
    container = _edge(_objects(values))
    env = {e["name"]: e for e in container["env"]}
    assert env["PA_WEB_ICE_ADDRESSES"]["value"] == "203.0.113.7,10.0.0.9"
    assert env["PA_WEB_PORT"]["value"] == "9443"
    assert env["PA_WEB_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "pa-creds", "key": "web-token"}


def test_web_page_without_a_token_is_refused() -> None:
    with pytest.raises(helm.HelmError, match="secrets.webToken is required"):
        render_raw({"edge": {"web": {"enabled": True}}})
    with helm.Chart.load(str(CHART)) as chart:
        with pytest.raises(helm.HelmValuesError, match="/edge/web/iceAddresses"):
            chart.validate_schema(chart.merge_values({"edge": {"web": {"iceAddresses": ["edge.local"]}}}))


# --- who may reach the edge -------------------------------------------------------------------

DIGEST = {
    "edge": {"sip": {"trunks": [{"name": "pbx", "sources": ["192.0.2.0/28"], "username": "pbx-user"}]}},
    "secrets": {"sipInboundPasswords": {"pbx": "pbx-pass"}, "sipDigestSecret": "d" * 40},
}


def _edge_services(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        o["metadata"]["name"]: o
        for o in objects
        if o["kind"] == "Service" and o["metadata"]["labels"]["app.kubernetes.io/component"] == "edge"
    }


def test_default_chart_refuses_every_inbound_call_until_trunks_are_listed() -> None:
    settings = load(EdgeSettings, _environ(_objects("default")))
    assert settings.trunks == ()  # the edge answers every INVITE with 403
    assert "edge.sip.trunks is empty" in notes("default")
    assert "Trunks: carrier (198.51.100.0/24)" in notes("gpu")


def test_digest_trunk_reaches_the_edge_with_its_password_and_the_shared_nonce_secret() -> None:
    settings = load(EdgeSettings, _environ(_objects(DIGEST)))
    (trunk,) = settings.trunks
    assert trunk.name == "pbx" and trunk.username == "pbx-user" and trunk.matches("192.0.2.3")
    assert not trunk.matches("192.0.2.99")
    assert settings.trunk_passwords == {"pbx": "pbx-pass"}
    assert settings.digest_secret == "d" * 40  # from the Secret: the same on every replica


def test_a_trunks_srtp_policy_reaches_the_edge_and_bad_ones_fail_the_schema() -> None:
    trunks = [{"name": "carrier", "sources": ["198.51.100.0/24"], "srtp": "required"}]
    settings = load(EdgeSettings, _environ(_objects({"edge": {"sip": {"trunks": trunks}}})))
    assert [(t.name, t.srtp) for t in settings.trunks] == [("carrier", "required")]
    with pytest.raises(helm.HelmError, match="srtp"):
        render_raw({"edge": {"sip": {"trunks": [{**trunks[0], "srtp": "always"}]}}})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"secrets": {"sipInboundPasswords": {"pbx": "pbx-pass"}}}, "secrets.sipDigestSecret is required"),
        ({"secrets": {"sipDigestSecret": "d" * 40, "sipInboundPasswords": {}}}, "sipInboundPasswords.pbx"),
    ],
)
def test_digest_trunk_without_its_secrets_fails_to_render(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmError, match=message):
        render_raw({"edge": DIGEST["edge"], **values})


def test_host_network_needs_every_trunk_to_name_its_sources() -> None:
    settings = load(EdgeSettings, _environ(_objects("gpu")))
    assert [t.name for t in settings.trunks] == ["carrier"] and settings.trunks[0].matches("198.51.100.7")
    gpu = gpu_values()
    for trunks, message in (
        ([], "edge.sip.trunks: list your provider's source ranges"),
        ([{"name": "any", "username": "u"}], r"trunks\[any\].sources: required"),
        ([{"name": "all", "sources": ["0.0.0.0/0"], "username": "u"}], "admits every address"),
    ):
        values = {**gpu, "edge": {**gpu["edge"], "sip": {**gpu["edge"]["sip"], "trunks": trunks}}}
        with pytest.raises(helm.HelmError, match=message):
            render_raw(values)


@pytest.mark.parametrize("profile", ["default", "gpu", "monitoring"])
def test_metrics_and_health_are_only_on_the_internal_cluster_ip_service(profile: str) -> None:
    services = _edge_services(manifests(profile))
    internal = services.pop("pa-phone-agent-edge-internal")
    assert internal["spec"]["type"] == "ClusterIP"
    assert [p["name"] for p in internal["spec"]["ports"]] == ["http"]
    for svc in services.values():  # the public SIP Service (and the RTP NodePorts, when rendered)
        assert "http" not in {p["name"] for p in svc["spec"]["ports"]}, svc["metadata"]["name"]


def test_a_load_balancer_edge_keeps_http_internal() -> None:
    values = {
        "edge": {
            "service": {
                "type": "LoadBalancer",
                "loadBalancerSourceRanges": ["203.0.113.0/24"],
                "annotations": {"cloud/lb": "external"},
            }
        }
    }
    services = _edge_services(_objects(values))
    public, internal = services["pa-phone-agent-edge"], services["pa-phone-agent-edge-internal"]
    assert public["spec"]["type"] == "LoadBalancer" and "http" not in {
        p["name"] for p in public["spec"]["ports"]
    }
    assert internal["spec"]["type"] == "ClusterIP" and "annotations" not in internal["metadata"]


def test_the_service_monitor_scrapes_the_port_only_the_internal_service_has() -> None:
    monitor = by_kind("monitoring", "ServiceMonitor")["edge"]
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["http"]


@pytest.mark.parametrize("extra", [{}, gpu_values()])
def test_nats_monitoring_stays_off_the_client_service(extra: dict[str, Any]) -> None:
    with helm.Chart.load(str(CHART)) as chart:
        values = chart.merge_values(extra)
    assert values["nats"]["service"]["ports"]["monitor"]["enabled"] is False
    assert values["nats"]["config"]["monitor"]["enabled"] is True  # KEDA reads it via the headless Service


@pytest.mark.parametrize(
    "trunk",
    [
        {"name": "x", "sources": ["192.0.2.0/24"], "password": "inline"},  # passwords go in the Secret
        {"name": "bad name", "sources": ["192.0.2.0/24"]},
        {"name": "x"},  # neither sources nor a username
        {"name": "x", "sources": ["trunk.example.com"]},
    ],
)
def test_schema_refuses_malformed_trunks(trunk: dict[str, Any]) -> None:
    with helm.Chart.load(str(CHART)) as chart:
        with pytest.raises(helm.HelmValuesError, match="/edge/sip/trunks"):
            chart.validate_schema(chart.merge_values({"edge": {"sip": {"trunks": [trunk]}}}))


REGISTERING = {
    "edge": {
        "sip": {
            "trunks": [
                {
                    "name": "office",
                    "register": {"registrar": "sip:pbx.example.com;transport=tcp", "user": "1001"},
                }
            ]
        }
    },
    "secrets": {"sipRegisterPasswords": {"office": "reg-pass"}},
}


def test_a_registering_trunk_reaches_the_edge_with_its_password() -> None:
    settings = load(EdgeSettings, _environ(_objects(REGISTERING)))
    (trunk,) = settings.trunks
    assert trunk.register is not None and trunk.register.user == "1001"
    assert trunk.register.uri.transport == "tcp"
    assert settings.register_password_map == {"office": "reg-pass"}
    assert not trunk.matches("192.0.2.3")  # only its registrar's flow calls in as this trunk


def test_host_network_accepts_a_trunk_that_only_registers() -> None:
    gpu = gpu_values()
    trunks = REGISTERING["edge"]["sip"]["trunks"]
    values = {**gpu, "edge": {**gpu["edge"], "sip": {**gpu["edge"]["sip"], "trunks": trunks}}}
    assert [t.name for t in load(EdgeSettings, _environ(_objects(values))).trunks] == ["office"]


@pytest.mark.parametrize(
    "register",
    [
        {"registrar": "sip:pbx.example.com"},  # no user
        {"registrar": "pbx.example.com", "user": "1001"},  # not a SIP URI
        {
            "registrar": "sip:pbx.example.com",
            "user": "1001",
            "password": "inline",
        },  # passwords go in the Secret
    ],
)
def test_schema_refuses_malformed_registrations(register: dict[str, Any]) -> None:
    with helm.Chart.load(str(CHART)) as chart:
        with pytest.raises(helm.HelmValuesError, match="/edge/sip/trunks"):
            chart.validate_schema(
                chart.merge_values({"edge": {"sip": {"trunks": [{"name": "x", "register": register}]}}})
            )


TLS = {"edge": {"sip": {"tls": {"enabled": True, "existingSecret": "pa-sip-tls", "caKey": "ca.crt"}}}}


def test_sip_over_tls_listens_with_the_secret_certificate(tmp_path: Any) -> None:
    objects = _objects(TLS)
    edge = _edge(objects)
    assert {(p["name"], p["containerPort"], p["protocol"]) for p in edge["ports"]} >= {
        ("sip-tls", 5061, "TCP")
    }
    (mount,) = [m for m in edge["volumeMounts"] if m["name"] == "sip-tls"]
    assert mount["readOnly"] and mount["mountPath"] == "/var/run/phone-agent/sip-tls"
    (dep,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("edge")]
    (volume,) = [v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "sip-tls"]
    assert volume["secret"]["secretName"] == "pa-sip-tls"
    env = _environ(objects)
    assert env["PA_SIP_TLS_CERT_FILE"] == "/var/run/phone-agent/sip-tls/tls.crt"
    assert env["PA_SIP_TLS_KEY_FILE"] == "/var/run/phone-agent/sip-tls/tls.key"
    assert env["PA_SIP_TLS_CA_FILE"] == "/var/run/phone-agent/sip-tls/ca.crt"
    # the edge would start with this environment once the Secret's files are there
    for name in ("PA_SIP_TLS_CERT_FILE", "PA_SIP_TLS_KEY_FILE", "PA_SIP_TLS_CA_FILE"):
        local = tmp_path / env[name].rsplit("/", 1)[1]
        local.write_text("pem")
        env[name] = str(local)
    settings = load(EdgeSettings, env)
    assert "tls" in settings.sip_transports and settings.tls_port == 5061
    assert settings.tls is not None and settings.tls.verify_server
    public = [svc for name, svc in _edge_services(objects).items() if not name.endswith("-internal")]
    (svc,) = public
    assert ("sip-tls", 5061, "sip-tls") in {
        (p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]
    }


def test_tls_is_off_by_default_and_needs_its_secret() -> None:
    assert "sip-tls" not in {p["name"] for p in _edge(_objects("default"))["ports"]}
    assert "PA_SIP_TRANSPORTS" not in _environ(_objects("default"))
    with pytest.raises(helm.HelmError, match="edge.sip.tls.existingSecret is required"):
        render_raw({"edge": {"sip": {"tls": {"enabled": True}}}})
    with pytest.raises(helm.HelmError, match="edge.service.sipTlsNodePort is required"):
        render_raw(
            {
                "edge": {
                    "sip": {"tls": {"enabled": True, "existingSecret": "s"}},
                    "service": {"type": "NodePort", "sipNodePort": 30060},
                }
            }
        )

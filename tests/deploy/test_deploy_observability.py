"""Dashboards, alert rules and autoscaler queries use only the metrics the services export and record."""

from __future__ import annotations

import ast
import json
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import Counter, Gauge, Histogram
from support.chart import CHART, REPO, manifests

try:
    import phoneagent.runtime.metrics as metrics_mod
except ImportError:  # not installed: import it from the source tree
    sys.path.insert(0, str(REPO / "services"))
    import phoneagent.runtime.metrics as metrics_mod

METRIC = re.compile(r"\b(pa_[a-z0-9_]+)")
SELECTOR = re.compile(r"\b(pa_[a-z0-9_]+)\{([^}]*)\}")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
# Labels Prometheus adds to every scraped series (ServiceMonitor target labels) plus histogram buckets.
TARGET_LABELS = {"namespace", "pod", "le"}
DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
HOPS = (
    "pa_asr_final_latency_seconds",
    "pa_llm_first_token_seconds",
    "pa_tts_first_audio_seconds",
    "pa_edge_first_packet_seconds",
    "pa_mouth_to_ear_seconds",
)


def _exported() -> dict[str, set[str]]:
    """Series name -> label names, for every metric phoneagent.runtime.metrics defines."""
    out: dict[str, set[str]] = {}
    for obj in vars(metrics_mod).values():
        if isinstance(obj, Histogram):
            for suffix in ("_bucket", "_sum", "_count"):
                out[obj._name + suffix] = set(obj._labelnames)
        elif isinstance(obj, Counter):
            out[obj._name + "_total"] = set(obj._labelnames)
        elif isinstance(obj, Gauge):
            out[obj._name] = set(obj._labelnames)
    return out


EXPORTED = _exported()


def _dashboard_exprs(board: dict[str, Any]) -> Iterator[str]:
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            yield target["expr"]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            yield var["query"]["query"]


def _chart_exprs() -> Iterator[tuple[str, str]]:
    for obj in manifests("gpu") + manifests("hpa") + manifests("monitoring"):
        if obj["kind"] == "PrometheusRule":
            for group in obj["spec"]["groups"]:
                for rule in group["rules"]:
                    yield rule["alert"], rule["expr"]
        elif obj["kind"] == "ScaledObject":
            for trig in obj["spec"]["triggers"]:
                if trig["type"] == "prometheus":
                    yield obj["metadata"]["name"], trig["metadata"]["query"]
        elif obj["kind"] == "HorizontalPodAutoscaler":
            for m in obj["spec"]["metrics"]:
                if m["type"] == "Pods":
                    name = m["pods"]["metric"]["name"]
                    labels = ",".join(
                        f'{k}="{v}"' for k, v in m["pods"]["metric"]["selector"]["matchLabels"].items()
                    )
                    yield obj["metadata"]["name"], f"{name}{{{labels}}}"
    for path in DASHBOARDS:
        for expr in _dashboard_exprs(json.loads(path.read_text())):
            yield path.name, expr


def _problems(expr: str) -> list[str]:
    """Unknown metric names or label names in one PromQL expression."""
    names = set(METRIC.findall(expr))
    problems = [f"unknown metric {n}" for n in sorted(names - set(EXPORTED))]
    allowed = TARGET_LABELS.union(*(EXPORTED.get(n, set()) for n in names))
    used = {
        m.split("=")[0].strip(" !~")
        for _, body in SELECTOR.findall(expr)
        for m in body.split(",")
        if m.strip()
    }
    for group in GROUPING.findall(expr):
        used |= {label.strip() for label in group.split(",") if label.strip()}
    problems += [f"unknown label {label}" for label in sorted(used - allowed)]
    return problems


SERVICES_DIR = REPO / "services"
METRICS_MODULE = "phoneagent.runtime.metrics"
# Calls on a metric object (or on one of its labelled children) that put a value in it.
RECORDING = {"inc", "dec", "set", "observe", "labels", "time", "set_function", "track_inprogress"}


def _recording_calls(source: str) -> set[str]:
    """Names (in phoneagent.runtime.metrics) of the metric objects a module records a value on:
    ``metrics.X.inc()``, ``metrics.X.labels(...)``, or ``X.observe()`` after ``from ... import X``."""
    tree = ast.parse(source)
    modules: set[str] = set()  # local names of the metrics module
    objects: dict[str, str] = {}  # local name -> metric object name
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == METRICS_MODULE:
            objects.update({a.asname or a.name: a.name for a in node.names})
        elif isinstance(node, ast.ImportFrom) and node.module == METRICS_MODULE.rpartition(".")[0]:
            modules.update(a.asname or a.name for a in node.names if a.name == "metrics")
        elif isinstance(node, ast.Import):
            modules.update(a.asname for a in node.names if a.name == METRICS_MODULE and a.asname)
    out: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in RECORDING:
            continue
        target = node.func.value
        if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
            if target.value.id in modules:
                out.add(target.attr)
        elif isinstance(target, ast.Name) and target.id in objects:
            out.add(objects[target.id])
    return out


def _recorded_families() -> dict[str, list[str]]:
    """Metric family name -> files under services/ that record a value on it."""
    by_object = {
        k: v._name for k, v in vars(metrics_mod).items() if isinstance(v, Counter | Gauge | Histogram)
    }
    out: dict[str, list[str]] = {}
    for path in sorted(SERVICES_DIR.rglob("*.py")):
        for name in _recording_calls(path.read_text()):
            if name in by_object:
                out.setdefault(by_object[name], []).append(str(path.relative_to(REPO)))
    return out


def _family(series: str) -> str:
    for suffix in ("_bucket", "_sum", "_count", "_total"):
        if series.endswith(suffix) and series not in EXPORTED_FAMILIES:
            return series.removesuffix(suffix)
    return series


EXPORTED_FAMILIES = {
    v._name for v in vars(metrics_mod).values() if isinstance(v, Counter | Gauge | Histogram)
}


def _string_constants() -> set[str]:
    out: set[str] = set()
    for path in SERVICES_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.add(node.value)
    return out


def test_every_metric_the_chart_uses_is_recorded_by_a_service() -> None:
    # Defined in metrics.py is not enough: a metric nobody records is a flat line on a dashboard and
    # an alert that can never fire.
    recorded = _recorded_families()
    used = {_family(n) for _, expr in _chart_exprs() for n in METRIC.findall(expr)}
    assert used, "no metrics found in the chart"
    assert sorted(used - set(recorded)) == []


def test_label_values_the_chart_selects_on_are_ones_the_services_emit() -> None:
    # e.g. decision="deny", stage="asr": a literal nobody emits selects nothing.
    constants = _string_constants()
    missing = set()
    for where, expr in _chart_exprs():
        for name, body in SELECTOR.findall(expr):
            for m in re.finditer(r'(\w+)\s*=\s*"([^"$]*)"', body):
                if m[1] not in TARGET_LABELS and m[2] not in constants:
                    missing.add(f"{where}: {name}{{{m[1]}={m[2]!r}}}")
    assert sorted(missing) == []


def test_recording_finder_sees_only_calls_that_record() -> None:
    source = """
from phoneagent.runtime import metrics
from phoneagent.runtime.metrics import MOUTH_TO_EAR as M2E, QUEUE_DEPTH
metrics.BARGE_INS.labels(transport="sip").inc()
M2E.labels(transport="sip").observe(0.5)
metrics.ERRORS.labels
print(metrics.CALLS_TOTAL, QUEUE_DEPTH)
"""
    assert _recording_calls(source) == {"BARGE_INS", "MOUTH_TO_EAR"}
    assert _family("pa_mouth_to_ear_seconds_bucket") == "pa_mouth_to_ear_seconds"
    assert _family("pa_barge_ins_total") == "pa_barge_ins"


def test_catalogue_matches_the_exported_metrics() -> None:
    families = {n.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") for n in EXPORTED}
    assert {n.removesuffix("_total") for n in metrics_mod.ALL_METRIC_NAMES} <= {
        n.removesuffix("_total") for n in families
    }


def test_dashboards_rules_and_autoscalers_use_only_exported_metrics() -> None:
    exprs = list(_chart_exprs())
    assert len(exprs) > 40
    problems = {f"{where}: {expr.strip()}": p for where, expr in exprs if (p := _problems(expr))}
    assert problems == {}


def test_name_check_rejects_unknown_metrics_and_labels() -> None:
    assert _problems('sum by (stage) (pa_active_sessions{namespace="x"})') == []
    assert _problems("rate(pa_mouth_to_ear_seconds[5m])") == ["unknown metric pa_mouth_to_ear_seconds"]
    assert _problems("sum by (stage) (pa_service_ready)") == ["unknown label stage"]
    assert _problems('pa_calls{reason="x"}') == ["unknown metric pa_calls", "unknown label reason"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_dashboard_datasource_is_a_variable(path: Any) -> None:
    board = json.loads(path.read_text())
    (ds,) = [v for v in board["templating"]["list"] if v["name"] == "datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])


def test_latency_dashboard_shows_p50_p95_p99_for_every_hop() -> None:
    exprs = "\n".join(_dashboard_exprs(json.loads((CHART / "dashboards" / "latency.json").read_text())))
    for metric in HOPS:
        for q in ("0.5", "0.95", "0.99"):
            assert re.search(rf"histogram_quantile\({q}, [^\n]*{metric}_bucket", exprs), (metric, q)


@pytest.mark.parametrize(
    ("board", "metrics"),
    [
        (
            "calls.json",
            ["pa_active_calls", "pa_barge_ins_total", "pa_transfers_total", "pa_policy_decisions_total"],
        ),
        ("capacity.json", ["pa_active_sessions", "pa_queue_depth", "pa_service_ready"]),
    ],
)
def test_operational_dashboards_cover_calls_and_capacity(board: str, metrics: list[str]) -> None:
    exprs = "\n".join(_dashboard_exprs(json.loads((CHART / "dashboards" / board).read_text())))
    for metric in metrics:
        assert metric in exprs
    if board == "calls.json":
        assert 'decision="deny"' in exprs


def test_dashboards_ship_as_labelled_config_maps() -> None:
    cms = [
        o for o in manifests("default") if o["kind"] == "ConfigMap" and "dashboard" in o["metadata"]["name"]
    ]
    assert {key for cm in cms for key in cm["data"]} == {p.name for p in DASHBOARDS}
    for cm in cms:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        for text in cm["data"].values():
            assert json.loads(text)["uid"].startswith("phone-agent-")

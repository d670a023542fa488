"""values.yaml is documented line by line and values.schema.json catches mistakes before install."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from support.chart import CHART, helm

KEY = re.compile(r"^(?P<indent>\s*)(?:- )?(?P<key>[A-Za-z_][\w.-]*):(?P<rest>.*)$")


def _validate(values: dict[str, Any]) -> None:
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(chart.merge_values(values))


@pytest.mark.parametrize("values_file", ["values.yaml", "values-gpu.yaml"])
def test_shipped_values_pass_the_schema(values_file: str) -> None:
    _validate(yaml.safe_load((CHART / values_file).read_text()) or {})


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"autoscalling": {"mode": "keda"}}, "'autoscalling' not allowed"),  # typo at the top level
        ({"asr": {"replica": 2}}, "'replica' not allowed"),  # typo inside a service
        ({"edge": {"sip": {"publicAdress": "203.0.113.1"}}}, "'publicAdress' not allowed"),
        ({"metrics": {"prometheusRule": {"budgets": {"mouthToEarP95": 1}}}}, "'mouthToEarP95' not allowed"),
        ({"llm": {"device": "tpu"}}, "/llm/device"),
        ({"autoscaling": {"mode": "vpa"}}, "/autoscaling/mode"),
        ({"image": {"tag": "latest"}}, "/image/tag"),
        ({"tts": {"image": {"tag": "latest"}}}, "/tts/image/tag"),
        ({"edge": {"sip": {"port": 70000}}}, "/edge/sip/port"),
        ({"bus": {"externalUrl": "http://nats:4222"}}, "/bus/externalUrl"),
        ({"logLevel": "VERBOSE"}, "/logLevel"),
    ],
)
def test_schema_rejects_typos_and_bad_values(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=where):
        _validate(values)


def test_schema_leaves_subchart_and_kubernetes_objects_open() -> None:
    _validate(
        {
            "nats": {"enabled": True, "config": {"jetstream": {"memoryStore": {"enabled": True}}}},
            "asr": {"affinity": {"nodeAffinity": {}}, "resources": {"requests": {"cpu": "3"}}},
        }
    )


def _key_nodes(lines: list[str]) -> list[tuple[str, bool]]:
    """(dotted path, has a comment directly above) for every mapping key; list items and block scalars
    are values, not keys."""
    nodes: list[tuple[str, bool]] = []
    stack: list[tuple[int, str]] = []
    skip_deeper_than: int | None = None
    for i, line in enumerate(lines):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        if skip_deeper_than is not None:
            if indent > skip_deeper_than or (indent == skip_deeper_than and line.lstrip().startswith("- ")):
                continue
            skip_deeper_than = None
        if line.lstrip().startswith("- "):
            skip_deeper_than = indent
            continue
        m = KEY.match(line)
        if not m:
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        prev = next(x.strip() for x in reversed(lines[:i]) if x.strip())
        path = ".".join([k for _, k in stack] + [m["key"]])
        nodes.append((path, prev.startswith("#")))
        stack.append((indent, m["key"]))
        if m["rest"].strip() in ("|", "|-", ">", ">-"):
            skip_deeper_than = indent
    return nodes


def _undocumented_keys(lines: list[str]) -> list[str]:
    """Keys without a comment, except inside a documented key whose value is a plain object
    (Kubernetes resources, security contexts: none of its own keys are commented)."""
    nodes = _key_nodes(lines)
    documented = {path for path, doc in nodes if doc}
    parents_with_documented_children = {p.rpartition(".")[0] for p in documented if "." in p}

    def covered(path: str) -> bool:
        parts = path.split(".")
        for n in range(len(parts) - 1, 0, -1):
            ancestor = ".".join(parts[:n])
            if ancestor in documented and ancestor not in parents_with_documented_children:
                return True
        return False

    return [path for path, doc in nodes if not doc and not covered(path)]


def test_every_key_in_values_yaml_has_a_comment() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    assert _undocumented_keys(lines) == []


def test_comment_check_finds_an_undocumented_key() -> None:
    lines = [
        "# -- Group.",
        "a:",
        "  # -- Documented.",
        "  b: 1",
        "  c: 2",
        "# -- A plain object.",
        "d:",
        "  e:",
        "    f: 1",
        "# -- Text.",
        "g: |",
        "  h: 1",
        "i: 3",
    ]
    assert _undocumented_keys(lines) == ["a.c", "i"]

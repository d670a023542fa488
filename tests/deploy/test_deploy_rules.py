"""The chart's alert rules pass `promtool check rules` and the rule unit tests in deploy_alerts_test.yaml."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.chart import PROFILES, deep_merge, manifests, render_raw

HERE = Path(__file__).resolve().parent
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not found: install the Debian package 'prometheus' (apt-get install prometheus)",
)


def _rule_groups(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    return rule["spec"]["groups"]


def _write_rules(tmp_path: Path, groups: list[dict[str, Any]]) -> Path:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    shutil.copy(HERE / "deploy_alerts_test.yaml", tmp_path / "deploy_alerts_test.yaml")
    return tmp_path


def _promtool(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("profile", ["monitoring", "gpu"])
def test_promtool_check_rules(tmp_path: Path, profile: str) -> None:
    cwd = _write_rules(tmp_path, _rule_groups(manifests(profile)))
    result = _promtool(cwd, "check", "rules", "rules.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests(tmp_path: Path) -> None:
    cwd = _write_rules(tmp_path, _rule_groups(manifests("monitoring")))
    result = _promtool(cwd, "test", "rules", "deploy_alerts_test.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_follow_the_configured_budget(tmp_path: Path) -> None:
    # With a 3 s mouth-to-ear budget the 1.9 s scenario must no longer page, so the unit tests fail.
    values = deep_merge(
        PROFILES["monitoring"], {"metrics": {"prometheusRule": {"budgets": {"mouthToEarP95Seconds": 3}}}}
    )
    objects = [
        d
        for path, text in render_raw(values).items()
        if not path.endswith("NOTES.txt")
        for d in yaml.safe_load_all(text)
        if d
    ]
    cwd = _write_rules(tmp_path, _rule_groups(objects))
    result = _promtool(cwd, "test", "rules", "deploy_alerts_test.yaml")
    assert result.returncode != 0
    assert "PhoneAgentMouthToEarSlow" in result.stdout + result.stderr


def test_every_alert_has_severity_and_summary() -> None:
    for group in _rule_groups(manifests("monitoring")):
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]

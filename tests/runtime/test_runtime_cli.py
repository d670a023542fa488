"""The ``phone-agent`` command line: config listing, and ``up`` starting and stopping a stack
with no process left behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def run_cli(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phoneagent.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_config_lists_every_variable(service_env: dict[str, str]) -> None:
    out = run_cli(["config"], service_env)
    assert out.returncode == 0, out.stderr
    for var in (
        "PA_NATS_URL",
        "PA_HTTP_PORT",
        "PA_DRAIN_TIMEOUT_S",
        "PA_ASR_ENGINE",
        "PA_LLM_ENGINE",
        "PA_TTS_ENGINES",
        "PA_CALLER_ID",
    ):
        assert var in out.stdout


def test_a_bad_setting_stops_a_service_with_the_variable_named(service_env: dict[str, str]) -> None:
    env = dict(service_env, PA_HTTP_PORT="eighty", PA_CALL_WINDOW_START="8am")
    out = run_cli(["serve", "policy"], env, timeout=60)
    assert out.returncode == 2
    assert "PA_HTTP_PORT" in out.stdout + out.stderr


def test_up_starts_the_stack_reports_status_and_leaves_no_process(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    env = dict(service_env, PA_POLICY_DB=str(tmp_path / "policy.sqlite3"), PA_GRPC_PORT="0")
    out = run_cli(["up", "--only", "policy", "--data-dir", str(tmp_path / "stack"), "--exit-when-ready"], env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "nats-server" in out.stdout and re.search(r"policy\s+\d+\s+\d+\s+ready", out.stdout), out.stdout
    assert "stopped" in out.stdout
    pids = [int(m) for m in re.findall(r"^policy\s+(\d+)", out.stdout, re.M)]
    assert pids
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"process {pid} left running")
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / "stack")], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", leftovers.stdout


def test_serve_records_names_a_bad_setting(service_env: dict[str, str]) -> None:
    out = run_cli(["serve", "records"], dict(service_env, PA_GRPC_PORT="fifty"), timeout=60)
    assert out.returncode == 2
    assert "PA_GRPC_PORT" in out.stdout + out.stderr


def test_up_starts_the_records_service_with_its_api_and_console(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    env = dict(service_env, PA_RECORDS_DB=str(tmp_path / "records.sqlite3"), PA_GRPC_PORT="0")
    out = run_cli(
        ["up", "--only", "records", "--data-dir", str(tmp_path / "stack"), "--exit-when-ready"], env
    )
    assert out.returncode == 0, out.stdout + out.stderr
    row = re.search(r"^records\s+\d+\s+\d+\s+ready\s+(.*)$", out.stdout, re.M)
    assert row is not None, out.stdout
    assert re.search(r"grpc_port=[1-9]\d*", row.group(1)) and "records_applied=0" in row.group(1), row.group(
        1
    )
    console = re.search(r"^operator console: (http://127\.0\.0\.1:[1-9]\d*/) ", out.stdout, re.M)
    assert console is not None, out.stdout
    assert "stopped" in out.stdout

"""Under CI=true a skipped test fails the run and names what was missing; intended skips stay."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def run_probe(ci: str | None, tmp_path: Path) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            f"--basetemp={tmp_path / 'bt'}",
            "-rA",
            "-q",
            str(HERE / "ci_skip_probe.py"),
            str(HERE / "ci_skip_probe_module.py"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_skips_fail_under_ci_naming_the_missing_tool(tmp_path: Path) -> None:
    code, out = run_probe("true", tmp_path)
    assert code != 0, out
    assert "ERROR tests/runtime/ci_skip_probe.py::test_needs_a_tool" in out, out  # skipif: at setup
    assert "skipped under CI=true: promtool is not installed" in out
    assert "ERROR tests/runtime/ci_skip_probe.py::test_needs_a_server" in out, out  # skip in a fixture
    assert "PostgreSQL server binaries not installed" in out
    # A module-level importorskip fails the run at its end (failing its collection would stop it).
    assert "FAILED (skipped under CI=true) tests/runtime/ci_skip_probe_module.py: no_such_tool" in out, out
    assert "SKIPPED [1] tests/runtime/ci_skip_probe.py" in out and "whisperx is installed here" in out
    assert "PASSED tests/runtime/ci_skip_probe.py::test_runs" in out


def test_skips_stay_skips_outside_ci(tmp_path: Path) -> None:
    code, out = run_probe(None, tmp_path)
    assert code == 0, out
    assert "4 skipped" in out and "1 passed" in out, out

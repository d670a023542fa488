"""A module that skips as a whole when its tool is missing (run by test_runtime_ci_skips.py)."""

import pytest

pytest.importorskip("no_such_tool_module_for_ci_probe", reason="no_such_tool is not installed")


def test_never_runs() -> None:
    pass

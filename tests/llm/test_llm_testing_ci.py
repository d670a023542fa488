"""Real-model tests skip on a developer machine without the engine, but fail in CI (CI=true)."""

from __future__ import annotations

import pytest
from support.llm import needs


@pytest.mark.parametrize(("ci", "skips"), [("true", False), ("", True), ("false", True)])
def test_a_missing_engine_skips_only_outside_ci(
    monkeypatch: pytest.MonkeyPatch, ci: str, skips: bool
) -> None:
    monkeypatch.setenv("CI", ci)
    mark = needs("phoneagent_no_such_engine", what="an engine")
    assert mark.args[0] is skips


def test_an_installed_engine_never_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    assert needs("json", what="json").args[0] is False

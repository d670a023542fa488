"""Probe tests for test_runtime_ci_skips.py (not collected on their own: run by file name)."""

from collections.abc import Iterator

import pytest


@pytest.fixture
def missing_server() -> Iterator[None]:
    pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    yield


@pytest.mark.skipif(True, reason="promtool is not installed")
def test_needs_a_tool() -> None:
    pass


def test_needs_a_server(missing_server: None) -> None:
    pass


@pytest.mark.skipif(True, reason="whisperx is installed here")
def test_on_purpose() -> None:
    pass


def test_runs() -> None:
    pass

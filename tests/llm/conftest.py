"""Fixtures for the LLM tests."""

from __future__ import annotations

import pytest
from vllm_standin import install


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``vllm`` modules replaced by stand-ins (see vllm_standin): no GPU or vllm needed."""
    install(monkeypatch)

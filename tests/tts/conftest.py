"""Engines loaded once per pytest run (real models; loading takes about a second each)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kokoro_torch_standin import install
from phoneagent.tts.engines.base import TtsEngine, create_engine


@pytest.fixture(scope="session")
def kokoro_engine() -> Iterator[TtsEngine]:
    engine = create_engine("kokoro", threads=1)
    engine.load()
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def piper_engine() -> Iterator[TtsEngine]:
    engine = create_engine("piper", threads=1)
    engine.load()
    yield engine
    engine.close()


@pytest.fixture
def stub_torch_kokoro(monkeypatch: pytest.MonkeyPatch) -> None:
    """``torch`` (with a CUDA device) and ``kokoro`` replaced by stand-ins: no GPU stack needed."""
    install(monkeypatch)

"""Engines loaded once per pytest run (real models; loading takes about a second each), and the real
TTS service on a real nats-server for the bus tests (one per test module)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from phoneagent.tts.engines.base import TtsEngine, create_engine
from phoneagent.tts.service import TtsService
from support.kokoro_torch_standin import install
from support.tts import start_service, stop_service


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


@pytest.fixture(scope="module")
async def piper_tts(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TtsService]:
    svc = await start_service(nats_url, tmp_path_factory.mktemp("tts-piper"), "tts-piper-t", "piper")
    yield svc
    await stop_service(svc)

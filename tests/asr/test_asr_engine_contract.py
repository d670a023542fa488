"""Every registered ASR engine through the same behaviour checks (the base class's contract).

faster-whisper runs for real with tiny.en (slow: a model loads); whisperx runs against the
stand-ins of its modules (whisperx_standin), so no GPU is needed. A new engine registered in
``phoneagent.asr.engines.base.ENGINES`` fails ``test_every_registered_engine_is_checked``
until it is added here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from phoneagent.asr.engines.base import (
    ENGINES,
    AsrEngine,
    BaseAsrEngine,
    TranscriptResult,
    create_engine,
    engine_options,
)
from phoneagent.asr.engines.fallback import FallbackAsrEngine
from phoneagent.asr.settings import AsrSettings
from phoneagent.runtime.errors import EngineFailure, ErrorKind, InvalidArgument, PhoneAgentError
from phoneagent.runtime.retry import RetryPolicy
from phoneagent.runtime.settings import load
from prometheus_client import REGISTRY
from support.whisperx_standin import install, uninstall

ENGINE_PARAMS = [
    pytest.param("faster-whisper", marks=pytest.mark.slow, id="faster-whisper"),
    pytest.param("whisperx", id="whisperx-standin"),
]
SPEECHLESS = np.zeros(8000, np.float32)  # half a second: decodes fast on any engine


def settings_for(name: str) -> AsrSettings:
    device = "cuda" if name == "whisperx" else "cpu"
    return load(AsrSettings, {"PA_ASR_ENGINE": name, "PA_ASR_DEVICE": device})


@pytest.fixture(params=ENGINE_PARAMS)
def name(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "whisperx":
        install(monkeypatch)
    yield request.param
    if request.param == "whisperx":
        uninstall()


@pytest.fixture
def engine(name: str) -> Iterator[AsrEngine]:
    """The engine built from the ASR settings, as the service builds it, and loaded."""
    engine = create_engine(name, **engine_options(name, settings_for(name)))
    engine.load()
    yield engine
    engine.close()


def metric(sample: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(sample, labels) or 0.0


def test_every_registered_engine_is_checked() -> None:
    assert set(ENGINES.names()) == {p.values[0] for p in ENGINE_PARAMS}


def test_an_engine_is_refused_before_load_and_after_close(name: str) -> None:
    engine = create_engine(name, **engine_options(name, settings_for(name)))
    assert isinstance(engine, BaseAsrEngine) and isinstance(engine, AsrEngine)
    with pytest.raises(PhoneAgentError) as err:
        engine.transcribe(SPEECHLESS)
    assert err.value.kind is ErrorKind.UNAVAILABLE
    engine.load()
    engine.transcribe(SPEECHLESS)
    engine.close()
    with pytest.raises(PhoneAgentError) as err:
        engine.transcribe(SPEECHLESS)
    assert err.value.kind is ErrorKind.UNAVAILABLE


def test_bad_audio_is_invalid_argument(engine: AsrEngine) -> None:
    for bad in (np.zeros(800, np.float64), np.zeros((2, 800), np.float32), np.zeros(0, np.float32)):
        with pytest.raises(PhoneAgentError) as err:
            engine.transcribe(bad)
        assert err.value.kind is ErrorKind.INVALID_ARGUMENT


def test_a_decode_returns_a_transcript_of_the_audio(engine: AsrEngine) -> None:
    before = metric("pa_engine_calls_total", stage="asr", engine=engine.name, outcome="ok")
    for partial in (False, True):
        result = engine.transcribe(SPEECHLESS, partial=partial)
        assert isinstance(result, TranscriptResult) and isinstance(result.text, str)
        assert result.audio_s == pytest.approx(0.5)
    assert metric("pa_engine_calls_total", stage="asr", engine=engine.name, outcome="ok") == before + 2


def flaky(engine: Any, errors: list[PhoneAgentError]) -> list[int]:
    """Make the engine's own decode raise ``errors`` first, then decode; returns the call count."""
    real, count = engine._transcribe, [0]

    def decode(pcm: np.ndarray, partial: bool) -> TranscriptResult:
        count[0] += 1
        if errors:
            raise errors.pop(0)
        result: TranscriptResult = real(pcm, partial)
        return result

    engine._transcribe = decode
    engine.retry = RetryPolicy(retries=1, backoff_s=0.0)
    return count


def test_a_retryable_failure_is_retried_once_by_the_runtime_policy(engine: AsrEngine) -> None:
    retries = metric("pa_engine_retries_total", stage="asr", engine=engine.name)
    count = flaky(engine, [EngineFailure("transient")])
    assert engine.transcribe(SPEECHLESS).audio_s == pytest.approx(0.5)
    assert count == [2]
    assert metric("pa_engine_retries_total", stage="asr", engine=engine.name) == retries + 1

    count = flaky(engine, [EngineFailure("again"), EngineFailure("and again")])
    with pytest.raises(EngineFailure):
        engine.transcribe(SPEECHLESS)
    assert count == [2]  # one retry, then the error

    count = flaky(engine, [InvalidArgument("bad input")])
    with pytest.raises(InvalidArgument):
        engine.transcribe(SPEECHLESS)
    assert count == [1]  # not retryable: raised at once


def test_the_fallback_adapter_hands_the_utterance_to_the_next_engine(name: str, engine: AsrEngine) -> None:
    unloaded = create_engine(name, **engine_options(name, settings_for(name)))
    chain = FallbackAsrEngine([unloaded, engine])
    labels = {"stage": "asr", "from_engine": name, "to_engine": engine.name}
    before = metric("pa_engine_fallbacks_total", **labels)
    assert chain.transcribe(SPEECHLESS).audio_s == pytest.approx(0.5)
    assert metric("pa_engine_fallbacks_total", **labels) == before + 1

    backwards = FallbackAsrEngine([engine, unloaded])
    with pytest.raises(InvalidArgument):  # bad input would fail on every engine: no hand-over
        backwards.transcribe(np.zeros(0, np.float32))
    assert metric("pa_engine_fallbacks_total", stage="asr", from_engine=name, to_engine=name) == before + 1

"""Every registered TTS engine through the same behaviour checks (the base class's contract).

Kokoro (ONNX) and Piper run for real (slow: models load, once per session); kokoro-torch runs
against the stand-ins of torch and kokoro (kokoro_torch_standin) and reads the real voices
file. A new engine registered in ``phoneagent.tts.engines.base.ENGINES`` fails
``test_every_registered_engine_is_checked`` until it is added here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from phoneagent.runtime.errors import EngineFailure, ErrorKind, PhoneAgentError
from phoneagent.runtime.retry import RetryPolicy
from phoneagent.runtime.settings import load
from phoneagent.tts.engines.base import ENGINES, BaseTtsEngine, TtsEngine, create_engine, engine_options
from phoneagent.tts.engines.fallback import FallbackTtsEngine
from phoneagent.tts.settings import TtsSettings
from prometheus_client import REGISTRY
from support.kokoro_torch_standin import install

NAMES = ["kokoro", "piper", "kokoro-torch"]
TEXT = "Hello there. How can I help?"


@pytest.fixture
def torch_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """kokoro-torch's settings, with its weight files present and torch and kokoro stood in."""
    install(monkeypatch)
    config, weights = tmp_path / "config.json", tmp_path / "kokoro.pth"
    config.write_text("{}")
    weights.write_bytes(b"\0")
    return {"PA_TTS_KOKORO_CONFIG": str(config), "PA_TTS_KOKORO_WEIGHTS": str(weights)}


def settings_for(name: str, request: pytest.FixtureRequest) -> TtsSettings:
    env = {"PA_TTS_ENGINES": name}
    if name == "kokoro-torch":
        env.update(request.getfixturevalue("torch_files"))
    return load(TtsSettings, env)


def built(name: str, request: pytest.FixtureRequest) -> TtsEngine:
    """The engine as the service builds it, from the TTS settings (not loaded)."""
    return create_engine(name, **engine_options(name, settings_for(name, request)))


@pytest.fixture(params=[pytest.param(n, marks=pytest.mark.slow) for n in NAMES])
def engine(request: pytest.FixtureRequest) -> Iterator[TtsEngine]:
    """A loaded engine: the session's real Kokoro and Piper, a fresh kokoro-torch on stand-ins."""
    if request.param != "kokoro-torch":
        yield request.getfixturevalue(f"{request.param}_engine")
        return
    engine = built(request.param, request)
    engine.load()
    yield engine
    engine.close()


def metric(sample: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(sample, labels) or 0.0


def audio_of(engine: TtsEngine, text: str = TEXT, voice: str | None = None) -> np.ndarray:
    chunks = list(engine.synthesize(text, voice or engine.voices()[0], 1.0))
    assert chunks and all(c.dtype == np.float32 and c.ndim == 1 for c in chunks)
    audio = np.concatenate(chunks)
    assert 0.0 < float(np.max(np.abs(audio))) <= 1.0
    return audio


def test_every_registered_engine_is_checked() -> None:
    assert set(ENGINES.names()) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_an_engine_built_from_settings_is_refused_before_load(
    name: str, request: pytest.FixtureRequest
) -> None:
    engine = built(name, request)
    assert isinstance(engine, BaseTtsEngine) and isinstance(engine, TtsEngine)
    with pytest.raises(PhoneAgentError) as err:
        list(engine.synthesize("hello", engine.voices()[0], 1.0))
    assert err.value.kind is ErrorKind.ENGINE_FAILURE


def test_speech_comes_out_in_the_default_voice_at_the_native_rate(engine: TtsEngine) -> None:
    labels = {"stage": "tts", "engine": engine.name, "outcome": "ok"}
    before = metric("pa_engine_calls_total", **labels)
    seconds = audio_of(engine).size / engine.native_rate
    assert 0.5 < seconds < 6.0
    assert metric("pa_engine_calls_total", **labels) == before + 1


def test_bad_voice_and_speed_are_invalid(engine: TtsEngine) -> None:
    for voice, speed in [("nobody", 1.0), (engine.voices()[0], 5.0), (engine.voices()[0], 0.1)]:
        with pytest.raises(PhoneAgentError) as err:
            list(engine.synthesize("hello", voice, speed))
        assert err.value.kind is ErrorKind.INVALID_ARGUMENT


def instrumented(
    engine: Any, monkeypatch: pytest.MonkeyPatch, errors: list[tuple[int, Exception]]
) -> dict[str, int]:
    """Wrap the engine's own render: ``errors`` are (chunks to yield first, error) per call."""
    real, seen = engine._synthesize, {"calls": 0, "closed": 0, "chunks": 0}

    def render(text: str, voice: str, speed: float) -> Iterator[np.ndarray]:
        seen["calls"] += 1
        fail = errors.pop(0) if errors else None
        try:
            for i, chunk in enumerate(real(text, voice, speed)):
                if fail is not None and i == fail[0]:
                    raise fail[1]
                seen["chunks"] += 1
                yield chunk
            if fail is not None:
                raise fail[1]
        finally:
            seen["closed"] += 1

    monkeypatch.setattr(engine, "_synthesize", render)
    monkeypatch.setattr(engine, "retry", RetryPolicy(retries=1, backoff_s=0.0))
    return seen


def test_a_caller_that_stops_early_leaves_no_work_behind(
    engine: TtsEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = instrumented(engine, monkeypatch, [])
    stream = engine.synthesize("First one. Second one. Third one.", engine.voices()[0], 1.0)
    assert next(stream).size > 0
    stream.close()
    assert seen == {"calls": 1, "closed": 1, "chunks": 1}


def test_a_failure_before_any_audio_is_retried_and_after_it_is_not(
    engine: TtsEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    retries = metric("pa_engine_retries_total", stage="tts", engine=engine.name)
    seen = instrumented(engine, monkeypatch, [(0, EngineFailure("transient"))])
    audio_of(engine)
    assert seen["calls"] == 2
    assert metric("pa_engine_retries_total", stage="tts", engine=engine.name) == retries + 1

    seen = instrumented(engine, monkeypatch, [(1, EngineFailure("mid-sentence"))])
    with pytest.raises(EngineFailure):
        audio_of(engine)
    assert seen["calls"] == 1  # audio went out: repeating it would repeat what was heard


def test_the_fallback_adapter_renders_with_the_next_engine(
    engine: TtsEngine, request: pytest.FixtureRequest
) -> None:
    unloaded = built(engine.name, request)
    chain = FallbackTtsEngine([unloaded, engine])
    labels = {"stage": "tts", "from_engine": engine.name, "to_engine": engine.name}
    before = metric("pa_engine_fallbacks_total", **labels)
    assert audio_of(chain).size / chain.native_rate > 0.5
    assert metric("pa_engine_fallbacks_total", **labels) == before + 1


@pytest.mark.slow
def test_a_fallback_at_another_rate_is_resampled_to_the_first_engines_rate(
    piper_engine: TtsEngine, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary = built("kokoro-torch", request)  # never loaded: every sentence falls back to Piper
    chain = FallbackTtsEngine([primary, piper_engine])
    assert chain.native_rate == 24000 and piper_engine.native_rate == 22050
    native: list[int] = []
    real = piper_engine._synthesize  # type: ignore[attr-defined]

    def recorded(text: str, voice: str, speed: float) -> Iterator[np.ndarray]:
        for chunk in real(text, voice, speed):
            native.append(chunk.size)
            yield chunk

    monkeypatch.setattr(piper_engine, "_synthesize", recorded)
    chunks = list(chain.synthesize(TEXT, "af_heart", 1.0))  # Piper has no af_heart: its own voice
    assert native and len(chunks) == len(native)
    for chunk, size in zip(chunks, native, strict=True):
        assert chunk.dtype == np.float32 and abs(chunk.size - size * 24000 / 22050) <= 1

"""Real Kokoro and Piper models: speech comes out, of a plausible length, at the native rate."""

from __future__ import annotations

import numpy as np
import pytest
from phoneagent.runtime.errors import ErrorKind, PhoneAgentError
from phoneagent.tts.engines.base import TtsEngine, create_engine

pytestmark = pytest.mark.slow

SENTENCE = "Thanks for calling, how can I help you today?"


def _speech_seconds(engine: TtsEngine, text: str, voice: str, speed: float = 1.0) -> float:
    chunks = list(engine.synthesize(text, voice, speed))
    audio = np.concatenate(chunks)
    assert audio.dtype == np.float32
    assert np.max(np.abs(audio)) <= 1.0
    rms = float(np.sqrt(np.mean(audio**2)))
    assert rms > 0.02, "speech should not be silent"
    return audio.size / engine.native_rate


def test_kokoro_speaks_a_sentence(kokoro_engine: TtsEngine) -> None:
    assert kokoro_engine.native_rate == 24000
    assert {"af_heart", "af_bella", "am_michael", "bf_emma"} <= set(kokoro_engine.voices())
    assert kokoro_engine.voices()[0] == "af_heart"  # the default voice comes first
    seconds = _speech_seconds(kokoro_engine, SENTENCE, "af_heart")
    assert 1.5 < seconds < 5.0  # nine words at a conversational pace


def test_kokoro_british_voice_and_speed(kokoro_engine: TtsEngine) -> None:
    normal = _speech_seconds(kokoro_engine, "Good morning.", "bf_emma")
    fast = _speech_seconds(kokoro_engine, "Good morning.", "bf_emma", speed=1.5)
    assert fast < normal


def test_kokoro_stops_between_sentences(kokoro_engine: TtsEngine) -> None:
    gen = kokoro_engine.synthesize("First one. Second one. Third one.", "am_michael", 1.0)
    first = next(gen)
    gen.close()  # the caller stopping early leaves no work behind
    assert first.size > 0


def test_piper_speaks_a_sentence(piper_engine: TtsEngine) -> None:
    assert piper_engine.native_rate == 22050
    seconds = _speech_seconds(piper_engine, SENTENCE, piper_engine.voices()[0])
    assert 1.5 < seconds < 5.0


@pytest.mark.parametrize("engine_name", ["kokoro_engine", "piper_engine"])
def test_bad_voice_and_speed_are_invalid(engine_name: str, request: pytest.FixtureRequest) -> None:
    engine: TtsEngine = request.getfixturevalue(engine_name)
    for voice, speed in [("nobody", 1.0), (engine.voices()[0], 5.0)]:
        with pytest.raises(PhoneAgentError) as err:
            list(engine.synthesize("hello", voice, speed))
        assert err.value.kind is ErrorKind.INVALID_ARGUMENT


def test_engine_used_before_load_fails_cleanly() -> None:
    engine = create_engine("piper")
    with pytest.raises(PhoneAgentError) as err:
        list(engine.synthesize("hello", engine.voices()[0], 1.0))
    assert err.value.kind is ErrorKind.ENGINE_FAILURE

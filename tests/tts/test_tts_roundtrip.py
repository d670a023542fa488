"""TTS -> G.711 8 kHz -> the project's ASR: what the agent says is what a phone caller hears.

Both engines speak phone-style sentences; the audio goes through the same path as a call
(resample to 8 kHz, mu-law encode/decode, back to 16 kHz) and tiny.en must recognise it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import pytest
from pa_testing import word_errors
from phoneagent.asr.engines.base import AsrEngine, create_engine
from phoneagent.audio import g711
from phoneagent.audio.resample import resample
from phoneagent.tts.engines.base import TtsEngine
from phoneagent.tts.normalize import normalize

pytestmark = pytest.mark.slow

SENTENCES = [
    "Thank you for calling. How can I help you today?",
    "Your appointment is on Tuesday at 3:30 pm.",
    "We are open Monday to Friday from nine to five.",
]
MAX_WER = 0.15  # tiny.en on synthetic 8 kHz speech


@pytest.fixture(scope="module")
def asr() -> Iterator[AsrEngine]:
    engine = create_engine("faster-whisper", model="tiny.en")
    engine.load()
    yield engine
    engine.close()


def spoken(text: str) -> str:
    """A transcript in spoken words: Whisper writes times as "3.30pm" and numbers as digits."""
    text = re.sub(r"\b(\d{1,2})[.:](\d{2})\s*([ap])\.?\s?m\b\.?", r"\1:\2 \3m", text, flags=re.I)
    return normalize(text)


def phone_path(audio: np.ndarray, rate: int) -> np.ndarray:
    pcm = np.clip(audio * 32767, -32768, 32767).astype(np.int16)
    narrow = resample(pcm, rate, 8000)
    heard = g711.ulaw_decode(g711.ulaw_encode(narrow))
    return resample(heard, 8000, 16000).astype(np.float32) / 32768.0


@pytest.mark.parametrize("engine_name", ["piper", "kokoro"])
def test_speech_survives_the_phone_line_and_is_recognised(
    engine_name: str, request: pytest.FixtureRequest, asr: AsrEngine
) -> None:
    tts: TtsEngine = request.getfixturevalue(f"{engine_name}_engine")
    errors = words = 0
    heard = []
    for text in SENTENCES:
        audio = np.concatenate(list(tts.synthesize(normalize(text), tts.voices()[0], 1.0)))
        result = asr.transcribe(phone_path(audio, tts.native_rate))
        e, n = word_errors(spoken(text), spoken(result.text))
        errors, words = errors + e, words + n
        heard.append(result.text)
    wer = errors / words
    print(f"\n{engine_name}: WER {wer:.3f} over {words} words: {heard}")
    assert wer <= MAX_WER, heard

"""TTS -> G.711 8 kHz -> the project's ASR: what the agent says is what a phone caller hears.

Both engines speak phone-style sentences through :class:`TtsStream` at 8 kHz (chunking, the
streaming resampler and the 20 ms framer: the frames a call sends), the frames go through
mu-law encode/decode as on the line, back to 16 kHz, and tiny.en must recognise them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import numpy as np
import pytest
from phoneagent.asr.engines.base import AsrEngine, create_engine
from phoneagent.audio import g711
from phoneagent.audio.resample import resample
from phoneagent.tts.engines.base import TtsEngine
from phoneagent.tts.normalize import normalize
from phoneagent.tts.stream import SpeechOut, SpeechRequest, TtsStream
from support.common import word_errors

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


async def call_frames(tts: TtsEngine, text: str) -> list[bytes]:
    """The 20 ms frames at 8 kHz a call sends for ``text`` (as the TTS service renders a reply)."""
    stream = TtsStream(tts, voice=tts.voices()[0], sample_rate=8000)
    frames: list[bytes] = []
    try:
        stream.submit(SpeechRequest(1, 1, 0, text, final=True))
        while True:
            item = await asyncio.wait_for(stream.next(), 60)
            assert isinstance(item, SpeechOut), item
            frames.append(item.pcm)
            if item.last_in_generation:
                return frames
    finally:
        await stream.close()


def phone_line(frames: list[bytes]) -> np.ndarray:
    """Each frame mu-law encoded and decoded as on the line, then 16 kHz float for the ASR."""
    assert all(len(f) == 320 for f in frames)  # 160 samples at 8 kHz
    heard = np.concatenate(
        [g711.ulaw_decode(g711.ulaw_encode(np.frombuffer(f, dtype=np.int16))) for f in frames]
    )
    return resample(heard, 8000, 16000).astype(np.float32) / 32768.0


@pytest.mark.parametrize("engine_name", ["piper", "kokoro"])
async def test_speech_survives_the_phone_line_and_is_recognised(
    engine_name: str, request: pytest.FixtureRequest, asr: AsrEngine
) -> None:
    tts: TtsEngine = request.getfixturevalue(f"{engine_name}_engine")
    errors = words = 0
    heard = []
    for text in SENTENCES:
        frames = await call_frames(tts, text)
        result = await asyncio.to_thread(asr.transcribe, phone_line(frames))
        e, n = word_errors(spoken(text), spoken(result.text))
        errors, words = errors + e, words + n
        heard.append(result.text)
    wer = errors / words
    print(f"\n{engine_name}: WER {wer:.3f} over {words} words: {heard}")
    assert wer <= MAX_WER, heard

"""The caller's voice: neural synthesis resampled to 8 kHz, and the agent-side transcription.

Both run before or after the call, never on the 20 ms media path. Each scenario gets its own
caller (:func:`caller_style`): a voice (Piper's joe or one of Kokoro's English voices), a speech
level and the pause it leaves after the agent stops before it speaks, drawn from a generator
seeded with the scenario's name, so the end-to-end tests do not all pass on one voice and
level while each run of a scenario stays the same.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from phoneagent.audio.resample import resample
from phoneagent.devtools.harness.impair import SPEECH_DBFS, normalise_speech

log = logging.getLogger(__name__)
VOICES = (
    ("piper", ""),
    ("kokoro", "af_heart"),
    ("kokoro", "af_bella"),
    ("kokoro", "af_sarah"),
    ("kokoro", "am_michael"),
    ("kokoro", "am_adam"),
    ("kokoro", "bf_emma"),
    ("kokoro", "bm_george"),
)
LEVELS_DBFS = (-30.0, -26.0, -20.0, -16.0)
DELAY_S = (0.3, 2.0)  # pause before each utterance that answers the agent


@dataclass(frozen=True)
class CallerStyle:
    engine: str = "piper"
    voice: str = ""  # "" for the engine's first voice
    level_dbfs: float = SPEECH_DBFS
    delay_s: tuple[float, float] = (0.0, 0.0)  # drawn per utterance, uniformly
    seed: int = 0

    def describe(self) -> str:
        voice = f"{self.engine}:{self.voice}" if self.voice else self.engine
        return (
            f"{voice} at {self.level_dbfs:g} dBFS, {self.delay_s[0]:g}-{self.delay_s[1]:g} s after the agent"
        )

    def delays(self) -> Iterable[float]:
        """The pauses before successive utterances (the same sequence for the same style)."""
        rng = np.random.default_rng([self.seed, 3])
        while True:
            yield float(rng.uniform(*self.delay_s))


def caller_style(scenario: str, seed: int = 0) -> CallerStyle:
    """The caller for ``scenario``: voice, level and pauses drawn from (``seed``, the name)."""
    key = zlib.crc32(scenario.encode()) ^ seed
    rng = np.random.default_rng(key)
    engine, voice = VOICES[int(rng.integers(len(VOICES)))]
    level = LEVELS_DBFS[int(rng.integers(len(LEVELS_DBFS)))]
    return CallerStyle(engine, voice, level, DELAY_S, key)


class CallerVoice:
    """Synthesises the caller's utterances once each (a neural voice: Piper or Kokoro)."""

    def __init__(self, engine_name: str = "piper", voice: str = "", level_dbfs: float = SPEECH_DBFS) -> None:
        from phoneagent.tts.engines.base import create_engine

        self.engine = create_engine(engine_name)
        self.voice = voice
        self.level_dbfs = level_dbfs
        self._cache: dict[str, np.ndarray] = {}
        self._loaded = False

    @classmethod
    def for_style(cls, style: CallerStyle) -> CallerVoice:
        return cls(style.engine, style.voice, style.level_dbfs)

    def synthesize(self, text: str) -> np.ndarray:
        """int16 8 kHz speech for ``text``, normalised to this voice's speech level."""
        if text not in self._cache:
            if not self._loaded:
                self.engine.load()
                self._loaded = True
            voices = self.engine.voices()
            voice = self.voice if self.voice in voices else voices[0]
            chunks = list(self.engine.synthesize(text, voice, 1.0))
            audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
            pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype(np.int16)
            narrow = resample(pcm, self.engine.native_rate, 8000)
            self._cache[text] = normalise_speech(narrow, self.level_dbfs)
        return self._cache[text]

    def prepare(self, texts: Iterable[str]) -> None:
        for text in texts:
            self.synthesize(text)

    def close(self) -> None:
        if self._loaded:
            self.engine.close()


class AgentTranscriber:
    """Transcribes the agent's received audio with the ASR engine (after the call)."""

    def __init__(self, engine_name: str = "faster-whisper") -> None:
        from phoneagent.asr.engines.base import create_engine

        self.engine = create_engine(engine_name)
        self.engine.load()

    def transcribe(self, pcm8k: np.ndarray) -> str:
        if len(pcm8k) < 1600:
            return ""
        pcm16 = resample(pcm8k, 8000, self.engine.sample_rate).astype(np.float32) / 32768.0
        return self.engine.transcribe(pcm16).text.strip()

    def close(self) -> None:
        self.engine.close()


def agent_segments(
    track: np.ndarray, *, frame: int = 160, gap_frames: int = 40, floor_dbfs: float = -45.0
) -> list[tuple[int, int]]:
    """(start, end) sample ranges of the agent's speech, split at silences of ``gap_frames``."""
    n = len(track) // frame
    if n == 0:
        return []
    frames = track[: n * frame].astype(np.float64).reshape(n, frame)
    loud = np.sqrt(np.mean(frames**2, axis=1)) > 32768.0 * 10 ** (floor_dbfs / 20)
    segments: list[tuple[int, int]] = []
    start = last = -1
    for i, on in enumerate(loud):
        if not on:
            continue
        if start < 0:
            start = i
        elif i - last > gap_frames:
            segments.append((start * frame, (last + 1) * frame))
            start = i
        last = i
    if start >= 0:
        segments.append((start * frame, (last + 1) * frame))
    return segments

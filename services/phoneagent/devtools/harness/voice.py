"""The caller's voice: Piper synthesis resampled to 8 kHz, and the agent-side transcription.

Both run before or after the call, never on the 20 ms media path.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np

from phoneagent.audio.resample import resample
from phoneagent.devtools.harness.impair import normalise_speech

log = logging.getLogger(__name__)


class CallerVoice:
    """Synthesises the caller's utterances once each (Piper, a neural voice)."""

    def __init__(self, engine_name: str = "piper") -> None:
        from phoneagent.tts.engines.base import create_engine

        self.engine = create_engine(engine_name)
        self._cache: dict[str, np.ndarray] = {}
        self._loaded = False

    def synthesize(self, text: str) -> np.ndarray:
        """int16 8 kHz speech for ``text``, normalised to the harness speech level."""
        if text not in self._cache:
            if not self._loaded:
                self.engine.load()
                self._loaded = True
            chunks = list(self.engine.synthesize(text, self.engine.voices()[0], 1.0))
            audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
            pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype(np.int16)
            self._cache[text] = normalise_speech(resample(pcm, self.engine.native_rate, 8000))
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

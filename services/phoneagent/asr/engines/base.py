"""The speech-recognition engine interface and the engine registry.

An engine turns one utterance of 16 kHz mono float32 PCM into text. Engines are
selected by name with :func:`create_engine`, which imports the engine's module only
when it is chosen, so a CPU image never imports GPU libraries and vice versa.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from phoneagent.runtime.errors import InvalidArgument

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Word:
    """One recognised word with its times (seconds from the start of the utterance audio)."""

    text: str
    start: float
    end: float
    probability: float = 1.0


@dataclass(frozen=True)
class TranscriptResult:
    """What an engine returns for one decode.

    ``avg_logprob`` and ``no_speech_prob`` let a consumer discard likely hallucinations on
    noise; ``compute_s`` is the wall time the decode took and ``audio_s`` the audio length.
    """

    text: str
    language: str
    words: tuple[Word, ...] = field(default_factory=tuple)
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    audio_s: float = 0.0
    compute_s: float = 0.0

    @property
    def real_time_factor(self) -> float:
        """Compute time divided by audio duration (below 1 is faster than real time)."""
        return self.compute_s / self.audio_s if self.audio_s > 0 else 0.0


@runtime_checkable
class AsrEngine(Protocol):
    """A speech-to-text engine.

    ``load()`` is called once, off the event loop, before the first ``transcribe``.
    ``transcribe`` is blocking and thread-safe: callers run it in a worker thread, and
    concurrent calls either run in parallel (when the engine has several workers) or queue
    inside the engine. ``busy()`` tells whether a new call would have to wait, so cheap
    optional work (partial transcripts) can be skipped instead of queued.
    """

    name: str
    sample_rate: int

    def load(self) -> None: ...

    def transcribe(self, pcm: np.ndarray, *, partial: bool = False) -> TranscriptResult: ...

    def busy(self) -> bool: ...

    def close(self) -> None: ...


# Engine name -> "module:class", imported lazily.
_ENGINES: dict[str, str] = {
    "faster-whisper": "phoneagent.asr.engines.faster_whisper:FasterWhisperEngine",
    "whisperx": "phoneagent.asr.engines.whisperx:WhisperXEngine",
}


def engine_names() -> tuple[str, ...]:
    return tuple(sorted(_ENGINES))


def create_engine(name: str, **options: Any) -> AsrEngine:
    """Build (but do not load) the engine called ``name`` with engine-specific ``options``.

    Raises :class:`InvalidArgument` for an unknown name and
    :class:`phoneagent.runtime.modelfiles.MissingModelError` when the engine's package
    is not installed (the message names the extra to install).
    """
    target = _ENGINES.get(name)
    if target is None:
        raise InvalidArgument(f"unknown ASR engine {name!r}; choose one of {', '.join(engine_names())}")
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    engine: AsrEngine = getattr(module, class_name)(**options)
    return engine


def audio_seconds(pcm: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    return float(len(pcm)) / rate

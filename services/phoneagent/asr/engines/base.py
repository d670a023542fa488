"""The speech-recognition engine interface and the engine registry.

An engine turns one utterance of 16 kHz mono float32 PCM into text. Engines derive from
:class:`BaseAsrEngine` and are selected by name with :func:`create_engine`, which imports
the engine's module only when it is chosen, so a CPU image never imports GPU libraries.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from phoneagent.runtime.engines import CallMeter, EngineRegistry
from phoneagent.runtime.errors import InvalidArgument, Unavailable
from phoneagent.runtime.retry import DEFAULT_RETRY, RetryPolicy, call

if TYPE_CHECKING:
    from phoneagent.asr.settings import AsrSettings

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


class BaseAsrEngine(abc.ABC):
    """What every ASR engine shares (the template of :meth:`transcribe`).

    :meth:`transcribe` refuses an engine that is not loaded and input that is not mono
    float32 PCM, then calls the engine's own :meth:`_transcribe` under the runtime's retry
    policy and counts the outcome. An engine implements ``loaded``, :meth:`load`,
    :meth:`_transcribe` and :meth:`options_from` (its options from the ASR settings).
    """

    name: str
    sample_rate: int = SAMPLE_RATE
    retry: RetryPolicy = DEFAULT_RETRY

    @classmethod
    def options_from(cls, settings: AsrSettings) -> dict[str, Any]:
        """Constructor options from the ASR service's settings."""
        return {"model": settings.model, "device": settings.device}

    @property
    @abc.abstractmethod
    def loaded(self) -> bool: ...

    @abc.abstractmethod
    def load(self) -> None: ...

    def busy(self) -> bool:
        return False

    @abc.abstractmethod
    def close(self) -> None:
        """Free the model (a later ``transcribe`` is refused until ``load``)."""

    def transcribe(self, pcm: np.ndarray, *, partial: bool = False) -> TranscriptResult:
        if not self.loaded:
            raise Unavailable("ASR engine is not loaded")
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.float32 or pcm.ndim != 1 or pcm.size == 0:
            raise InvalidArgument("ASR input must be non-empty mono float32 PCM at 16 kHz")
        meter = CallMeter("asr", self.name)
        try:
            result = call(lambda: self._transcribe(pcm, partial), self.retry, on_retry=meter.retried)
        except Exception as exc:
            meter.failed(exc)
            raise
        meter.ok()
        return result

    @abc.abstractmethod
    def _transcribe(self, pcm: np.ndarray, partial: bool) -> TranscriptResult:
        """Decode validated ``pcm`` (blocking; may run in several threads at once)."""


ENGINES: EngineRegistry[AsrEngine] = EngineRegistry("ASR")
ENGINES.register(
    "faster-whisper",
    "phoneagent.asr.engines.faster_whisper:FasterWhisperEngine",
    extra="asr",
    package="faster-whisper",
)
ENGINES.register(
    "whisperx", "phoneagent.asr.engines.whisperx:WhisperXEngine", extra="asr-gpu", package="whisperx"
)


def engine_names() -> tuple[str, ...]:
    return ENGINES.names()


def create_engine(name: str, **options: Any) -> AsrEngine:
    """Build (but do not load) the engine called ``name`` with engine-specific ``options``.

    Raises :class:`InvalidArgument` for an unknown name and
    :class:`phoneagent.runtime.modelfiles.MissingModelError` when the engine's package
    is not installed (the message names the extra to install).
    """
    return ENGINES.create(name, **options)


def engine_options(name: str, settings: AsrSettings) -> dict[str, Any]:
    """The options engine ``name`` builds from ``settings``."""
    return ENGINES.options(name, settings)


def audio_seconds(pcm: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    return float(len(pcm)) / rate

"""The interface every TTS engine implements, their base class, and the registry that imports them lazily."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from phoneagent.runtime.engines import CallMeter, EngineRegistry
from phoneagent.runtime.errors import EngineFailure, InvalidArgument
from phoneagent.runtime.retry import DEFAULT_RETRY, RetryPolicy, iterate

if TYPE_CHECKING:
    from phoneagent.tts.settings import TtsSettings

MIN_SPEED = 0.5
MAX_SPEED = 2.0


@runtime_checkable
class TtsEngine(Protocol):
    """A speech synthesiser.

    ``voices()[0]`` is the engine's default voice. ``synthesize`` is a generator of float32
    mono chunks in [-1, 1] at ``native_rate``; the caller may stop iterating at any time and
    no more work is done after the chunk in progress. One engine instance may be shared by
    several calls (each call has its own worker thread); implementations serialise whatever
    their runtime cannot run concurrently. Every engine accepts a ``threads`` option.
    """

    name: str
    native_rate: int

    def load(self) -> None: ...

    def voices(self) -> list[str]: ...

    def synthesize(self, text: str, voice: str, speed: float) -> Iterator[np.ndarray]: ...

    def close(self) -> None: ...


class BaseTtsEngine(abc.ABC):
    """What every TTS engine shares (the template of :meth:`synthesize`).

    :meth:`synthesize` refuses an engine that is not loaded, an unknown voice and a speed out
    of range, then yields the chunks of the engine's own :meth:`_synthesize`, opened again
    under the runtime's retry policy while nothing has been yielded, and counts the outcome.
    An engine implements ``loaded``, :meth:`load`, :meth:`voices`, :meth:`_synthesize` and,
    when it needs more than ``threads``, :meth:`options_from`.
    """

    name: str
    native_rate: int
    retry: RetryPolicy = DEFAULT_RETRY

    @classmethod
    def options_from(cls, settings: TtsSettings) -> dict[str, Any]:
        """Constructor options from the TTS service's settings."""
        return {"threads": settings.threads}

    @property
    @abc.abstractmethod
    def loaded(self) -> bool: ...

    @abc.abstractmethod
    def load(self) -> None: ...

    @abc.abstractmethod
    def voices(self) -> list[str]: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def synthesize(self, text: str, voice: str, speed: float = 1.0) -> Iterator[np.ndarray]:
        if not self.loaded:
            raise EngineFailure(f"{self.name} engine used before load()")
        check_voice(voice, self.voices())
        speed = check_speed(speed)
        meter = CallMeter("tts", self.name)
        try:
            yield from iterate(
                lambda: self._synthesize(text, voice, speed), self.retry, on_retry=meter.retried
            )
        except Exception as exc:
            meter.failed(exc)
            raise
        meter.ok()

    @abc.abstractmethod
    def _synthesize(self, text: str, voice: str, speed: float) -> Iterator[np.ndarray]:
        """Chunks for ``text`` in a known ``voice`` at a checked ``speed``; stops when closed."""


ENGINES: EngineRegistry[TtsEngine] = EngineRegistry("TTS")
ENGINES.register(
    "kokoro", "phoneagent.tts.engines.kokoro_onnx:KokoroOnnxEngine", extra="tts", package="kokoro-onnx"
)
ENGINES.register("piper", "phoneagent.tts.engines.piper:PiperEngine", extra="tts-piper", package="piper-tts")
ENGINES.register(
    "kokoro-torch", "phoneagent.tts.engines.kokoro_torch:KokoroTorchEngine", extra="tts-gpu", package="kokoro"
)


def engine_names() -> list[str]:
    return list(ENGINES.names())


def create_engine(name: str, **opts: Any) -> TtsEngine:
    """Build (but do not load) the engine called ``name`` with engine-specific options."""
    return ENGINES.create(name, **opts)


def engine_options(name: str, settings: TtsSettings) -> dict[str, Any]:
    """The options engine ``name`` builds from ``settings``."""
    return ENGINES.options(name, settings)


def check_speed(speed: float) -> float:
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise InvalidArgument(f"speed must be between {MIN_SPEED} and {MAX_SPEED}, got {speed}")
    return float(speed)


def check_voice(voice: str, known: list[str]) -> str:
    if voice not in known:
        raise InvalidArgument(f"unknown voice {voice!r}; available: {', '.join(known)}")
    return voice

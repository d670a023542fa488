"""The interface every TTS engine implements, and a registry that imports engines lazily."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import numpy as np

from phoneagent.runtime.errors import InvalidArgument

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


# engine name -> "module:Class", imported only when selected.
_ENGINES: dict[str, str] = {
    "kokoro": "phoneagent.tts.engines.kokoro_onnx:KokoroOnnxEngine",
    "piper": "phoneagent.tts.engines.piper:PiperEngine",
    "kokoro-torch": "phoneagent.tts.engines.kokoro_torch:KokoroTorchEngine",
}


def engine_names() -> list[str]:
    return sorted(_ENGINES)


def create_engine(name: str, **opts: Any) -> TtsEngine:
    """Build (but do not load) the engine called ``name`` with engine-specific options."""
    target = _ENGINES.get(name)
    if target is None:
        raise InvalidArgument(f"unknown TTS engine {name!r}; choose one of {', '.join(engine_names())}")
    module_name, cls_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    engine: TtsEngine = cls(**opts)
    return engine


def check_speed(speed: float) -> float:
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise InvalidArgument(f"speed must be between {MIN_SPEED} and {MAX_SPEED}, got {speed}")
    return float(speed)


def check_voice(voice: str, known: list[str]) -> str:
    if voice not in known:
        raise InvalidArgument(f"unknown voice {voice!r}; available: {', '.join(known)}")
    return voice

"""A TTS engine made of several: a sentence is rendered by the first engine that does not fail over.

A replica can list ``kokoro-torch`` then ``kokoro`` or ``piper``: when the first engine fails
(retryably, or its model is unavailable) before any audio of a sentence came out, the next
one renders it, in the requested voice when it has it, else in its own default voice, and
resampled to the first engine's rate so the stream's resampler needs no change. Hand-overs
are counted in ``pa_engine_fallbacks_total``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from phoneagent.audio.pcm import as_float32
from phoneagent.audio.resample import resample
from phoneagent.runtime.fallback import Fallback
from phoneagent.tts.engines.base import TtsEngine


class FallbackTtsEngine:
    """:class:`TtsEngine` over ``engines`` in order of preference; speaks at the first one's rate."""

    def __init__(self, engines: Sequence[TtsEngine]) -> None:
        self._chain = Fallback("tts", engines)
        self.name = self._chain.engines[0].name

    @property
    def engines(self) -> tuple[TtsEngine, ...]:
        return self._chain.engines

    @property
    def native_rate(self) -> int:
        return self._chain.engines[0].native_rate

    def load(self) -> None:
        for engine in self._chain.engines:
            engine.load()

    def voices(self) -> list[str]:
        return self._chain.engines[0].voices()

    def synthesize(self, text: str, voice: str, speed: float = 1.0) -> Iterator[np.ndarray]:
        return self._chain.iterate(lambda engine: self._render(engine, text, voice, speed))

    def _render(self, engine: TtsEngine, text: str, voice: str, speed: float) -> Iterator[np.ndarray]:
        own_voice = voice if voice in engine.voices() or engine is self._chain.engines[0] else None
        rate = self.native_rate
        chunks = engine.synthesize(text, own_voice or engine.voices()[0], speed)
        try:
            for chunk in chunks:
                same = engine.native_rate == rate
                yield chunk if same else as_float32(resample(chunk, engine.native_rate, rate))
        finally:  # a caller that stops early stops the engine now
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def close(self) -> None:
        for engine in self._chain.engines:
            engine.close()

"""An ASR engine made of several: each utterance goes to the first engine that does not fail over.

A GPU replica can list ``whisperx`` then ``faster-whisper``: when the batched decoder fails
retryably or is unavailable, the utterance is decoded on the CPU instead (counted in
``pa_engine_fallbacks_total``). The adapter reports the first engine's name and rate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from phoneagent.asr.engines.base import AsrEngine, TranscriptResult
from phoneagent.runtime.errors import InvalidArgument
from phoneagent.runtime.fallback import Fallback


class FallbackAsrEngine:
    """:class:`AsrEngine` over ``engines`` in order of preference."""

    def __init__(self, engines: Sequence[AsrEngine]) -> None:
        self._chain = Fallback("asr", engines)
        first = self._chain.engines[0]
        if any(e.sample_rate != first.sample_rate for e in self._chain.engines):
            raise InvalidArgument("fallback ASR engines must take the same sample rate")
        self.name = first.name
        self.sample_rate = first.sample_rate

    @property
    def engines(self) -> tuple[AsrEngine, ...]:
        return self._chain.engines

    def load(self) -> None:
        for engine in self._chain.engines:
            engine.load()

    def transcribe(self, pcm: np.ndarray, *, partial: bool = False) -> TranscriptResult:
        return self._chain.call(lambda engine: engine.transcribe(pcm, partial=partial))

    def busy(self) -> bool:
        return self._chain.engines[0].busy()

    def close(self) -> None:
        for engine in self._chain.engines:
            engine.close()

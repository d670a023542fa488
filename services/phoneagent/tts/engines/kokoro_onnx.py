"""Kokoro-82M v1.0 (int8 ONNX) through kokoro-onnx: the default CPU engine (24 kHz).

The model is not autoregressive: each piece of text is rendered whole, so this engine
yields one chunk per sentence and time to first audio grows with the length of the first
piece. The stream feeds it short pieces (see ``phoneagent.tts.chunker``).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from phoneagent.runtime.errors import EngineFailure
from phoneagent.runtime.modelfiles import MissingModelError
from phoneagent.tts import models
from phoneagent.tts.engines.base import BaseTtsEngine

log = logging.getLogger(__name__)

# Kokoro handles at most ~510 phonemes per pass; sentences are far shorter in a call,
# and a longer text is split here at sentence ends so the caller can stop between them.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")


class KokoroOnnxEngine(BaseTtsEngine):
    name = "kokoro"
    native_rate = models.KOKORO_SAMPLE_RATE

    def __init__(
        self,
        model_path: str | Path | None = None,
        voices_path: str | Path | None = None,
        threads: int = 1,
        providers: list[str] | None = None,
    ) -> None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self._model_path = Path(model_path) if model_path else None
        self._voices_path = Path(voices_path) if voices_path else None
        self._threads = threads
        self._providers = providers or ["CPUExecutionProvider"]
        self._kokoro: Any = None
        self._voices: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            if self._kokoro is not None:
                return
            try:
                import onnxruntime as ort
                from kokoro_onnx import Kokoro
            except ImportError as exc:
                raise MissingModelError(
                    "kokoro-onnx is not installed", extra=models.KOKORO_EXTRA, package="kokoro-onnx==0.6.1"
                ) from exc
            model = self._model_path or models.kokoro_model_path()
            voices_path = self._voices_path or models.kokoro_voices_target()
            self._voices = models.load_kokoro_voices(voices_path)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self._threads
            opts.inter_op_num_threads = 1
            session = ort.InferenceSession(str(model), sess_options=opts, providers=self._providers)
            kokoro = Kokoro.from_session(session, str(voices_path))
            kokoro.voices = self._voices  # the digest-checked arrays, not a lazy npz handle
            self._kokoro = kokoro
            log.info(
                "tts engine loaded",
                extra={"engine": self.name, "threads": self._threads, "voices": len(self._voices)},
            )

    def voices(self) -> list[str]:
        return models.voice_list(self._voices or models.KOKORO_VOICE_SHA256)

    @property
    def loaded(self) -> bool:
        return self._kokoro is not None

    def _synthesize(self, text: str, voice: str, speed: float) -> Iterator[np.ndarray]:
        kokoro = self._kokoro
        lang = "en-gb" if voice.startswith("b") else "en-us"
        style = self._voices[voice]
        for sentence in _SENTENCE_END.split(text.strip()):
            if not sentence:
                continue
            try:
                audio, _ = kokoro.create(sentence, voice=style, speed=speed, lang=lang, trim=True)
            except ValueError as exc:
                # kokoro-onnx raises ValueError for text that yields no phonemes (e.g. only symbols).
                log.warning("tts text produced no audio", extra={"engine": self.name, "chars": len(sentence)})
                if "phoneme" in str(exc):
                    continue
                raise EngineFailure("kokoro could not synthesise the text") from exc
            yield np.asarray(audio, dtype=np.float32)

    def close(self) -> None:
        with self._lock:
            self._kokoro = None

"""Piper (VITS, ONNX) with the en_US-joe-medium voice: the low-latency CPU engine (22.05 kHz).

Piper renders one sentence per pass, roughly ten times faster than Kokoro on a CPU, at a
lower voice quality. The runtime (piper-tts) is GPL-3.0: it is an optional extra.
"""

from __future__ import annotations

import json
import logging
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


class PiperEngine(BaseTtsEngine):
    name = "piper"

    def __init__(
        self,
        model_path: str | Path | None = None,
        config_path: str | Path | None = None,
        threads: int = 1,
        volume: float = 0.8,
    ) -> None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self._model_path = Path(model_path) if model_path else None
        self._config_path = Path(config_path) if config_path else None
        self._threads = threads
        self._volume = volume
        self._voice: Any = None
        self._syn_config: Any = None
        self._voice_name = models.PIPER_VOICE
        self.native_rate = 22_050
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            if self._voice is not None:
                return
            try:
                import onnxruntime as ort
                from piper import PiperVoice
                from piper.config import PiperConfig
            except ImportError as exc:
                raise MissingModelError(
                    "piper-tts is not installed", extra=models.PIPER_EXTRA, package="piper-tts==1.8.0"
                ) from exc
            model, config = self._files()
            with config.open(encoding="utf-8") as fh:
                piper_config = PiperConfig.from_dict(json.load(fh))
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self._threads
            opts.inter_op_num_threads = 1
            session = ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
            self._voice = PiperVoice(session=session, config=piper_config)
            self.native_rate = int(piper_config.sample_rate)
            log.info("tts engine loaded", extra={"engine": self.name, "threads": self._threads})

    def _files(self) -> tuple[Path, Path]:
        if self._model_path is None:
            files = models.piper_files()
            return files.model, files.config
        config = self._config_path or Path(f"{self._model_path}.json")
        for path in (self._model_path, config):
            if not path.is_file():
                raise MissingModelError(f"Piper voice file {path.name} not found", extra=models.PIPER_EXTRA)
        self._voice_name = self._model_path.name.removesuffix(".onnx")
        return self._model_path, config

    def voices(self) -> list[str]:
        return [self._voice_name]

    @property
    def loaded(self) -> bool:
        return self._voice is not None

    def _synthesize(self, text: str, voice: str, speed: float) -> Iterator[np.ndarray]:
        piper_voice = self._voice
        from piper.config import SynthesisConfig

        cfg = SynthesisConfig(length_scale=1.0 / speed, normalize_audio=True, volume=self._volume)
        try:
            for chunk in piper_voice.synthesize(text, syn_config=cfg):
                yield np.asarray(chunk.audio_float_array, dtype=np.float32)
        except (RuntimeError, ValueError) as exc:
            raise EngineFailure("piper could not synthesise the text") from exc

    def close(self) -> None:
        with self._lock:
            self._voice = None

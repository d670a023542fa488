"""GPU speech recognition with whisperx's batched Whisper decoder (CUDA images only).

Utterances from concurrent calls are gathered by a :class:`MicroBatcher` and decoded in
one batched pass (``whisperx.asr.WhisperModel.generate_segment_batched``). Our own VAD
has already cut the audio, so whisperx's VAD pipeline (whose weights download at run
time) is not used. Word times come from whisperx forced alignment, only when a local
wav2vec2 alignment model directory is given: nothing is downloaded. Install with the
``asr-gpu`` extra.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from phoneagent.asr.engines.base import BaseAsrEngine, TranscriptResult, Word, audio_seconds
from phoneagent.asr.engines.batching import MicroBatcher
from phoneagent.asr.models import TINY_EN, is_english_only, resolve_model
from phoneagent.runtime.errors import EngineFailure, InvalidArgument
from phoneagent.runtime.modelfiles import MissingModelError

if TYPE_CHECKING:
    from phoneagent.asr.settings import AsrSettings

log = logging.getLogger(__name__)


def _import_whisperx() -> SimpleNamespace:
    """The pieces of whisperx (and its faster-whisper) the engine uses, imported when it is built."""
    try:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import TranscriptionOptions
        from whisperx import alignment, asr
        from whisperx.audio import N_SAMPLES, log_mel_spectrogram
    except ImportError as exc:
        raise MissingModelError(
            "the whisperx GPU engine is not installed", extra="asr-gpu", package="whisperx"
        ) from exc
    return SimpleNamespace(
        Tokenizer=Tokenizer,
        TranscriptionOptions=TranscriptionOptions,
        alignment=alignment,
        asr=asr,
        N_SAMPLES=N_SAMPLES,
        log_mel_spectrogram=log_mel_spectrogram,
    )


def _options(options_cls: Any, beam_size: int, initial_prompt: str | None, multilingual: bool) -> Any:
    return options_cls(
        beam_size=beam_size,
        best_of=1,
        patience=1.0,
        length_penalty=1.0,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        log_prob_threshold=-1.0,
        no_speech_threshold=0.6,
        compression_ratio_threshold=2.4,
        condition_on_previous_text=False,
        prompt_reset_on_temperature=0.5,
        temperatures=[0.0],
        initial_prompt=initial_prompt,
        prefix=None,
        suppress_blank=True,
        suppress_tokens=[-1],
        without_timestamps=True,
        max_initial_timestamp=0.0,
        word_timestamps=False,
        prepend_punctuations="\"'“¿([{-",
        append_punctuations="\"'.。,，!！?？:：”)]}、",
        multilingual=multilingual,
        max_new_tokens=None,
        clip_timestamps="0",
        hallucination_silence_threshold=None,
        hotwords=None,
    )


class WhisperXEngine(BaseAsrEngine):
    """Batched Whisper on CUDA. Thread-safe: concurrent calls are batched together."""

    name = "whisperx"

    def __init__(
        self,
        *,
        model: str = TINY_EN,
        device: str = "cuda",
        device_index: int = 0,
        compute_type: str = "float16",
        language: str = "en",
        beam_size: int = 1,
        batch_size: int = 8,
        batch_wait_ms: float = 10.0,
        initial_prompt: str | None = None,
        align_model_dir: str | None = None,
    ) -> None:
        self._wx = _import_whisperx()
        if is_english_only(model) and language != "en":
            raise InvalidArgument(f"model {model!r} is English-only; language must be 'en'")
        if batch_size < 1 or beam_size < 1:
            raise InvalidArgument("batch_size and beam_size must be at least 1")
        self.model_name = model
        self.device = device
        self.device_index = device_index
        self.compute_type = compute_type
        self.language = language
        self.beam_size = beam_size
        self.initial_prompt = initial_prompt or None
        self.align_model_dir = align_model_dir
        self._model: Any = None
        self._tokenizer: Any = None
        self._options: Any = None
        self._align: tuple[Any, dict[str, Any]] | None = None
        self._batcher: MicroBatcher[tuple[np.ndarray, bool], TranscriptResult] = MicroBatcher(
            self._decode_batch, max_batch=batch_size, max_wait_s=batch_wait_ms / 1000.0
        )

    @classmethod
    def options_from(cls, settings: AsrSettings) -> dict[str, Any]:
        return {
            **super().options_from(settings),
            "batch_size": settings.batch_size,
            "initial_prompt": settings.initial_prompt or None,
            "align_model_dir": settings.align_model_dir or None,
        }

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        if self._model is not None:
            return
        path = resolve_model(self.model_name)
        started = time.perf_counter()
        model = self._wx.asr.WhisperModel(
            str(path),
            device=self.device,
            device_index=self.device_index,
            compute_type=self.compute_type,
            local_files_only=True,
        )
        self._tokenizer = self._wx.Tokenizer(
            model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=self.language
        )
        self._options = _options(
            self._wx.TranscriptionOptions, self.beam_size, self.initial_prompt, model.model.is_multilingual
        )
        if self.align_model_dir:
            self._align = self._load_alignment(Path(self.align_model_dir))
        self._model = model
        log.info(
            "asr engine loaded",
            extra={
                "engine": self.name,
                "model": self.model_name,
                "device": self.device,
                "alignment": self._align is not None,
                "load_s": round(time.perf_counter() - started, 3),
            },
        )

    def _load_alignment(self, directory: Path) -> tuple[Any, dict[str, Any]]:
        if not (directory / "config.json").is_file():
            raise MissingModelError(
                "alignment model directory has no config.json; alignment weights must be provided locally",
                extra="asr-gpu",
                package=str(directory),
            )
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            model, metadata = self._wx.alignment.load_align_model(
                self.language, self._device_name(), model_name=str(directory), model_cache_only=True
            )
        except Exception as exc:
            raise MissingModelError(
                "alignment model could not be loaded from the local directory",
                extra="asr-gpu",
                package=str(directory),
            ) from exc
        return model, metadata

    def _device_name(self) -> str:
        return f"cuda:{self.device_index}" if self.device == "cuda" else self.device

    def busy(self) -> bool:
        return self._batcher.busy()

    def _transcribe(self, pcm: np.ndarray, partial: bool) -> TranscriptResult:
        return self._batcher.submit((pcm[: self._wx.N_SAMPLES], partial))

    def _decode_batch(self, items: list[tuple[np.ndarray, bool]]) -> list[TranscriptResult]:
        started = time.perf_counter()
        n_mels = self._model.feat_kwargs.get("feature_size") or 80
        wx = self._wx
        features = np.stack(
            [
                np.asarray(wx.log_mel_spectrogram(pcm, n_mels=n_mels, padding=wx.N_SAMPLES - len(pcm)).cpu())
                for pcm, _ in items
            ]
        )
        try:
            out = self._model.generate_segment_batched(features, self._tokenizer, self._options)
        except Exception as exc:
            log.warning(
                "asr batch decode failed",
                extra={"engine": self.name, "batch": len(items), "error": type(exc).__name__},
            )
            raise EngineFailure("speech recognition failed") from exc
        compute_s = time.perf_counter() - started
        results = []
        for (pcm, partial), text, logprob in zip(items, out["text"], out["avg_logprob"], strict=True):
            words = () if partial else self._words(text.strip(), pcm)
            results.append(
                TranscriptResult(
                    text=text.strip(),
                    language=self.language,
                    words=words,
                    avg_logprob=float(logprob),
                    audio_s=audio_seconds(pcm),
                    compute_s=compute_s,
                )
            )
        return results

    def _words(self, text: str, pcm: np.ndarray) -> tuple[Word, ...]:
        if self._align is None or not text:
            return ()
        model, metadata = self._align
        segment = {"text": text, "start": 0.0, "end": audio_seconds(pcm)}
        aligned = self._wx.alignment.align([segment], model, metadata, pcm, self._device_name())
        return tuple(
            Word(text=w["word"], start=float(w["start"]), end=float(w["end"]), probability=float(w["score"]))
            for w in aligned.get("word_segments", ())
            if "start" in w and "end" in w
        )

    def close(self) -> None:
        self._model = None
        self._align = None

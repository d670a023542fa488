"""Stand-ins for the whisperx modules with the real API's shape, so the whisperx engine runs
without a GPU: whisperx.asr.WhisperModel.generate_segment_batched returning
{"text": [...], "avg_logprob": [...]}, whisperx.load_model, whisperx.alignment.load_align_model
and align returning {"segments", "word_segments"}. The stand-in "recognises" each utterance as
``item <its length in samples>``. The ``calls`` fixture (tests/asr/conftest.py) installs them."""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np
import pytest

N_SAMPLES = 480_000  # 30 s at 16 kHz, as in whisperx.audio


class Calls:
    def __init__(self) -> None:
        self.batches: list[int] = []
        self.aligned: list[tuple[list[dict[str, Any]], str, int]] = []
        self.align_loads: list[tuple[str, str, dict[str, Any]]] = []
        self.model_args: dict[str, Any] = {}


def _stub_whisperx(calls: Calls) -> dict[str, types.ModuleType]:
    class WhisperModel:  # whisperx.asr.WhisperModel(faster_whisper.WhisperModel)
        def __init__(self, model_size_or_path: str, **kwargs: Any) -> None:
            calls.model_args = {"path": model_size_or_path, **kwargs}
            self.hf_tokenizer = None
            self.model = types.SimpleNamespace(is_multilingual=False)
            self.feat_kwargs = {"feature_size": 80}

        def generate_segment_batched(
            self, features: np.ndarray, tokenizer: Any, options: Any, encoder_output: Any = None
        ) -> dict[str, list[Any]]:
            assert features.ndim == 3 and features.shape[1] == 80
            calls.batches.append(features.shape[0])
            # The stand-in "recognises" each item's audio length, written into its features.
            return {
                "text": [f" item {int(f[0, 0])}" for f in features],
                "avg_logprob": [-0.1 * (i + 1) for i in range(features.shape[0])],
            }

    class Mel:
        def __init__(self, a: np.ndarray) -> None:
            self.a = a

        def cpu(self) -> np.ndarray:
            return self.a

    def log_mel_spectrogram(audio: np.ndarray, n_mels: int = 80, padding: int = 0) -> Mel:
        assert len(audio) + padding == N_SAMPLES
        return Mel(np.full((n_mels, 3000), float(len(audio)), np.float32))

    def load_align_model(
        language_code: str,
        device: str,
        model_name: str | None = None,
        model_dir: str | None = None,
        **kw: Any,
    ) -> tuple[object, dict[str, Any]]:
        calls.align_loads.append((language_code, device, {"model_name": model_name, **kw}))
        return object(), {"language": language_code, "dictionary": {}, "type": "huggingface"}

    def align(
        transcript: list[dict[str, Any]],
        model: object,
        metadata: dict[str, Any],
        audio: np.ndarray,
        device: str,
        **kw: Any,
    ) -> dict[str, Any]:
        calls.aligned.append((transcript, device, len(audio)))
        words = transcript[0]["text"].split()
        segs = [
            {"word": w, "start": 0.1 * i, "end": 0.1 * i + 0.08, "score": 0.9} for i, w in enumerate(words)
        ]
        segs.append({"word": "42"})  # whisperx leaves tokens it cannot align without times
        return {"segments": [{**transcript[0], "words": segs}], "word_segments": segs}

    def load_model(whisper_arch: str, device: str, **kw: Any) -> object:  # the pipeline entry point
        return types.SimpleNamespace(model=WhisperModel(whisper_arch, device=device))

    root = types.ModuleType("whisperx")
    root.__path__ = []  # a package
    asr = types.ModuleType("whisperx.asr")
    asr.WhisperModel = WhisperModel  # type: ignore[attr-defined]
    asr.load_model = load_model  # type: ignore[attr-defined]
    alignment = types.ModuleType("whisperx.alignment")
    alignment.load_align_model = load_align_model  # type: ignore[attr-defined]
    alignment.align = align  # type: ignore[attr-defined]
    audio = types.ModuleType("whisperx.audio")
    audio.N_SAMPLES = N_SAMPLES  # type: ignore[attr-defined]
    audio.log_mel_spectrogram = log_mel_spectrogram  # type: ignore[attr-defined]
    root.asr, root.alignment, root.audio = asr, alignment, audio  # type: ignore[attr-defined]
    root.load_model, root.load_align_model, root.align = load_model, load_align_model, align  # type: ignore[attr-defined]
    return {"whisperx": root, "whisperx.asr": asr, "whisperx.alignment": alignment, "whisperx.audio": audio}


def install(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Put the stand-ins in ``sys.modules`` (and re-import the engine module against them)."""
    calls = Calls()
    for name, module in _stub_whisperx(calls).items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delitem(sys.modules, "phoneagent.asr.engines.whisperx", raising=False)
    return calls


def uninstall() -> None:
    sys.modules.pop("phoneagent.asr.engines.whisperx", None)

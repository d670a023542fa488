"""WhisperXEngine's batching and alignment, against stand-ins for the whisperx modules with the
real API's shape (whisperx.asr.WhisperModel.generate_segment_batched returning
{"text": [...], "avg_logprob": [...]}, whisperx.load_model, whisperx.alignment.load_align_model
and align returning {"segments", "word_segments"}), so it runs without a GPU. The service's
settings PA_ASR_BATCH_SIZE and PA_ASR_ALIGN_MODEL_DIR reach the engine."""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from phoneagent.asr.service import AsrService
from phoneagent.asr.settings import AsrSettings
from phoneagent.runtime.settings import CommonSettings, SettingsError, load

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


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Calls]:
    calls = Calls()
    for name, module in _stub_whisperx(calls).items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delitem(sys.modules, "phoneagent.asr.engines.whisperx", raising=False)
    yield calls
    sys.modules.pop("phoneagent.asr.engines.whisperx", None)


@pytest.fixture
def align_dir(tmp_path: Path) -> Path:
    (tmp_path / "config.json").write_text("{}")
    return tmp_path


def service(**env: str) -> AsrService:
    settings = load(AsrSettings, {"PA_ASR_ENGINE": "whisperx", "PA_ASR_DEVICE": "cuda", **env})
    return AsrService(load(CommonSettings, {}), settings)


def test_batch_size_and_alignment_settings_are_validated(align_dir: Path) -> None:
    for bad in ("0", "65", "x"):
        with pytest.raises(SettingsError, match="PA_ASR_BATCH_SIZE"):
            service(PA_ASR_BATCH_SIZE=bad)
    with pytest.raises(SettingsError, match="PA_ASR_ALIGN_MODEL_DIR"):
        service(PA_ASR_ALIGN_MODEL_DIR=str(align_dir / "missing"))
    with pytest.raises(SettingsError, match="PA_ASR_ALIGN_MODEL_DIR.*whisperx"):
        load(AsrSettings, {"PA_ASR_ALIGN_MODEL_DIR": str(align_dir)})  # faster-whisper cannot align
    opts = service(PA_ASR_BATCH_SIZE="4", PA_ASR_ALIGN_MODEL_DIR=str(align_dir)).engine_options()
    assert opts["batch_size"] == 4 and opts["align_model_dir"] == str(align_dir)


def test_concurrent_utterances_are_decoded_in_one_batch_and_finals_get_aligned_words(
    calls: Calls, align_dir: Path
) -> None:
    from phoneagent.asr.engines.base import create_engine

    svc = service(PA_ASR_BATCH_SIZE="4", PA_ASR_ALIGN_MODEL_DIR=str(align_dir))
    engine = create_engine("whisperx", **svc.engine_options(), batch_wait_ms=500)
    engine.load()
    assert calls.model_args["device"] == "cuda" and calls.model_args["local_files_only"] is True
    assert calls.align_loads == [("en", "cuda:0", {"model_name": str(align_dir), "model_cache_only": True})]

    lengths = [16000, 24000, 32000, 40000]
    results: dict[int, Any] = {}

    def run(n: int) -> None:
        results[n] = engine.transcribe(np.zeros(n, np.float32), partial=(n == 24000))

    threads = [threading.Thread(target=run, args=(n,)) for n in lengths]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert calls.batches == [4]  # one batched pass for four calls' utterances (PA_ASR_BATCH_SIZE)
    for n in lengths:
        assert results[n].text == f"item {n}"  # each caller gets its own text back
        assert results[n].audio_s == n / 16000
    # Finals are aligned (words with times; unalignable tokens dropped); the partial is not.
    assert results[24000].words == ()
    assert [w.text for w in results[16000].words] == ["item", "16000"]
    assert results[40000].words[1].start == pytest.approx(0.1) and results[40000].words[1].probability == 0.9
    assert sorted(n for _, _, n in calls.aligned) == [16000, 32000, 40000]
    assert all(t[0]["start"] == 0.0 and t[0]["end"] == n / 16000 for t, _, n in calls.aligned)

    # A fifth utterance beyond the batch size waits for the next pass.
    calls.batches.clear()
    threads = [threading.Thread(target=run, args=(n,)) for n in (*lengths, 48000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(calls.batches) == [1, 4] and results[48000].text == "item 48000"
    engine.close()


def test_without_an_alignment_directory_finals_have_no_words(calls: Calls) -> None:
    from phoneagent.asr.engines.base import create_engine

    engine = create_engine("whisperx", **service().engine_options())
    engine.load()
    result = engine.transcribe(np.zeros(8000, np.float32))
    assert result.text == "item 8000" and result.words == ()
    assert calls.align_loads == [] and calls.aligned == []

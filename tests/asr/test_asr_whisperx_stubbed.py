"""WhisperXEngine's batching and alignment, against stand-ins for the whisperx modules with the
real API's shape (whisperx.asr.WhisperModel.generate_segment_batched returning
{"text": [...], "avg_logprob": [...]}, whisperx.load_model, whisperx.alignment.load_align_model
and align returning {"segments", "word_segments"}), so it runs without a GPU. The service's
settings PA_ASR_BATCH_SIZE and PA_ASR_ALIGN_MODEL_DIR reach the engine."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from phoneagent.asr.service import AsrService
from phoneagent.asr.settings import AsrSettings
from phoneagent.runtime.settings import CommonSettings, SettingsError, load
from support.whisperx_standin import Calls


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

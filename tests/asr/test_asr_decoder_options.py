"""faster-whisper decoder options for finals: lead-in silence and beam width (partials untouched)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from phoneagent.asr.engines.base import create_engine, engine_options
from phoneagent.asr.settings import AsrSettings
from phoneagent.runtime.errors import InvalidArgument
from phoneagent.runtime.settings import SettingsError, load


class _Model:
    """Stands in for faster_whisper.WhisperModel: notes what each decode was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[np.ndarray, dict[str, Any]]] = []

    def transcribe(self, pcm: np.ndarray, **kwargs: Any) -> tuple[Any, Any]:
        self.calls.append((pcm, kwargs))
        word = SimpleNamespace(word=" Who", start=0.62, end=0.9, probability=0.9)
        seg = SimpleNamespace(text=" Who is it?", words=[word], avg_logprob=-0.2, no_speech_prob=0.01)
        return iter([seg]), SimpleNamespace(language="en")


def _engine(**env: str) -> tuple[Any, _Model]:
    # faster-whisper's own path (Whisper's 30 s window): the short window is tested with the model
    settings = load(AsrSettings, {"PA_ASR_WINDOW_S": "30", **env})
    engine = create_engine("faster-whisper", **engine_options("faster-whisper", settings))
    model = _Model()
    engine._model = model  # decoding is faked; what reaches the model is under test
    return engine, model


def test_finals_get_lead_in_silence_and_the_beam_partials_neither() -> None:
    engine, model = _engine(PA_ASR_LEAD_IN_MS="500", PA_ASR_BEAM_SIZE="3")
    pcm = np.full(8000, 0.1, dtype=np.float32)

    final = engine.transcribe(pcm)
    fed, kwargs = model.calls[-1]
    assert len(fed) == 8000 + 8000 and not fed[:8000].any() and np.array_equal(fed[8000:], pcm)
    assert kwargs["beam_size"] == 3
    assert final.audio_s == pytest.approx(0.5)  # the caller's audio, not the lead-in
    assert final.text == "Who is it?"

    engine.transcribe(pcm, partial=True)
    fed, kwargs = model.calls[-1]
    assert np.array_equal(fed, pcm) and kwargs["beam_size"] == 1


def test_word_times_do_not_count_the_lead_in() -> None:
    engine, _ = _engine(PA_ASR_LEAD_IN_MS="500")
    engine.word_timestamps = True
    (word,) = engine.transcribe(np.full(8000, 0.1, dtype=np.float32)).words
    assert word.start == pytest.approx(0.12) and word.end == pytest.approx(0.4)


def test_lead_in_zero_turns_it_off() -> None:
    engine, model = _engine(PA_ASR_LEAD_IN_MS="0")
    pcm = np.full(4000, 0.1, dtype=np.float32)
    engine.transcribe(pcm)
    assert np.array_equal(model.calls[-1][0], pcm)


def test_bad_values_are_refused() -> None:
    with pytest.raises(SettingsError):
        load(AsrSettings, {"PA_ASR_LEAD_IN_MS": "-1"})
    with pytest.raises(SettingsError):
        load(AsrSettings, {"PA_ASR_BEAM_SIZE": "0"})
    with pytest.raises(InvalidArgument):
        create_engine("faster-whisper", lead_in_ms=-5)

"""Silero VAD v6 (ONNX from the faster-whisper package), streamed window by window."""

from __future__ import annotations

import numpy as np
import pytest
from phoneagent.asr import vad
from phoneagent.asr.vad import WINDOW, SileroVad, silero_model_path
from phoneagent.runtime.errors import PhoneAgentError
from phoneagent.runtime.modelfiles import MissingModelError

RATE = 16000


def probs(vad: SileroVad, audio: np.ndarray) -> np.ndarray:
    n = len(audio) // WINDOW
    return np.array([vad.probability(audio[i * WINDOW : (i + 1) * WINDOW]) for i in range(n)])


def test_model_ships_with_faster_whisper() -> None:
    path = silero_model_path()
    assert path.name == "silero_vad_v6.onnx" and path.stat().st_size > 100_000
    assert vad._verified[path] == vad.SILERO_SHA256


def test_a_vad_file_with_other_bytes_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vad, "_verified", {})
    monkeypatch.setattr(vad, "SILERO_SHA256", "0" * 64)  # as if the packaged file had changed
    with pytest.raises(MissingModelError) as err:
        silero_model_path()
    assert "sha256" in str(err.value) and "faster-whisper" in str(err.value)


def test_speech_is_detected_and_silence_is_not(speak) -> None:  # type: ignore[no-untyped-def]
    speech = speak("What are your opening hours")
    audio = np.concatenate([np.zeros(RATE, np.float32), speech, np.zeros(RATE, np.float32)])
    p = probs(SileroVad(), audio)
    lead = RATE // WINDOW - 1
    assert p[:lead].max() < 0.2
    assert (p[lead : lead + len(speech) // WINDOW] > 0.5).mean() > 0.6
    assert p[-10:].max() < 0.35


def test_low_noise_is_not_speech() -> None:
    noise = np.random.default_rng(7).normal(0, 0.003, 2 * RATE).astype(np.float32)
    assert probs(SileroVad(), noise).max() < 0.3


def test_telephone_band_speech_is_detected(speak, phone_line) -> None:  # type: ignore[no-untyped-def]
    speech = phone_line(speak("Can I talk to a person please"))
    assert (probs(SileroVad(), speech) > 0.5).mean() > 0.5


def test_state_is_per_stream_and_reset_restores_it(speak) -> None:  # type: ignore[no-untyped-def]
    speech = speak("Can I talk to a person please")
    a, b = SileroVad(), SileroVad()
    first = probs(a, speech)
    probs(b, speech[::-1].copy())  # another stream's state must not leak into a
    assert np.array_equal(probs(a.__class__(), speech), first)
    b.reset()
    np.testing.assert_allclose(probs(b, speech), first, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size", [320, 511, 1024])
def test_wrong_window_size_is_rejected(size: int) -> None:
    with pytest.raises(PhoneAgentError):
        SileroVad().probability(np.zeros(size, np.float32))

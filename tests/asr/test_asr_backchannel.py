"""Backchannel classification and validation of caller audio."""

from __future__ import annotations

import numpy as np
import pytest
from phoneagent.asr.audio_check import check_audio, from_pcm16, is_bad_audio
from phoneagent.asr.backchannel import BackchannelConfig, is_backchannel, normalise
from phoneagent.runtime.errors import ErrorKind, PhoneAgentError


@pytest.mark.parametrize(
    "text",
    [
        "yeah",
        "Yeah.",
        "YES!",
        "uh-huh",
        "Uh huh.",
        "mm-hmm",
        "Mm-hmm.",
        "mhm",
        "okay",
        "OK.",
        "O.K.",
        "ok",
        "right",
        "Right...",
        "sure",
        "Got it.",
        "I see.",
        "Yeah, okay.",
        "Okay, got it.",
        "Yes, yes.",
        "Alright.",
    ],
)
def test_short_acknowledgements_are_backchannels(text: str) -> None:
    assert is_backchannel(text, 0.6)


@pytest.mark.parametrize(
    "text",
    [
        "no",
        "Stop.",
        "wait",
        "Yes, I want to book a table",
        "What?",
        "Right, but what about Tuesday?",
        "okay so can you repeat that",
        "",
        "...",
        "I see a problem",
    ],
)
def test_content_is_not_a_backchannel(text: str) -> None:
    assert not is_backchannel(text, 0.6)


def test_long_audio_is_not_a_backchannel_even_with_backchannel_words() -> None:
    assert is_backchannel("yeah", 1.0)
    assert not is_backchannel("yeah", 3.0)
    assert not is_backchannel("yeah yeah yeah yeah yeah", 1.0)
    assert is_backchannel("yeah", 3.0, BackchannelConfig(max_duration_s=4.0))


def test_normalise_maps_spelling_variants() -> None:
    assert normalise("Mm-hmm, O.K.!") == ["mm", "hmm", "ok"]
    assert normalise("Uh-huh.") == ["uh", "huh"]


RATE = 16000


def frame(value: float = 0.1, n: int = 320) -> np.ndarray:
    return np.full(n, value, dtype=np.float32)


@pytest.mark.parametrize(
    ("pcm", "rate", "reason"),
    [
        (frame(), 8000, "sample rate"),
        (np.zeros(0, np.float32), RATE, "empty"),
        (np.array([0.1, np.nan, 0.2], np.float32), RATE, "NaN"),
        (np.array([0.1, np.inf], np.float32), RATE, "NaN or infinite"),
        (frame(1.5), RATE, "[-1, 1]"),
        (frame(1.0), RATE, "clipped"),
        (np.full(320, 32767, np.int16), RATE, "clipped"),
        (np.zeros((320, 2), np.float32), RATE, "mono"),
        (np.zeros(320, np.int32), RATE, "sample type"),
        (np.zeros(6 * RATE, np.float32), RATE, "longer"),
    ],
)
def test_bad_audio_is_named(pcm: np.ndarray, rate: int, reason: str) -> None:
    found = is_bad_audio(pcm, rate)
    assert found is not None and reason in found
    with pytest.raises(PhoneAgentError) as err:
        check_audio(pcm, rate)
    assert err.value.kind is ErrorKind.INVALID_ARGUMENT and reason in err.value.message


def test_good_audio_passes_and_int16_is_scaled() -> None:
    assert is_bad_audio(frame(0.5), RATE) is None
    loud_but_fine = np.where(np.arange(320) % 10 == 0, 1.0, 0.2).astype(np.float32)  # 10% at full scale
    assert is_bad_audio(loud_but_fine, RATE) is None
    out = check_audio(np.full(320, -16384, np.int16), RATE)
    assert out.dtype == np.float32 and out[0] == pytest.approx(-0.5)


def test_pcm16_bytes() -> None:
    data = np.array([0, 16384, -32768], "<i2").tobytes()
    np.testing.assert_allclose(from_pcm16(data), [0.0, 0.5, -1.0])
    with pytest.raises(PhoneAgentError):
        from_pcm16(b"\x00\x01\x02")

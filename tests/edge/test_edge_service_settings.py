"""Edge settings are checked at start: a value that passes must work for every call."""

from __future__ import annotations

import pytest
from phoneagent.edge.callflow import EdgeCallConfig
from phoneagent.edge.media.vad import VadConfig
from phoneagent.edge.settings import EdgeSettings
from phoneagent.runtime.settings import SettingsError, load


@pytest.mark.parametrize("value", ["0", "10", "19", "30", "-20"])
def test_barge_in_min_speech_rejected_at_start(value: str) -> None:
    with pytest.raises(SettingsError) as err:
        load(EdgeSettings, environ={"PA_BARGE_IN_MIN_SPEECH_MS": value})
    assert "PA_BARGE_IN_MIN_SPEECH_MS" in str(err.value) and "multiple of 20" in str(err.value)


@pytest.mark.parametrize("value", ["20", "40", "200", "1000"])
def test_barge_in_min_speech_accepted_builds_the_vad(value: str) -> None:
    settings = load(EdgeSettings, environ={"PA_BARGE_IN_MIN_SPEECH_MS": value})
    assert settings.barge_in_min_speech_ms == int(value)
    config = EdgeCallConfig(min_speech_ms=settings.barge_in_min_speech_ms)
    for rate in (8000, 16000, 48000):  # SIP and WebRTC calls build their VAD from it
        assert VadConfig(sample_rate=rate, min_speech_ms=config.min_speech_ms).min_speech_ms == int(value)


@pytest.mark.parametrize("value", ["0", "50", "20000"])
def test_backchannel_wait_out_of_range_rejected(value: str) -> None:
    with pytest.raises(SettingsError) as err:
        load(EdgeSettings, environ={"PA_BARGE_IN_BACKCHANNEL_WAIT_MS": value})
    assert "PA_BARGE_IN_BACKCHANNEL_WAIT_MS" in str(err.value)


def test_backchannel_wait_default_and_set() -> None:
    assert load(EdgeSettings, environ={}).backchannel_wait_ms == 1200
    assert load(EdgeSettings, environ={"PA_BARGE_IN_BACKCHANNEL_WAIT_MS": "2500"}).backchannel_wait_ms == 2500

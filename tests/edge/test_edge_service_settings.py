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


def test_long_speech_barge_in_default_set_and_checked() -> None:
    assert load(EdgeSettings, environ={}).barge_in_long_ms == 1600
    assert load(EdgeSettings, environ={"PA_BARGE_IN_LONG_MS": "1000"}).barge_in_long_ms == 1000
    with pytest.raises(SettingsError) as err:
        load(EdgeSettings, environ={"PA_BARGE_IN_LONG_MS": "1010"})
    assert "PA_BARGE_IN_LONG_MS" in str(err.value)


def test_default_trunks_admit_loopback_only() -> None:
    (trunk,) = load(EdgeSettings, environ={}).trunks
    assert trunk.matches("127.0.0.1") and trunk.matches("127.8.0.1")
    assert not trunk.matches("10.0.0.1") and not trunk.username


@pytest.mark.parametrize(
    ("environ", "variable", "reason"),
    [
        ({"PA_SIP_INBOUND_TRUNKS": "carrier"}, "PA_SIP_INBOUND_TRUNKS", "JSON list"),
        (
            {"PA_SIP_INBOUND_TRUNKS": '[{"name": "c", "sources": ["10.0.0.0/33"]}]'},
            "PA_SIP_INBOUND_TRUNKS",
            "CIDR",
        ),
        (
            {"PA_SIP_INBOUND_TRUNKS": '[{"name": "c", "username": "u"}]', "PA_SIP_DIGEST_SECRET": "x" * 32},
            "PA_SIP_INBOUND_PASSWORDS",
            "no password for trunk c",
        ),
        (
            {
                "PA_SIP_INBOUND_TRUNKS": '[{"name": "c", "username": "u"}]',
                "PA_SIP_INBOUND_PASSWORDS": '{"c": "p"}',
            },
            "PA_SIP_DIGEST_SECRET",
            "required",
        ),
        ({"PA_SIP_DIGEST_SECRET": "short"}, "PA_SIP_DIGEST_SECRET", "at least 32"),
        ({"PA_SIP_INBOUND_PASSWORDS": '["p"]'}, "PA_SIP_INBOUND_PASSWORDS", "JSON object"),
        ({"PA_RTP_TIMEOUT_S": "0"}, "PA_RTP_TIMEOUT_S", "> 0"),
    ],
)
def test_bad_inbound_trunk_settings_name_the_variable(
    environ: dict[str, str], variable: str, reason: str
) -> None:
    with pytest.raises(SettingsError) as err:
        load(EdgeSettings, environ=environ)
    assert variable in str(err.value) and reason in str(err.value)


def test_digest_trunk_settings_load_with_password_and_secret() -> None:
    settings = load(
        EdgeSettings,
        environ={
            "PA_SIP_INBOUND_TRUNKS": '[{"name": "pbx", "sources": ["192.0.2.0/24"], "username": "agent"}]',
            "PA_SIP_INBOUND_PASSWORDS": '{"pbx": "pw"}',
            "PA_SIP_DIGEST_SECRET": "s" * 32,
        },
    )
    assert settings.trunks[0].username == "agent" and settings.trunk_passwords == {"pbx": "pw"}

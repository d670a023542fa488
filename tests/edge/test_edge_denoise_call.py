"""Noise suppression in the call flow: with ``denoise`` the caller's noise is cleaned before the
barge-in VAD and before the audio is published for ASR; the setting picks the transports."""

from __future__ import annotations

import numpy as np
import pytest
from phoneagent.edge.callflow import EdgeCall, EdgeCallConfig
from phoneagent.edge.settings import EdgeSettings
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Delivery
from phoneagent.runtime.settings import SettingsError, load
from phoneagent.v1 import call_pb2, common_pb2, media_pb2
from support.common import wait_for
from support.edge import SilentLine

RATE = SilentLine.sample_rate
FRAME = RATE // 50


async def published_level(bus: Bus, call_id: str, denoise: bool, line: np.ndarray) -> tuple[float, bool]:
    """RMS of what the call publishes for ASR after its first second, and whether the VAD heard speech."""
    got: list[media_pb2.AudioFrame] = []

    async def on_audio(f: media_pb2.AudioFrame, _: Delivery) -> None:
        got.append(f)

    await bus.subscribe(subjects.audio_in(call_id), media_pb2.AudioFrame, on_audio, max_pending=1000)
    started = call_pb2.CallStarted(meta=common_pb2.EventMeta(call_id=call_id), sample_rate=16000)
    call = EdgeCall(bus, started, SilentLine(), EdgeCallConfig(stages=(), denoise=denoise))
    heard = False
    for i in range(0, len(line), FRAME):
        await call._caller_frame(line[i : i + FRAME])
        heard = heard or call.caller_speaking
    await wait_for(lambda: len(got) == len(line) // FRAME, timeout=10)
    audio = np.concatenate([np.frombuffer(f.pcm, "<i2") for f in sorted(got, key=lambda f: f.sequence)])
    return float(audio[16000:].astype(float).std()), heard


async def test_caller_noise_is_cleaned_before_vad_and_asr(bus: Bus) -> None:
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 2500, RATE * 3).astype(np.int16)  # a loud hiss, no voice
    raw, _ = await published_level(bus, "edge-denoise-off", False, noise)
    clean, heard_clean = await published_level(bus, "edge-denoise-on", True, noise)
    assert clean < raw / 10  # more than 20 dB quieter at ASR
    assert not heard_clean  # and the barge-in VAD hears no speech in it
    assert raw > 1000


def test_noise_suppression_setting_names_transports(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load(EdgeSettings)
    assert not s.denoise("sip") and not s.denoise("webrtc")  # off unless asked (see noise_bench)
    monkeypatch.setenv("PA_NOISE_SUPPRESSION", "sip")
    assert load(EdgeSettings).denoise("sip") and not load(EdgeSettings).denoise("webrtc")
    monkeypatch.setenv("PA_NOISE_SUPPRESSION", "sip,webrtc")
    assert load(EdgeSettings).denoise("webrtc")
    monkeypatch.setenv("PA_NOISE_SUPPRESSION", "pstn")
    with pytest.raises(SettingsError, match="PA_NOISE_SUPPRESSION"):
        load(EdgeSettings)

"""Debian's baresip offering Opus only calls the edge (default codecs: G722, OPUS, PCMU, PCMA):
the call runs on Opus at 16 kHz both ways. The caller's 440 Hz and then 6 kHz tones reach ASR's
subject (6 kHz: more than G.711's band could carry), and the agent's 1 kHz is what baresip
decodes (its sndfile module dumps it). The same with SRTP mandatory on the Opus call."""

from __future__ import annotations

import shutil
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from phoneagent.edge.settings import EdgeSettings
from phoneagent.runtime import subjects
from phoneagent.runtime.settings import load
from phoneagent.v1 import call_pb2, media_pb2
from support import baresip
from support.common import wait_for
from support.edge import Edge, running_edge
from support.sip_phone import band_energy, collect, speak

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip is not installed (apt-get baresip)"),
    pytest.mark.skipif(
        not (baresip.MODULES / "opus.so").exists(), reason="baresip's opus module is not installed"
    ),
]
RATE = 48000  # baresip's Opus runs at 48 kHz, two channels: its microphone WAV too


@pytest.fixture(scope="module")
async def edge(nats_url: str) -> AsyncIterator[Edge]:
    settings = load(
        EdgeSettings,
        sip_port=0,
        rtp_port_min=48000,
        rtp_port_max=48999,
        max_call_duration_s=30.0,
        rtp_latch=True,  # baresip's RTP leaves from 127.0.0.1 whatever address its SDP names
        web_enabled=False,
    )
    assert "OPUS" in settings.codec_names  # Opus is negotiated with the default settings
    async with running_edge(nats_url, settings, tag="opus") as edge:
        yield edge


def sine(freq: float, seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        return pcm.reshape(-1, w.getnchannels())[:, 0], w.getframerate()


def loud_frames(pcm: np.ndarray, rate: int) -> list[np.ndarray]:
    frame = rate // 50
    return [f for i in range(0, len(pcm) - frame, frame) if np.abs(f := pcm[i : i + frame]).max() > 1000]


@pytest.mark.parametrize(
    "account", ["audio_codecs=opus/48000/2", "audio_codecs=opus/48000/2;mediaenc=srtp-mand"]
)
async def test_baresip_offering_only_opus_talks_and_listens_wideband(
    edge: Edge, tmp_path: Path, account: str
) -> None:
    wav = baresip.write_wav(
        tmp_path / "in.wav", np.concatenate([sine(440, 4, RATE), sine(6000, 4, RATE)]), RATE, channels=2
    )
    conf = baresip.write_config(
        tmp_path / "conf",
        wav,
        extra=(f"snd_path {tmp_path}",),  # sndfile dumps what baresip decodes
        rtp_ports="49000-49998",
        modules=("opus", "srtp", "sndfile"),
        account=account,
    )
    before = len(edge.lifecycle("started"))
    proc = await baresip.dial(conf, f"sip:+14155550134@127.0.0.1:{edge.port}", seconds=8)
    try:
        started = await wait_for(lambda: edge.lifecycle("started")[before:], timeout=10)
        call_id = started[0].meta.call_id
        assert (started[0].codec, started[0].sample_rate, started[0].playout_rate) == ("OPUS", 16000, 16000)
        audio = await collect(edge.bus, subjects.audio_in(call_id), media_pb2.AudioFrame)
        await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=10)
        assert edge.svc.calls[call_id].rtp.encrypted == ("srtp" in account)
        await speak(edge.bus, call_id, 100, rate=16000)  # two seconds of 1 kHz from the agent
        ended = await wait_for(lambda: edge.lifecycle("ended", call_id), timeout=20)
        assert ended[0].reason == call_pb2.END_REASON_CALLER_HANGUP
    finally:
        print((await baresip.finish(proc))[-3000:])
    pcm = np.concatenate([np.frombuffer(f.pcm, "<i2") for f in audio])
    loud = loud_frames(pcm, 16000)
    assert len(loud) >= 150, len(loud)  # about seven seconds of the caller's tones
    assert band_energy(np.concatenate(loud[10:60]), 16000, 440) > 0.8
    assert band_energy(np.concatenate(loud[-60:-10]), 16000, 6000) > 0.8  # wideband all the way
    (dump,) = [p for p in tmp_path.glob("dump-*.wav") if p.stem.endswith("-dec")]
    heard, rate = read_wav(dump)
    spoken = loud_frames(heard, rate)
    assert len(spoken) >= 50, len(spoken)
    assert band_energy(np.concatenate(spoken[5:55]), rate, 1000) > 0.8

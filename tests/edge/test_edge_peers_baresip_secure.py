"""Debian's baresip calls the edge with SRTP (SDES keys, ``mediaenc=srtp-mand``) and with G.722
only: the caller's audio reaches ASR's subject, the agent's audio is what baresip decodes (its
sndfile module dumps it), and a G.722 caller's words are transcribed. Trunks by source address
set the SRTP policy: 127.0.0.1 optional, 127.0.0.2 off, 127.0.0.3 required; offers a trunk does
not allow get 488."""

from __future__ import annotations

import asyncio
import json
import shutil
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from phoneagent.devtools.harness.demo import free_udp_port
from phoneagent.edge.settings import EdgeSettings
from phoneagent.runtime import subjects
from phoneagent.runtime.settings import load
from phoneagent.v1 import call_pb2, media_pb2
from support.baresip import dial, write_wav
from support.common import wait_for, word_errors
from support.edge import Edge, gated_session, running_edge
from support.sip_phone import band_energy, collect, speak

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip is not installed (apt-get baresip)"),
]
MODULES = Path("/usr/lib/baresip/modules")
TRUNKS = [
    {"name": "lab", "sources": ["127.0.0.1/32"], "srtp": "optional"},
    {"name": "plain", "sources": ["127.0.0.2/32"], "srtp": "off"},
    {"name": "secure", "sources": ["127.0.0.3/32"], "srtp": "required"},
]


@pytest.fixture(scope="module")
async def edge(nats_url: str) -> AsyncIterator[Edge]:
    settings = load(
        EdgeSettings,
        sip_port=0,
        rtp_port_min=42000,
        rtp_port_max=42999,
        max_call_duration_s=30.0,
        inbound_trunks=json.dumps(TRUNKS),
        codecs=["G722", "PCMU", "PCMA"],
        rtp_latch=True,  # baresip's RTP leaves from 127.0.0.1 whatever address its SDP names
    )
    async with running_edge(nats_url, settings, tag="secure", factory=gated_session) as edge:
        yield edge


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        return pcm.reshape(-1, w.getnchannels())[:, 0], w.getframerate()


def sine(freq: float, seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


async def baresip(
    tmp: Path, edge: Edge, source: str, account: str, wav: Path, seconds: int
) -> asyncio.subprocess.Process:
    conf = tmp / "conf"
    conf.mkdir()
    lines = [
        f"module_path {MODULES}",
        "module g711.so",
        "module g722.so",
        "module srtp.so",
        "module aufile.so",
        "module sndfile.so",
        "module account.so",
        "module menu.so",
        f"sip_listen {source}:{free_udp_port()}",
        f"audio_source aufile,{wav}",
        "audio_player aufile,/dev/null",
        f"snd_path {tmp}",  # sndfile dumps what baresip decodes (and what it encodes) as WAV
        "audio_alert aufile,/dev/null",
        "rtp_ports 44000-44998",
        "call_max_calls 1",
    ]
    (conf / "config").write_text("\n".join(lines) + "\n")
    (conf / "accounts").write_text(f"<sip:baresip@{source}>;regint=0;{account}\n")
    return await dial(conf, f"sip:+14155550134@127.0.0.1:{edge.port}", seconds, source)


async def finish(proc: asyncio.subprocess.Process) -> str:
    try:
        await asyncio.wait_for(proc.wait(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
    out = (await proc.communicate())[0].decode(errors="replace")
    print(out[-3000:])
    return out


async def talk(
    edge: Edge, proc: asyncio.subprocess.Process, before: int
) -> tuple[str, list[media_pb2.AudioFrame]]:
    """Wait for the call, collect what reaches ASR, speak two seconds of 1 kHz as the agent."""
    started = await wait_for(lambda: edge.lifecycle("started")[before:], timeout=10)
    call_id = started[0].meta.call_id
    audio = await collect(edge.bus, subjects.audio_in(call_id), media_pb2.AudioFrame)
    await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=10)
    await speak(edge.bus, call_id, 100, rate=started[0].playout_rate)
    ended = await wait_for(lambda: edge.lifecycle("ended", call_id), timeout=20)
    assert ended[0].reason == call_pb2.END_REASON_CALLER_HANGUP
    return call_id, audio


def assert_heard_agent(tmp: Path) -> None:
    (dump,) = [p for p in tmp.glob("dump-*.wav") if p.stem.endswith("-dec")]
    heard, rate = read_wav(dump)
    frame = rate // 50
    frames = [heard[i : i + frame] for i in range(0, len(heard) - frame, frame)]
    spoken = [f for f in frames if np.abs(f).max() > 1000]
    assert len(spoken) >= 50, len(spoken)
    assert band_energy(np.concatenate(spoken[5:55]), rate, 1000) > 0.8


async def test_srtp_call_carries_audio_both_ways(edge: Edge, tmp_path: Path) -> None:
    wav = tmp_path / "in.wav"
    write_wav(wav, sine(440, 20, 8000), 8000)
    before = len(edge.lifecycle("started"))
    proc = await baresip(tmp_path, edge, "127.0.0.1", "audio_codecs=PCMU;mediaenc=srtp-mand", wav, 7)
    try:
        call_id, audio = await talk(edge, proc, before)
        assert edge.lifecycle("started", call_id)[0].codec == "PCMU"
    finally:
        out = await finish(proc)
    assert "srtp" in out.lower()
    loud = [p for f in audio if np.abs(p := np.frombuffer(f.pcm, "<i2")).max() > 1000]
    assert len(loud) >= 50, len(loud)
    assert band_energy(np.concatenate(loud[10:60]), 16000, 440) > 0.8
    assert_heard_agent(tmp_path)


async def test_g722_srtp_caller_is_heard_wideband_and_transcribed(edge: Edge, tmp_path: Path) -> None:
    from support.voice import piper_speech

    said = "please book me a table for four people on friday evening"
    speech = piper_speech(said, 16000)
    pad = np.zeros(16000, np.int16)
    wav = tmp_path / "in.wav"
    # The words, then a 6 kHz tone: G.711 (8 kHz) could not carry it, G.722 (16 kHz) does.
    write_wav(wav, np.concatenate([pad, speech, pad, sine(6000, 2, 16000), pad]), 16000)
    before = len(edge.lifecycle("started"))
    seconds = int(len(speech) / 16000) + 7
    proc = await baresip(tmp_path, edge, "127.0.0.3", "audio_codecs=G722;mediaenc=srtp-mand", wav, seconds)
    try:
        call_id, audio = await talk(edge, proc, before)
        started = edge.lifecycle("started", call_id)[0]
        assert (started.codec, started.playout_rate, started.sample_rate) == ("G722", 16000, 16000)
    finally:
        await finish(proc)
    pcm = np.concatenate([np.frombuffer(f.pcm, "<i2") for f in audio])
    tail = pcm[-int(16000 * 4) :]
    assert band_energy(tail[np.abs(tail) > 0], 16000, 6000) > 0.5  # wideband all the way to ASR
    from phoneagent.asr.engines.base import create_engine

    engine = create_engine("faster-whisper", model="tiny.en", cpu_threads=1)
    engine.load()
    try:
        heard = engine.transcribe(pcm.astype(np.float32) / 32768.0).text
    finally:
        engine.close()
    errors, words = word_errors(said, heard)
    assert errors / words <= 0.2, heard
    assert_heard_agent(tmp_path)


@pytest.mark.parametrize(
    ("source", "account"),
    [("127.0.0.2", "audio_codecs=PCMU;mediaenc=srtp-mand"), ("127.0.0.3", "audio_codecs=PCMU")],
)
async def test_offers_the_trunks_srtp_policy_refuses_get_488(
    edge: Edge, tmp_path: Path, source: str, account: str
) -> None:
    wav = tmp_path / "in.wav"
    write_wav(wav, sine(440, 5, 8000), 8000)
    before = len(edge.lifecycle("started"))
    proc = await baresip(tmp_path, edge, source, account, wav, 4)
    out = await finish(proc)
    assert "488" in out
    assert not edge.lifecycle("started")[before:]

"""A real third-party SIP phone (PJSIP through pjsua2, null sound device but its own audio media)
calls the edge service: it plays a 440 Hz WAV into the call and records what the agent says to a WAV;
it sends RFC 4733 DTMF, hangs up, and in another call cancels while the edge is still ringing.
With SRTP mandatory (SDES keys over plain SIP) the same phone talks and listens as well.

pjsua2 runs in a child process (it aborts its process if its objects outlive ``libDestroy()``).
"""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
import pytest
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Lane
from phoneagent.v1 import call_pb2, control_pb2, media_pb2
from support.common import wait_for
from support.edge import GATE, Edge
from support.pjsua2 import (
    NEEDS_PJSUA2,
    PJSUA2_CALL,
    PJSUA2_ENDPOINT,
    PJSUA2_MEDIA,
    PJSUA2_PUMP,
    peer_result,
    start_peer,
)
from support.sip_phone import band_energy, collect, kinds, speak, tone

pytestmark = [
    pytest.mark.slow,
    NEEDS_PJSUA2,
]

PHONE = (
    r"""
import json, sys, time
import pjsua2 as pj

target, mode, play, record = sys.argv[1:5]
result = {"states": [], "status": 0, "dtmf_sent": False}
"""
    + PJSUA2_ENDPOINT
    + r"""tcfg = pj.TransportConfig()
tcfg.boundAddress = "127.0.0.1"
ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
ep.libStart()
ep.audDevManager().setNullDev()
media = []
"""
    + PJSUA2_MEDIA
    + PJSUA2_CALL
    + r"""


acfg = pj.AccountConfig()
acfg.idUri = "sip:pjsua@127.0.0.1"
acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"  # RTP on loopback like the edge
acc = pj.Account()
acc.create(acfg)
call = Call(acc)
call.makeCall(target, pj.CallOpParam(True))


"""
    + PJSUA2_PUMP
    + r"""

if mode == "cancel":
    pump(lambda: "EARLY" in result["states"], 8)
    pump(lambda: False, 0.3)
    call.hangup(pj.CallOpParam(True))
else:
    pump(lambda: "CONFIRMED" in result["states"] or "DISCONNECTED" in result["states"], 8)
    if "CONFIRMED" in result["states"]:
        pump(lambda: False, 2.5)
        call.dialDtmf("7")
        result["dtmf_sent"] = True
        pump(lambda: False, 1.0)
        call.hangup(pj.CallOpParam(True))
pump(lambda: "DISCONNECTED" in result["states"], 8)
del media[:]
del call
acc.shutdown()
del acc
ep.libDestroy()
del ep
print("RESULT " + json.dumps(result), flush=True)
"""
)


def write_wav(path: Path, pcm: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm.astype("<i2").tobytes())


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2"), w.getframerate()


async def start_phone(edge: Edge, user: str, mode: str, tmp: Path) -> asyncio.subprocess.Process:
    write_wav(tmp / "in.wav", tone(440, 8000 * 10))
    return await start_peer(
        PHONE, f"sip:{user}@127.0.0.1:{edge.port}", mode, str(tmp / "in.wav"), str(tmp / "out.wav")
    )


async def new_call_id(edge: Edge, before: int) -> str:
    started = await wait_for(lambda: edge.lifecycle("started")[before:], timeout=10)
    return str(started[0].meta.call_id)


async def test_pjsua2_phone_talks_listens_dials_and_hangs_up(edge: Edge, tmp_path: Path) -> None:
    before = len(edge.lifecycle("started"))
    proc = await start_phone(edge, "+14155550134", "talk", tmp_path)
    call_id = await new_call_id(edge, before)
    audio = await collect(edge.bus, subjects.audio_in(call_id), media_pb2.AudioFrame)
    control = await collect(edge.bus, subjects.control(call_id), control_pb2.ControlEvent, Lane.CONTROL)
    await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=10)
    rate = edge.lifecycle("started", call_id)[0].playout_rate  # 16000: pjsua2 offers G.722 too
    await speak(edge.bus, call_id, 100, rate=rate)  # two seconds of a 1 kHz tone from the agent

    dtmf = await wait_for(lambda: kinds(control, "dtmf"), timeout=10)
    assert dtmf[0].digit == "7" and not dtmf[0].outbound
    ended = await wait_for(lambda: edge.lifecycle("ended", call_id), timeout=10)
    assert ended[0].reason == call_pb2.END_REASON_CALLER_HANGUP
    result = await peer_result(proc, 30, "pjsua2 phone")
    assert "CONFIRMED" in result["states"] and result["dtmf_sent"]

    # The phone's 440 Hz WAV reached ASR as 16 kHz frames with the tone's energy.
    loud = [np.frombuffer(f.pcm, "<i2") for f in audio if np.abs(np.frombuffer(f.pcm, "<i2")).max() > 1000]
    assert len(loud) >= 50
    assert band_energy(np.concatenate(loud[10:60]), 16000, 440) > 0.8
    # The phone's recorder got the agent's 1 kHz speech.
    rec, rate = read_wav(tmp_path / "out.wav")
    frame = rate // 50
    frames = [rec[i : i + frame] for i in range(0, len(rec) - frame, frame)]
    spoken = [f for f in frames if np.abs(f).max() > 1000]
    assert len(spoken) >= 50, len(spoken)
    assert band_energy(np.concatenate(spoken[5:55]), rate, 1000) > 0.8
    await wait_for(lambda: call_id not in edge.svc.calls, timeout=3)


async def test_pjsua2_phone_cancels_while_ringing(edge: Edge, tmp_path: Path) -> None:
    GATE.clear()  # the stages hold their claim for calls to "slow": the edge keeps ringing
    try:
        before = len(edge.lifecycle("started"))
        proc = await start_phone(edge, "slow", "cancel", tmp_path)
        call_id = await new_call_id(edge, before)
        result = await peer_result(proc, 30, "pjsua2 phone")
        assert "EARLY" in result["states"] and "CONFIRMED" not in result["states"]
        assert result["status"] == 487
        GATE.set()
        ended = await wait_for(lambda: edge.lifecycle("ended", call_id), timeout=10)
        assert ended[0].reason == call_pb2.END_REASON_CANCELLED
        assert not edge.lifecycle("answered", call_id)
        await wait_for(lambda: call_id not in edge.svc.calls, timeout=3)
    finally:
        GATE.set()


# SRTP: the same phone with SRTP mandatory (SDES keys in SDP, RTP/SAVP), audio both ways.
BOUND = 'acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"'
SRTP_PHONE = PHONE.replace(
    BOUND,
    BOUND + "\nacfg.mediaConfig.srtpUse = pj.PJMEDIA_SRTP_MANDATORY"
    "\nacfg.mediaConfig.srtpSecureSignaling = 0  # SDES over plain SIP, as many trunks do",
)


async def test_pjsua2_srtp_call_carries_audio_both_ways(edge: Edge, tmp_path: Path) -> None:
    assert SRTP_PHONE != PHONE
    write_wav(tmp_path / "in.wav", tone(440, 8000 * 10))
    before = len(edge.lifecycle("started"))
    proc = await start_peer(
        SRTP_PHONE,
        f"sip:+14155550134@127.0.0.1:{edge.port}",
        "talk",
        str(tmp_path / "in.wav"),
        str(tmp_path / "out.wav"),
    )
    started = await wait_for(lambda: edge.lifecycle("started")[before:], timeout=10)
    call_id = started[0].meta.call_id
    audio = await collect(edge.bus, subjects.audio_in(call_id), media_pb2.AudioFrame)
    await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=10)
    await speak(edge.bus, call_id, 100, rate=started[0].playout_rate)
    ended = await wait_for(lambda: edge.lifecycle("ended", call_id), timeout=15)
    assert ended[0].reason == call_pb2.END_REASON_CALLER_HANGUP
    result = await peer_result(proc, 30, "pjsua2 srtp phone")
    assert "CONFIRMED" in result["states"]
    loud = [p for f in audio if np.abs(p := np.frombuffer(f.pcm, "<i2")).max() > 1000]
    assert len(loud) >= 50, len(loud)
    assert band_energy(np.concatenate(loud[10:60]), 16000, 440) > 0.8
    rec, rate = read_wav(tmp_path / "out.wav")
    frame = rate // 50
    spoken = [f for i in range(0, len(rec) - frame, frame) if np.abs(f := rec[i : i + frame]).max() > 1000]
    assert len(spoken) >= 50, len(spoken)
    assert band_energy(np.concatenate(spoken[5:55]), rate, 1000) > 0.8

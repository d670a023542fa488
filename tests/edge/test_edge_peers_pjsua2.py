"""A real third-party SIP phone (PJSIP through pjsua2, null sound device but its own audio media)
calls the edge service: it plays a 440 Hz WAV into the call and records what the agent says to a WAV;
it sends RFC 4733 DTMF, hangs up, and in another call cancels while the edge is still ringing.
With SRTP mandatory (SDES keys over plain SIP) the same phone talks and listens as well.

pjsua2 runs in a child process (it aborts its process if its objects outlive ``libDestroy()``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Lane
from phoneagent.v1 import call_pb2, control_pb2, media_pb2
from support.baresip import write_wav
from support.common import wait_for
from support.edge import GATE, Edge
from support.pjsua2 import (
    NEEDS_PJSUA2,
    PJSUA2_ENDPOINT,
    PJSUA2_FINISH,
    PJSUA2_PHONE,
    peer_result,
    start_peer,
)
from support.sip_phone import assert_tone, collect, joined_pcm, kinds, read_wav, speak, tone

pytestmark = [
    pytest.mark.slow,
    NEEDS_PJSUA2,
]

PHONE = (
    r"""
import json, sys, time
import pjsua2 as pj

target, mode, play, record, srtp = sys.argv[1:6]
result = {"states": [], "status": 0, "dtmf_sent": False}
"""
    + PJSUA2_ENDPOINT
    + r"""tcfg = pj.TransportConfig()
tcfg.boundAddress = "127.0.0.1"
ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
"""
    + PJSUA2_PHONE
    + r"""
# SRTP mandatory: SDES keys over plain SIP, as many trunks do
acc, call = dial(target, srtp_use=pj.PJMEDIA_SRTP_MANDATORY if srtp == "mandatory" else None)
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
"""
    + PJSUA2_FINISH
)


async def start_phone(
    edge: Edge, user: str, mode: str, tmp: Path, srtp: str = "off"
) -> asyncio.subprocess.Process:
    """The phone calling ``user`` at the edge, its microphone ten seconds of 440 Hz."""
    write_wav(tmp / "in.wav", tone(440, 8000 * 10))
    return await start_peer(
        PHONE, f"sip:{user}@127.0.0.1:{edge.port}", mode, str(tmp / "in.wav"), str(tmp / "out.wav"), srtp
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
    assert_tone(joined_pcm(audio), 16000, 440, skip=10)
    # The phone's recorder got the agent's 1 kHz speech.
    assert_tone(*read_wav(tmp_path / "out.wav"), 1000)
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


async def test_pjsua2_srtp_call_carries_audio_both_ways(edge: Edge, tmp_path: Path) -> None:
    """The same phone with SRTP mandatory (SDES keys in SDP, RTP/SAVP): audio both ways."""
    before = len(edge.lifecycle("started"))
    proc = await start_phone(edge, "+14155550134", "talk", tmp_path, srtp="mandatory")
    started = await wait_for(lambda: edge.lifecycle("started")[before:], timeout=10)
    call_id = started[0].meta.call_id
    audio = await collect(edge.bus, subjects.audio_in(call_id), media_pb2.AudioFrame)
    await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=10)
    await speak(edge.bus, call_id, 100, rate=started[0].playout_rate)
    ended = await wait_for(lambda: edge.lifecycle("ended", call_id), timeout=15)
    assert ended[0].reason == call_pb2.END_REASON_CALLER_HANGUP
    result = await peer_result(proc, 30, "pjsua2 srtp phone")
    assert "CONFIRMED" in result["states"]
    assert_tone(joined_pcm(audio), 16000, 440, skip=10)
    assert_tone(*read_wav(tmp_path / "out.wav"), 1000)

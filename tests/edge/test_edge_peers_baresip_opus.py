"""Debian's baresip offering Opus only calls the edge (default codecs: G722, OPUS, PCMU, PCMA):
the call runs on Opus at 16 kHz both ways. The caller's 440 Hz and then 6 kHz tones reach ASR's
subject (6 kHz: more than G.711's band could carry), and the agent's 1 kHz is what baresip
decodes (its sndfile module dumps it). The same with SRTP mandatory on the Opus call.

And the other way round: the edge dials baresip, which auto-answers with Opus only (or PCMU
only): the INVITE's offer (baresip traces it) lists Opus with its rtpmap and fmtp, and tones
flow both ways on the callee's codec."""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from phoneagent.devtools.harness.demo import free_udp_port
from phoneagent.edge.settings import EdgeSettings
from phoneagent.runtime import subjects
from phoneagent.runtime.settings import load
from phoneagent.v1 import call_pb2, common_pb2, control_pb2, media_pb2
from support import baresip
from support.common import approve_dial, wait_for
from support.edge import Edge, running_edge
from support.signals import sine
from support.sip_phone import assert_tone, band_energy, collect, loud_frames, speak

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


@pytest.mark.parametrize(
    "account", ["audio_codecs=opus/48000/2", "audio_codecs=opus/48000/2;mediaenc=srtp-mand"]
)
async def test_baresip_offering_only_opus_talks_and_listens_wideband(
    edge: Edge, tmp_path: Path, account: str
) -> None:
    wav = baresip.write_wav(
        tmp_path / "in.wav",
        np.concatenate([sine(440, 4 * RATE, RATE, amp=8000), sine(6000, 4 * RATE, RATE, amp=8000)]),
        RATE,
        channels=2,
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
        answered = await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=10)
        assert answered[0].codec == "OPUS"
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
    assert_tone(*baresip.decoded(tmp_path), 1000)


@pytest.mark.parametrize(
    ("codecs", "codec", "top"),
    [("opus/48000/2", "OPUS", 6000), ("PCMU", "PCMU", 440)],  # over G.711 no 6 kHz gets through
)
async def test_edge_dials_baresip_answering_with_only_one_codec(
    edge: Edge, tmp_path: Path, caplog: pytest.LogCaptureFixture, codecs: str, codec: str, top: int
) -> None:
    """The edge calls baresip (auto-answer, one codec): its offer lists Opus as RFC 7587 asks
    and the call runs on the callee's codec (which the edge logs on answer), the callee's tones
    reaching ASR at 16 kHz (the rate the outbound call announced) and the agent's tone reaching
    the callee."""
    caplog.set_level(logging.INFO, logger="phoneagent.edge.outbound")
    rate = RATE if codec == "OPUS" else 8000
    channels = 2 if codec == "OPUS" else 1
    wav = baresip.write_wav(
        tmp_path / "in.wav",
        np.concatenate(
            [sine(440, 4 * rate, rate, amp=8000), sine(top, 6 * rate, rate, amp=8000)]
        ),  # longer than the call
        rate,
        channels=channels,
    )
    port = free_udp_port()
    conf = baresip.write_config(
        tmp_path / "conf",
        wav,
        extra=(f"snd_path {tmp_path}",),
        rtp_ports="49000-49998",
        modules=("opus", "g711", "sndfile"),
        account=f"audio_codecs={codecs};answermode=auto",
        user="callee",
        sip_port=port,
    )
    proc, _ = await baresip.answer(conf, 10, "-s")  # -s: it prints the SIP it gets
    try:
        call_id = subjects.new_call_id()
        to = f"sip:callee@127.0.0.1:{port}"
        audio = await collect(edge.bus, subjects.audio_in(call_id), media_pb2.AudioFrame)
        req = call_pb2.CallStarted(
            meta=common_pb2.EventMeta(call_id=call_id),
            to_uri=to,
            dial_decision_id=await approve_dial(edge.bus, call_id, to),
        )
        reply = await edge.bus.request(subjects.edge_dial(), req, control_pb2.ControlEvent, timeout=5)
        assert reply.WhichOneof("kind") is None, reply
        started = (await wait_for(lambda: edge.lifecycle("started", call_id), timeout=5))[0]
        assert started.direction == call_pb2.DIRECTION_OUTBOUND
        assert (started.sample_rate, started.playout_rate) == (16000, 16000)  # G722 leads PA_CODECS
        answered_ev = (await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=10))[0]
        assert answered_ev.codec == codec  # the callee's choice, on the bus
        rtp = edge.svc.calls[call_id].rtp
        assert rtp.params is not None and rtp.params.codec == codec
        assert rtp.sample_rate == 16000
        (answered,) = [r for r in caplog.records if r.getMessage() == "outbound call answered"]
        assert (answered.call_id, answered.codec, answered.srtp) == (call_id, codec, False)  # type: ignore[attr-defined]
        await speak(edge.bus, call_id, 100, rate=16000)  # two seconds of 1 kHz from the agent
        ended = await wait_for(lambda: edge.lifecycle("ended", call_id), timeout=20)
        assert ended[0].reason == call_pb2.END_REASON_CALLER_HANGUP  # the callee quit
    finally:
        out = await baresip.finish(proc)
        print(out[-3000:])
    offer = re.search(r"INVITE sip:callee@.*?\r\n\r\n(v=0\r\n.*?)\x1b", out, re.S)  # the traced INVITE
    assert offer is not None, out[-3000:]
    sdp = offer[1].splitlines()
    (m,) = [line for line in sdp if line.startswith("m=audio ")]
    assert m.endswith(" RTP/AVP 9 111 0 8 101"), sdp  # PA_CODECS' order, then telephone-event
    assert {
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 maxplaybackrate=16000;sprop-maxcapturerate=16000",
    } <= set(sdp)
    assert (
        f"audio: Set audio decoder: {codecs.split('/')[0]} {rate}Hz {channels}ch" in out
    )  # the callee's side
    pcm = np.concatenate([np.frombuffer(f.pcm, "<i2") for f in audio])
    loud = loud_frames(pcm, 16000)
    assert len(loud) >= 150, len(loud)  # about seven seconds of the callee's tones
    assert band_energy(np.concatenate(loud[10:60]), 16000, 440) > 0.8
    assert band_energy(np.concatenate(loud[-60:-10]), 16000, top) > 0.8
    assert_tone(*baresip.decoded(tmp_path), 1000)

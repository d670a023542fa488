"""The edge service on the bus with real SIP/RTP on 127.0.0.1: our own SIP user agent and RTP
session play the caller (and the callee for outbound calls); the four stages are trivial session
replicas (the real SessionHost), so claims succeed without models."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from phoneagent.edge.media.vad import VadEventKind
from phoneagent.edge.rtp_session import RtpSession
from phoneagent.edge.settings import EdgeSettings
from phoneagent.edge.sip import (
    CallFailed,
    CallOutcome,
    IncomingCall,
    answer,
    negotiated,
    offer,
)
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Lane
from phoneagent.runtime.settings import load
from phoneagent.v1 import call_pb2, common_pb2, control_pb2, media_pb2, speech_pb2
from support.common import approve_dial, wait_for
from support.edge import GATE, Edge, running_edge
from support.sip_phone import HOST, Peer, band_energy, collect, dial_edge, kinds, new_peer, speak, tone, voice

pytestmark = pytest.mark.slow


async def test_inbound_call_audio_dtmf_and_caller_hangup(edge: Edge) -> None:
    peer, call_id = await dial_edge(edge)
    try:
        audio = await collect(edge.bus, subjects.audio_in(call_id), media_pb2.AudioFrame)
        control = await collect(edge.bus, subjects.control(call_id), control_pb2.ControlEvent, Lane.CONTROL)
        await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=5)
        assert edge.svc.status()["active_calls"] == 1

        # Caller -> ASR: a 440 Hz tone arrives as 16 kHz frames carrying 440 Hz.
        peer.source = lambda n: tone(440, 160, n * 160)
        await wait_for(lambda: len(audio) > 40, timeout=5)
        pcm = np.concatenate([np.frombuffer(f.pcm, "<i2") for f in audio[-25:]])
        assert all(f.sample_rate == 16000 for f in audio)
        assert band_energy(pcm, 16000, 440) > 0.8

        # TTS -> caller: 1 kHz speech chunks are heard, then PlaybackDone.
        await speak(edge.bus, call_id, 25)
        await wait_for(lambda: len(peer.heard(1000)) >= 15, timeout=5)
        done = await wait_for(lambda: kinds(control, "playback_done"), timeout=5)
        assert done[0].generation_id == 1 and done[0].played_ms == 500

        # RFC 4733 DTMF from the caller.
        await peer.rtp.send_dtmf("5", 120)
        dtmf = await wait_for(lambda: kinds(control, "dtmf"), timeout=3)
        assert dtmf[0].digit == "5" and not dtmf[0].outbound

        assert peer.dialog is not None
        await peer.dialog.bye()
        ended = await wait_for(lambda: edge.lifecycle("ended", call_id), timeout=5)
        assert ended[0].reason == call_pb2.END_REASON_CALLER_HANGUP
        await wait_for(lambda: call_id not in edge.svc.calls, timeout=3)
    finally:
        await peer.close()


async def test_agent_hangup_sends_bye(edge: Edge) -> None:
    peer, call_id = await dial_edge(edge)
    try:
        await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=5)
        call = edge.svc.calls[call_id].call
        assert len(call.tasks) == 3  # media loop, DTMF pump and RTP-inactivity watch
        hangup = control_pb2.ControlEvent(
            meta=common_pb2.EventMeta(call_id=call_id),
            hangup=control_pb2.Hangup(reason=call_pb2.END_REASON_AGENT_HANGUP, detail="goodbye"),
        )
        await edge.bus.publish(subjects.control(call_id), hangup, lane=Lane.CONTROL)
        await asyncio.wait_for(peer.bye.wait(), 5)
        ended = await wait_for(lambda: edge.lifecycle("ended", call_id), timeout=5)
        assert ended[0].reason == call_pb2.END_REASON_AGENT_HANGUP
        await wait_for(lambda: len(call.tasks) == 0 and call_id not in edge.svc.calls, timeout=3)
    finally:
        await peer.close()


async def test_barge_in_stops_playout(edge: Edge) -> None:
    peer, call_id = await dial_edge(edge)
    try:
        control = await collect(edge.bus, subjects.control(call_id), control_pb2.ControlEvent, Lane.CONTROL)
        playouts = await collect(edge.bus, subjects.playout(call_id), media_pb2.Playout)
        await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=5)
        await speak(edge.bus, call_id, 250)  # five seconds of agent speech
        await wait_for(lambda: len(peer.heard(1000)) >= 10, timeout=5)
        talk_from = time.monotonic()
        peer.source = lambda n: voice(160, n * 160)
        barge = await wait_for(lambda: kinds(control, "barge_in"), timeout=5)
        barged_at = time.monotonic()
        assert barge[0].interrupted_generation_id == 1 and barge[0].played_ms > 0
        last = max(peer.heard(1000))
        # Playout paused when the VAD confirmed speech (well before the BargeIn event) ...
        assert last - talk_from < 0.6, last - talk_from
        assert last < barged_at
        # ... and the cancelled generation never resumes.
        await asyncio.sleep(0.5)  # a window in which no agent audio may arrive
        assert not peer.heard(1000, since=barged_at + 0.2)
        assert not kinds(control, "playback_done")
        # For the call records: when the reply's first packet went out, then what the barge-in cut off.
        await wait_for(lambda: len(playouts) == 2, timeout=5)
        first, cut = playouts
        assert first.meta.generation_id == cut.meta.generation_id == 1
        assert not first.interrupted and first.first_packet_unix_ns >= first.tts_first_audio_unix_ns > 0
        assert cut.interrupted and cut.played_ms == barge[0].played_ms
        assert cut.first_packet_unix_ns == first.first_packet_unix_ns
    finally:
        await peer.close()


def noise(n: int) -> np.ndarray:
    return np.random.default_rng(n).normal(0, 30, 160).astype(np.int16)


def burst(frames: int) -> Callable[[int], np.ndarray]:
    """A peer source: ``frames`` x 20 ms of voice, then line noise."""
    sent = [0]

    def source(n: int) -> np.ndarray:
        sent[0] += 1
        return voice(160, n * 160) if sent[0] <= frames else noise(n)

    return source


async def verdict(bus: Bus, call_id: str, text: str, backchannel: bool) -> None:
    tr = speech_pb2.Transcript(
        meta=common_pb2.EventMeta(call_id=call_id), final=True, text=text, backchannel=backchannel
    )
    await bus.publish(subjects.transcript(call_id), tr, lane=Lane.CONTROL)


async def test_backchannel_resumes_the_agent_without_a_barge_in(edge: Edge) -> None:
    peer, call_id = await dial_edge(edge)
    try:
        control = await collect(edge.bus, subjects.control(call_id), control_pb2.ControlEvent, Lane.CONTROL)
        await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=5)
        call = edge.svc.calls[call_id].call
        await speak(edge.bus, call_id, 150)  # three seconds of agent speech
        await wait_for(lambda: len(peer.heard(1000)) >= 10, timeout=5)
        peer.source = burst(18)  # "mm-hmm": 360 ms, short of a barge-in on its own
        await wait_for(lambda: call.paused_since is not None, timeout=5)
        assert call.verdict_for == 1
        said = time.monotonic()
        await verdict(edge.bus, call_id, "mm-hmm", backchannel=True)
        # Resumed on the verdict, well before the speech could end and the 700 ms wait pass.
        resumed = await wait_for(lambda: peer.heard(1000, since=said + 0.1), timeout=5)
        assert resumed[0] - said < 0.7, resumed[0] - said
        done = await wait_for(lambda: kinds(control, "playback_done"), timeout=8)
        assert done[0].generation_id == 1 and done[0].played_ms == 3000  # nothing was dropped
        assert not kinds(control, "barge_in")
    finally:
        await peer.close()


async def false_interruption(edge: Edge, spoken_frames: int, text: str, backchannel: bool) -> None:
    """Three seconds of agent speech, caller speech of ``spoken_frames`` x 20 ms that pauses it,
    then ASR's verdict ``text`` once the caller is quiet: the agent carries on where it stopped,
    with nothing of its reply dropped, and no BargeIn goes out."""
    peer, call_id = await dial_edge(edge)
    try:
        control = await collect(edge.bus, subjects.control(call_id), control_pb2.ControlEvent, Lane.CONTROL)
        await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=5)
        call = edge.svc.calls[call_id].call
        await speak(edge.bus, call_id, 150)
        await wait_for(lambda: len(peer.heard(1000)) >= 10, timeout=5)
        peer.source = burst(spoken_frames)
        await wait_for(lambda: call.paused_since is not None, timeout=5)
        await wait_for(lambda: not call.caller_speaking, timeout=5)  # the VAD's hangover is over too
        assert call.paused_since is not None and not kinds(control, "barge_in")
        said = time.monotonic()
        await verdict(edge.bus, call_id, text, backchannel=backchannel)
        await wait_for(lambda: peer.heard(1000, since=said), timeout=5)
        assert call.speech_ended_at is not None
        done = await wait_for(lambda: kinds(control, "playback_done"), timeout=8)
        assert done[0].generation_id == 1 and done[0].played_ms == 3000  # resumed where it paused
        assert not kinds(control, "barge_in")
    finally:
        await peer.close()


async def test_a_backchannel_longer_than_the_pause_does_not_stop_the_agent(edge: Edge) -> None:
    """ "Yeah, okay": 560 ms of speech, which with the VAD's hangover kept the caller "speaking"
    long enough to count as a barge-in of its own; the words are ASR's to judge."""
    await false_interruption(edge, 28, "Yeah, okay.", backchannel=True)


async def test_a_sound_asr_finds_no_words_in_resumes_the_agent(edge: Edge) -> None:
    """A cough or a door: the VAD paused the agent, ASR's final has no words. The agent carries
    on at once instead of waiting out the verdict time, and is not cut off."""
    await false_interruption(edge, 18, " ", backchannel=False)


async def test_short_real_turn_confirmed_by_late_asr_cancels_with_barge_in(edge: Edge) -> None:
    """ASR's final comes after the confirmation wait (a loaded ASR): the agent has resumed, and the
    verdict still interrupts it."""
    peer, call_id = await dial_edge(edge)
    try:
        control = await collect(edge.bus, subjects.control(call_id), control_pb2.ControlEvent, Lane.CONTROL)
        await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=5)
        call = edge.svc.calls[call_id].call
        assert call.config.backchannel_wait_ms == 700  # from PA_BARGE_IN_BACKCHANNEL_WAIT_MS
        await speak(edge.bus, call_id, 250)
        await wait_for(lambda: len(peer.heard(1000)) >= 10, timeout=5)
        peer.source = burst(18)  # "stop"
        await wait_for(lambda: call.paused_since is not None, timeout=5)
        paused_at = time.monotonic()
        await wait_for(lambda: call.paused_since is None, timeout=5)  # no verdict: resumed after the wait
        assert time.monotonic() - paused_at >= 0.7
        resumed_at = time.monotonic()
        await wait_for(lambda: peer.heard(1000, since=resumed_at + 0.05), timeout=3)
        played_before = call.played_ms
        assert not kinds(control, "barge_in")
        await verdict(edge.bus, call_id, "stop", backchannel=False)
        barge = await wait_for(lambda: kinds(control, "barge_in"), timeout=3)
        barged_at = time.monotonic()
        assert barge[0].interrupted_generation_id == 1 and barge[0].played_ms >= played_before > 0
        await asyncio.sleep(0.5)  # a window in which no agent audio may arrive
        assert not peer.heard(1000, since=barged_at + 0.2)
        assert not kinds(control, "playback_done")
    finally:
        await peer.close()


async def test_long_speech_stops_playout_within_100ms_of_confirmation(edge: Edge) -> None:
    peer, call_id = await dial_edge(edge)
    try:
        control = await collect(edge.bus, subjects.control(call_id), control_pb2.ControlEvent, Lane.CONTROL)
        await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=5)
        call = edge.svc.calls[call_id].call
        confirmed: list[float] = []
        sent: list[tuple[float, bool]] = []
        process, send = call.vad.process, call.transport.send_agent_frame

        def observe_vad(frame: np.ndarray) -> Any:
            event = process(frame)
            if event is not None and event.kind is VadEventKind.CONFIRMED:
                confirmed.append(time.monotonic())
            return event

        async def observe_send(pcm: np.ndarray, speech: bool) -> None:
            sent.append((time.monotonic(), speech))
            await send(pcm, speech)

        call.vad.process = observe_vad  # type: ignore[method-assign]
        call.transport.send_agent_frame = observe_send  # type: ignore[method-assign]
        await speak(edge.bus, call_id, 250)
        await wait_for(lambda: len(peer.heard(1000)) >= 10, timeout=5)
        peer.source = lambda n: voice(160, n * 160)
        barge = await wait_for(lambda: kinds(control, "barge_in"), timeout=5)
        assert barge[0].interrupted_generation_id == 1 and len(confirmed) == 1
        stopped = next(t for t, speech in sent if t >= confirmed[0] and not speech)
        assert stopped - confirmed[0] < 0.1, stopped - confirmed[0]
        assert not any(speech for t, speech in sent if t >= stopped)
    finally:
        await peer.close()


async def test_reinvite_moves_media_and_hold_pauses_playout(edge: Edge) -> None:
    peer, call_id = await dial_edge(edge)
    moved = await RtpSession.open(HOST, 42000, 42999)
    try:
        audio = await collect(edge.bus, subjects.audio_in(call_id), media_pb2.AudioFrame)
        control = await collect(edge.bus, subjects.control(call_id), control_pb2.ControlEvent, Lane.CONTROL)
        await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=5)
        assert peer.dialog is not None
        active = edge.svc.calls[call_id]
        # The caller moves its media to a new port (and a new SSRC) with a re-INVITE.
        local = offer(HOST, moved.port)
        resp = await peer.dialog.reinvite(local)
        assert resp.status == 200 and peer.dialog.remote_sdp is not None
        old, peer.rtp = peer.rtp, moved
        moved.start(negotiated(peer.dialog.remote_sdp, local))
        old.close()
        assert active.rtp.params is not None and active.rtp.params.remote_port == moved.port
        # Caller -> edge from the new port reaches ASR; edge -> caller arrives at the new port.
        since = len(audio)
        peer.source = lambda n: tone(600, 160, n * 160)

        def heard_600() -> bool:
            tail = audio[since:][-25:]
            pcm = np.concatenate([np.frombuffer(f.pcm, "<i2") for f in tail]) if len(tail) == 25 else None
            return pcm is not None and band_energy(pcm, 16000, 600) > 0.8

        await wait_for(heard_600, timeout=5)
        peer.source = lambda n: noise(n)
        await speak(edge.bus, call_id, 100)  # two seconds of agent speech
        await wait_for(lambda: len(peer.heard(1000)) >= 5, timeout=5)
        # Hold (sendonly): the edge sends nothing and the reply waits, queued; unhold resumes it.
        resp = await peer.dialog.hold(True)
        assert resp.status == 200 and peer.dialog.remote_sdp is not None
        assert peer.dialog.remote_sdp.media[0].direction == "recvonly"
        held_at, sent = time.monotonic(), active.rtp.sent
        await asyncio.sleep(0.4)  # a window in which the edge must send nothing
        assert active.rtp.sent == sent and active.call.peer_hold
        assert not peer.heard(1000, since=held_at + 0.1)
        await peer.dialog.hold(False)
        done = await wait_for(lambda: kinds(control, "playback_done"), timeout=5)
        assert done[0].played_ms == 2000  # the whole reply, after the hold
        assert active.rtp.sent > sent and not active.call.peer_hold
        await peer.dialog.bye()
    finally:
        moved.close()
        await peer.close()


async def test_outbound_dtmf_goes_out_as_rfc4733(edge: Edge) -> None:
    peer, call_id = await dial_edge(edge)
    digits: list[tuple[str, float]] = []
    peer.rtp.on_dtmf = lambda d: digits.append((d.digit, d.duration_ms))
    try:
        await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=5)
        for count, digit in enumerate("1#", start=1):
            ev = control_pb2.ControlEvent(
                meta=common_pb2.EventMeta(call_id=call_id), dtmf=control_pb2.Dtmf(digit=digit, outbound=True)
            )
            await edge.bus.publish(subjects.control(call_id), ev, lane=Lane.CONTROL)
            await wait_for(lambda n=count: len(digits) == n, timeout=3)  # type: ignore[misc]
        # The caller's RTP endpoint decoded telephone-events (RFC 4733) of the edge's 100 ms presses.
        assert [d for d, _ in digits] == ["1", "#"]
        assert all(90 <= ms <= 110 for _, ms in digits), digits
    finally:
        if peer.dialog is not None:
            await peer.dialog.bye()
        await peer.close()


async def test_cancel_before_answer(edge: Edge) -> None:
    GATE.clear()
    peer = await new_peer()
    try:
        local = offer(HOST, peer.rtp.port)
        before = len(edge.lifecycle("started"))
        oc = await peer.ua.start_call(f"sip:slow@{HOST}:{edge.port}", local)
        run = asyncio.create_task(oc.run())
        started = await wait_for(lambda: edge.lifecycle("started")[before:], timeout=5)
        call_id = started[0].meta.call_id
        oc.cancel()
        with pytest.raises(CallFailed) as failed:
            await asyncio.wait_for(run, 5)
        assert failed.value.outcome is CallOutcome.CANCELLED
        GATE.set()
        ended = await wait_for(lambda: edge.lifecycle("ended", call_id), timeout=5)
        assert ended[0].reason == call_pb2.END_REASON_CANCELLED
        assert not edge.lifecycle("answered", call_id)
        await wait_for(lambda: call_id not in edge.svc.calls, timeout=3)
    finally:
        GATE.set()
        await peer.close()


async def test_garbage_to_sip_and_rtp_ports(edge: Edge) -> None:
    peer, call_id = await dial_edge(edge)
    rng = np.random.default_rng(7)
    try:
        control = await collect(edge.bus, subjects.control(call_id), control_pb2.ControlEvent, Lane.CONTROL)
        await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=5)
        assert peer.dialog is not None and peer.dialog.remote_sdp is not None
        rtp_port = peer.dialog.remote_sdp.audio.port  # type: ignore[union-attr]
        junk = [rng.bytes(int(n)) for n in rng.integers(1, 1400, 200)]
        junk += [b"\x80" + rng.bytes(20), b"INVITE sip:x SIP/2.0\r\n\r\n", b"\x80\x00" * 700]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for data in junk:
                s.sendto(data, (HOST, edge.port))
                s.sendto(data, (HOST, rtp_port))
        for data in junk[:50]:  # from the caller's own (latched) address too
            peer.rtp._transport.sendto(data, (HOST, rtp_port))  # type: ignore[union-attr]
        await peer.rtp.send_dtmf("9", 100)
        dtmf = await wait_for(lambda: kinds(control, "dtmf"), timeout=3)
        assert dtmf[0].digit == "9"
        ok = await peer.ua.options(f"sip:agent@{HOST}:{edge.port}")
        assert ok.status == 200
        await speak(edge.bus, call_id, 10)
        await wait_for(lambda: peer.heard(1000), timeout=5)
        assert not edge.lifecycle("ended", call_id)
        assert edge.svc.calls[call_id].rtp.drops > 0
    finally:
        if peer.dialog is not None:
            await peer.dialog.bye()
        await peer.close()


async def _uas(answer_with: int) -> tuple[Peer, asyncio.Event]:
    answered = asyncio.Event()
    holder: dict[str, Peer] = {}

    async def on_call(inc: IncomingCall) -> None:
        if answer_with != 200:
            await inc.reject(answer_with)
            return
        p = holder["peer"]
        assert inc.remote_sdp is not None
        local = answer(inc.remote_sdp, address=HOST, port=p.rtp.port)
        await inc.ring()
        dialog = await inc.answer(local, p.handlers())
        p.dialog = dialog
        p.rtp.start(negotiated(inc.remote_sdp, local))
        answered.set()

    peer = await new_peer(on_call)
    holder["peer"] = peer
    return peer, answered


async def _dial(edge: Edge, peer: Peer) -> str:
    call_id = subjects.new_call_id()
    port = peer.ua.local_address()[1]
    to = f"sip:callee@{HOST}:{port}"
    req = call_pb2.CallStarted(
        meta=common_pb2.EventMeta(call_id=call_id),
        to_uri=to,
        agent="dental_clinic",
        campaign_id="camp1",
        dial_decision_id=await approve_dial(edge.bus, call_id, to, "camp1"),
    )
    reply = await edge.bus.request(subjects.edge_dial(), req, control_pb2.ControlEvent, timeout=5)
    assert reply.WhichOneof("kind") is None, reply
    return call_id


async def test_outbound_call_answered(edge: Edge) -> None:
    peer, answered = await _uas(200)
    try:
        call_id = await _dial(edge, peer)
        await asyncio.wait_for(answered.wait(), 5)
        await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=5)
        started = edge.lifecycle("started", call_id)[0]
        assert started.direction == call_pb2.DIRECTION_OUTBOUND and started.campaign_id == "camp1"
        assert peer.dialog is not None
        await peer.dialog.bye()
        ended = await wait_for(lambda: edge.lifecycle("ended", call_id), timeout=5)
        assert ended[0].reason == call_pb2.END_REASON_CALLER_HANGUP
    finally:
        await peer.close()


async def test_outbound_busy_and_bad_target(edge: Edge) -> None:
    peer, _ = await _uas(486)
    try:
        call_id = await _dial(edge, peer)
        ended = await wait_for(lambda: edge.lifecycle("ended", call_id), timeout=5)
        assert ended[0].reason == call_pb2.END_REASON_BUSY and ended[0].detail == "sip 486"
    finally:
        await peer.close()
    bad = call_pb2.CallStarted(
        meta=common_pb2.EventMeta(call_id=subjects.new_call_id()), to_uri="+14155550134"
    )
    reply = await edge.bus.request(subjects.edge_dial(), bad, control_pb2.ControlEvent, timeout=5)
    assert reply.WhichOneof("kind") == "error" and "trunk" in reply.error.message
    huge = call_pb2.CallStarted(
        meta=common_pb2.EventMeta(call_id=subjects.new_call_id()),
        to_uri="sip:" + "a" * 100_000 + "@127.0.0.1",
    )
    reply = await edge.bus.request(subjects.edge_dial(), huge, control_pb2.ControlEvent, timeout=5)
    assert reply.WhichOneof("kind") == "error" and "longer than" in reply.error.message
    assert huge.meta.call_id not in edge.svc.calls


async def test_drain_refuses_new_calls_then_hangs_up(edge: Edge) -> None:
    """Runs last among the call tests: the edge stops taking calls for good."""
    peer, call_id = await dial_edge(edge)
    try:
        await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=5)
        began = time.monotonic()
        drain = asyncio.create_task(edge.svc.drain_calls(3.0))
        await wait_for(lambda: not edge.svc.accepting, timeout=2)
        other = await new_peer()
        try:
            with pytest.raises(CallFailed) as refused:
                await other.ua.call(f"sip:x@{HOST}:{edge.port}", offer(HOST, other.rtp.port))
            assert refused.value.status == 503
        finally:
            await other.close()
        assert not edge.lifecycle("ended", call_id)  # the call in progress goes on while draining
        await asyncio.wait_for(peer.bye.wait(), 8)
        assert time.monotonic() - began >= 2.9  # hung up only once the drain timeout passed
        await asyncio.wait_for(drain, 5)
        ended = await wait_for(lambda: edge.lifecycle("ended", call_id), timeout=3)
        assert ended[0].reason == call_pb2.END_REASON_AGENT_HANGUP and ended[0].detail == "edge shutting down"
    finally:
        await peer.close()


def test_settings_reject_bad_values() -> None:
    from phoneagent.runtime.settings import SettingsError

    with pytest.raises(SettingsError) as err:
        load(
            EdgeSettings,
            environ={
                "PA_CODECS": "speex",
                "PA_RTP_PORT_MIN": "30000",
                "PA_RTP_PORT_MAX": "20000",
                "PA_SIP_HOST": "0.0.0.0",
            },
        )
    text = str(err.value)
    assert "PA_CODECS" in text
    with pytest.raises(SettingsError) as err:
        load(
            EdgeSettings,
            environ={"PA_RTP_PORT_MIN": "30000", "PA_RTP_PORT_MAX": "20000", "PA_SIP_HOST": "0.0.0.0"},
        )
    assert "PA_RTP_PORT_MIN" in str(err.value) and "PA_SIP_PUBLIC_ADDRESS" in str(err.value)


async def test_max_duration_hangs_up_with_bye(nats_url: str) -> None:
    settings = load(EdgeSettings, sip_port=0, rtp_port_min=48000, rtp_port_max=48199, max_call_duration_s=1.0)
    async with running_edge(nats_url, settings, tag="tmax") as edge:
        peer, call_id = await dial_edge(edge)
        try:
            await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=5)
            answered = time.monotonic()
            await asyncio.wait_for(peer.bye.wait(), 5)  # the edge hangs up: the caller gets a BYE
            assert 0.8 <= time.monotonic() - answered <= 3.0
            ended = await wait_for(lambda: edge.lifecycle("ended", call_id), timeout=3)
            assert ended[0].reason == call_pb2.END_REASON_MAX_DURATION and ended[0].detail == "max duration"
            assert 1000 <= ended[0].duration_ms < 3000
            await wait_for(lambda: call_id not in edge.svc.calls, timeout=3)
        finally:
            await peer.close()

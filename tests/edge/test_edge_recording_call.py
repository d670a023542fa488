"""Call recordings through the edge with real SIP/RTP on 127.0.0.1: our user agent is the caller,
trivial session replicas stand in for the stages, and policy's decisions are published on the
call's audit subject the way the policy service writes them (JetStream, PA_AUDIT, signed with
policy's key). A recording decision without policy's signature for the call is ignored."""

from __future__ import annotations

import asyncio
import hashlib
import time
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest
from phoneagent.edge.media.pacer import Pacer
from phoneagent.edge.rtp_session import RtpSession
from phoneagent.edge.settings import EdgeSettings
from phoneagent.edge.sip import Dialog, DialogHandlers, UAConfig, UserAgent, negotiated, offer
from phoneagent.runtime import approvals, metrics, subjects
from phoneagent.runtime.approvals import Signer
from phoneagent.runtime.bus import Bus, Delivery, Lane
from phoneagent.runtime.settings import load
from phoneagent.v1 import common_pb2, media_pb2, policy_pb2
from support.common import SIGNER, repeat_until_seen, signed, wait_for
from support.edge import Edge, running_edge
from support.sip_phone import band_energy, tone

pytestmark = pytest.mark.slow
HOST = "127.0.0.1"


@pytest.fixture(scope="module")
async def edge(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Edge]:
    directory = tmp_path_factory.mktemp("recordings")
    settings = load(
        EdgeSettings, sip_port=0, rtp_port_min=43000, rtp_port_max=43499, recording_dir=str(directory)
    )
    async with running_edge(nats_url, settings, tag="rec", directory=directory) as edge:
        yield edge


class Caller:
    """Our SIP user agent calling the edge, sending a 440 Hz tone every 20 ms."""

    def __init__(self, ua: UserAgent, rtp: RtpSession) -> None:
        self.ua, self.rtp = ua, rtp
        self.heard = 0  # agent frames received with sound in them
        self.dialog: Dialog | None = None
        self._task: asyncio.Task[None] | None = None

    async def dial(self, edge: Edge) -> str:
        local = offer(HOST, self.rtp.port)
        before = len(edge.events)
        self.dialog = await self.ua.call(
            f"sip:+14155550134@{HOST}:{edge.port}", local, handlers=DialogHandlers()
        )
        assert self.dialog.remote_sdp is not None
        self.rtp.start(negotiated(self.dialog.remote_sdp, local))
        self._task = asyncio.create_task(self._loop())
        started = [e.started for e in edge.events[before:] if e.WhichOneof("event") == "started"]
        return started[0].meta.call_id

    async def _loop(self) -> None:
        pacer, n = Pacer(0.02), 0
        while True:
            await pacer.next_tick()
            self.rtp.send_audio(tone(440, 160, n * 160), True)
            n += 1
            frame = self.rtp.pull_frame()
            if frame is not None and np.abs(frame).max() > 1000:
                self.heard += 1

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.rtp.close()
        await self.ua.close()


@pytest.fixture
async def caller() -> AsyncIterator[Caller]:
    ua = UserAgent(UAConfig(host=HOST, port=0, user="phone"))
    await ua.start()
    c = Caller(ua, await RtpSession.open(HOST, 43500, 43999))
    yield c
    await c.close()


async def decide(
    bus: Bus, call_id: str, decision: int, rule: str, signer: Signer | None = SIGNER, signed_for: str = ""
) -> None:
    """A recording decision as policy publishes it, signed by ``signer`` (None: unsigned) for
    ``signed_for`` (default: this call)."""
    record = policy_pb2.PolicyDecision(
        meta=common_pb2.EventMeta(call_id=call_id, ts_unix_ns=time.time_ns(), producer="policy/test"),
        decision_id=f"d-{rule}",
        decision=decision,  # type: ignore[arg-type]
        subject="recording",
        rule=rule,
        reason="test",
        decided_unix_ns=time.time_ns(),
    )
    if signer is not None:
        record.approval.CopyFrom(
            signed(
                approvals.RECORDING,
                signed_for or call_id,
                decision=approvals.recording_decision(record),
                decision_id=record.decision_id,
                signer=signer,
            )
        )
    await bus.jetstream().publish(
        subjects.audit(call_id), record.SerializeToString(), stream=subjects.AUDIT_STREAM
    )


async def decide_until(bus: Bus, call_id: str, seen: Callable[[], bool], decision: int, rule: str) -> None:
    """Publish a decision until the edge has seen it."""
    await repeat_until_seen(lambda: decide(bus, call_id, decision, rule), seen, "decision")


async def speak(bus: Bus, call_id: str, frames: int) -> None:
    for i in range(frames):
        chunk = media_pb2.SpeechChunk(
            meta=common_pb2.EventMeta(call_id=call_id, generation_id=1),
            sequence=i,
            pcm=tone(1000, 160, i * 160).astype("<i2").tobytes(),
            sample_rate=8000,
            last_in_generation=i == frames - 1,
        )
        await bus.publish(subjects.speech(call_id), chunk)


async def stored_events(bus: Bus, call_id: str) -> list[media_pb2.RecordingStored]:
    out: list[media_pb2.RecordingStored] = []

    async def on(msg: media_pb2.RecordingStored, _: Delivery) -> None:
        out.append(msg)

    await bus.subscribe(subjects.recording(call_id), media_pb2.RecordingStored, on, lane=Lane.CONTROL)
    return out


async def hang_up(edge: Edge, caller: Caller, call_id: str) -> None:
    assert caller.dialog is not None
    await caller.dialog.bye()
    await wait_for(lambda: edge.lifecycle("ended", call_id), timeout=5)
    await wait_for(lambda: call_id not in edge.svc.calls, timeout=5)


async def test_allowed_call_is_recorded_in_stereo(edge: Edge, caller: Caller) -> None:
    call_id = await caller.dial(edge)
    stored = await stored_events(edge.bus, call_id)
    await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=5)
    recording = edge.svc.calls[call_id].recording
    assert recording is not None and not recording.allowed

    await decide_until(
        edge.bus, call_id, lambda: recording.allowed, policy_pb2.DECISION_ALLOW, "one_party_notice"
    )
    await speak(edge.bus, call_id, 50)
    await wait_for(lambda: caller.heard >= 40, timeout=5)
    await hang_up(edge, caller, call_id)

    event = (await wait_for(lambda: stored, timeout=5))[0]
    path = Path(event.uri)
    assert path.parent == edge.directory.resolve() and path.name == f"{call_id}.wav"
    data = path.read_bytes()
    assert event.sha256 == hashlib.sha256(data).hexdigest() and event.size_bytes == len(data)
    assert event.format == "wav" and event.sample_rate == 8000
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        frames = wav.getnframes()
        pcm = np.frombuffer(wav.readframes(frames), "<i2").reshape(-1, 2)
    assert event.duration_ms == frames * 1000 // 8000 and frames >= 40 * 160
    left, right = pcm[:, 0], pcm[:, 1]
    assert band_energy(left, 8000, 440) > 0.8 and band_energy(left, 8000, 1000) < 0.05
    assert band_energy(right, 8000, 1000) > 0.8 and band_energy(right, 8000, 440) < 0.05
    assert np.count_nonzero(np.abs(right) > 1000) > 40 * 80  # about a second of agent speech
    assert not list(edge.directory.glob(".*.part"))


@pytest.mark.parametrize("rule", ["", "consent_refused"])
async def test_no_recording_without_permission(edge: Edge, caller: Caller, rule: str) -> None:
    call_id = await caller.dial(edge)
    stored = await stored_events(edge.bus, call_id)
    await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=5)
    recording = edge.svc.calls[call_id].recording
    assert recording is not None
    if rule:
        await decide_until(edge.bus, call_id, lambda: recording.refused, policy_pb2.DECISION_DENY, rule)
    await speak(edge.bus, call_id, 25)
    await wait_for(lambda: caller.heard >= 15, timeout=5)
    await hang_up(edge, caller, call_id)

    # A marker from the edge's own connection arrives after anything the edge published before it.
    marker = media_pb2.RecordingStored(meta=common_pb2.EventMeta(call_id=call_id), uri="marker")
    await edge.svc.bus.publish(subjects.recording(call_id), marker, lane=Lane.CONTROL)
    await wait_for(lambda: stored, timeout=5)
    assert [e.uri for e in stored] == ["marker"]
    assert not list(edge.directory.glob(f"*{call_id}*"))


def refused(reason: str) -> float:
    return float(metrics.APPROVALS_REFUSED.labels(action="recording", reason=reason)._value.get())


@pytest.mark.parametrize(
    "signer,other_call,reason",
    [(None, False, "unsigned"), (Signer.generate(), False, "unknown_key"), (SIGNER, True, "wrong_call")],
)
async def test_forged_allow_does_not_record(
    edge: Edge, caller: Caller, signer: Signer | None, other_call: bool, reason: str
) -> None:
    """An ALLOW that is not policy's for this call (unsigned, another key, another call's) is
    ignored and counted; nothing is written."""
    call_id = await caller.dial(edge)
    stored = await stored_events(edge.bus, call_id)
    await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=5)
    recording = edge.svc.calls[call_id].recording
    assert recording is not None
    before = refused(reason)
    signed_for = subjects.new_call_id() if other_call else ""
    await repeat_until_seen(
        lambda: decide(edge.bus, call_id, policy_pb2.DECISION_ALLOW, "one_party_notice", signer, signed_for),
        lambda: refused(reason) > before,
        "forged decision",
    )
    await speak(edge.bus, call_id, 25)
    await wait_for(lambda: caller.heard >= 15, timeout=5)
    assert not recording.allowed and recording.writer is None
    await hang_up(edge, caller, call_id)
    marker = media_pb2.RecordingStored(meta=common_pb2.EventMeta(call_id=call_id), uri="marker")
    await edge.svc.bus.publish(subjects.recording(call_id), marker, lane=Lane.CONTROL)
    await wait_for(lambda: stored, timeout=5)
    assert [e.uri for e in stored] == ["marker"]
    assert not list(edge.directory.glob(f"*{call_id}*"))

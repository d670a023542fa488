"""Answering-machine detection on real outbound SIP calls: the edge dials our own user agent on
127.0.0.1, which answers and plays a recorder's greeting or a person's short "Hello?"."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from phoneagent.agents.disclosure import DISCLOSURE_CORE
from phoneagent.edge.amd import AmdOutcome
from phoneagent.edge.media.pacer import Pacer
from phoneagent.edge.rtp_session import RtpSession
from phoneagent.edge.settings import EdgeSettings
from phoneagent.edge.sip import DialogHandlers, IncomingCall, UAConfig, UserAgent, answer, negotiated
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Delivery, Lane
from phoneagent.runtime.settings import load
from phoneagent.v1 import call_pb2, common_pb2, control_pb2, media_pb2
from support.common import approve_dial, wait_for
from support.edge import Edge, running_edge

pytestmark = pytest.mark.slow
HOST = "127.0.0.1"
RATE = 8000


@pytest.fixture(scope="module")
async def edge(nats_url: str) -> AsyncIterator[Edge]:
    settings = load(EdgeSettings, sip_port=0, rtp_port_min=45000, rtp_port_max=45999, web_enabled=False)
    async with running_edge(nats_url, settings, tag="amd-t") as edge:
        yield edge


def _speech(seconds: float, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 140.0 + 30.0 * np.sin(2 * np.pi * 1.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voiced = sum(np.sin(k * phase) / (1 + abs(k - 4)) for k in range(1, 20))
    return 2500.0 * voiced * (0.55 + 0.45 * np.abs(np.sin(2 * np.pi * 2.5 * t)))


def _quiet(seconds: float, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    return rng.normal(0.0, 30.0, int(seconds * RATE))


def greeting_then_beep() -> npt.NDArray[np.int16]:
    rng = np.random.default_rng(7)
    parts = [_quiet(0.3, rng)]
    for _ in range(4):
        parts += [_speech(0.9, rng), _quiet(0.15, rng)]
    t = np.arange(int(0.5 * RATE)) / RATE
    parts += [_quiet(0.4, rng), 8000.0 * np.sin(2 * np.pi * 1000.0 * t), _quiet(10.0, rng)]
    return np.clip(np.concatenate(parts), -32768, 32767).astype(np.int16)


def hello() -> npt.NDArray[np.int16]:
    rng = np.random.default_rng(8)
    signal = np.concatenate([_quiet(0.3, rng), _speech(0.6, rng), _quiet(15.0, rng)])
    return np.clip(signal, -32768, 32767).astype(np.int16)


class Callee:
    """Our user agent answering the edge's INVITE and playing ``audio`` from the answer on."""

    def __init__(self, audio: npt.NDArray[np.int16]) -> None:
        self.audio = audio
        self.bye = asyncio.Event()
        self.received: list[tuple[float, npt.NDArray[np.int16]]] = []
        self.dialog: Any = None
        self.ua: UserAgent | None = None
        self.rtp: RtpSession | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        self.ua = UserAgent(UAConfig(host=HOST, port=0, user="callee"), on_incoming_call=self.on_call)
        await self.ua.start()
        self.rtp = await RtpSession.open(HOST, 46000, 46999)
        return self.ua.local_address()[1]

    async def on_call(self, inc: IncomingCall) -> None:
        assert inc.remote_sdp is not None and self.rtp is not None
        local = answer(inc.remote_sdp, address=HOST, port=self.rtp.port)
        self.dialog = await inc.answer(local, DialogHandlers(on_bye=lambda _: self.bye.set()))
        self.rtp.start(negotiated(inc.remote_sdp, local))
        self._task = asyncio.create_task(self._play())

    async def _play(self) -> None:
        assert self.rtp is not None
        pacer = Pacer(0.02)
        for start in range(0, len(self.audio) - 159, 160):
            await pacer.next_tick()
            self.rtp.send_audio(self.audio[start : start + 160], True)
            frame = self.rtp.pull_frame()
            if frame is not None:
                self.received.append((time.monotonic(), frame))

    def heard_tone_at(self) -> list[float]:
        return [t for t, f in self.received if np.abs(f).max() > 1000]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.rtp is not None:
            self.rtp.close()
        if self.ua is not None:
            await self.ua.close()


async def dial(edge: Edge, port: int, mode: str) -> str:
    call_id = subjects.new_call_id()
    to = f"sip:callee@{HOST}:{port}"
    req = call_pb2.CallStarted(
        meta=common_pb2.EventMeta(call_id=call_id),
        to_uri=to,
        campaign_id="camp-amd",
        dial_decision_id=await approve_dial(edge.bus, call_id, to, "camp-amd"),
    )
    req.labels["amd"] = mode
    reply = await edge.bus.request(subjects.edge_dial(), req, control_pb2.ControlEvent, timeout=5)
    assert reply.WhichOneof("kind") is None, reply
    return call_id


async def agent_says(edge: Edge, call_id: str, frames: int, gen: int) -> None:
    """A 1 kHz tone from the agent at the call's playout rate (16 kHz when G.722 leads PA_CODECS:
    an outbound call announces its rate before the callee picks a codec)."""
    rate = edge.lifecycle("started", call_id)[0].playout_rate or RATE
    t = np.arange(frames * rate // 50) / rate
    pcm = (8000 * np.sin(2 * np.pi * 1000 * t)).astype("<i2").tobytes()
    chunk = media_pb2.SpeechChunk(
        meta=common_pb2.EventMeta(call_id=call_id, generation_id=gen),
        pcm=pcm,
        sample_rate=rate,
        last_in_generation=True,
    )
    await edge.bus.publish(subjects.speech(call_id), chunk)


async def test_machine_greeting_is_hung_up_as_voicemail(edge: Edge) -> None:
    callee = Callee(greeting_then_beep())
    try:
        call_id = await dial(edge, await callee.start(), "hangup")
        ended = await wait_for(lambda: edge.ended(call_id), timeout=10)
        assert ended[0].reason == call_pb2.END_REASON_VOICEMAIL
        assert ended[0].detail == "amd: machine (long greeting)"
        assert 2.5 <= ended[0].duration_ms / 1000 <= 6.0
        await asyncio.wait_for(callee.bye.wait(), 5)
    finally:
        await callee.close()


async def test_short_hello_proceeds_and_agent_speaks_after_verdict(edge: Edge) -> None:
    callee = Callee(hello())
    try:
        call_id = await dial(edge, await callee.start(), "hangup")
        active = await wait_for(lambda: edge.svc.calls.get(call_id), timeout=5)
        await wait_for(lambda: callee.received, timeout=5)  # answered, media flowing
        await agent_says(edge, call_id, 25, gen=1)  # the greeting is ready at once ...
        amd = active.call.amd
        assert amd is not None
        decided = await wait_for(lambda: amd.detector.decision, timeout=6)
        decided_at = time.monotonic()
        assert decided.outcome is AmdOutcome.HUMAN
        heard = await wait_for(callee.heard_tone_at, timeout=3)
        assert heard[0] >= decided_at - 0.1  # ... but is held until the callee was heard out
        assert not edge.ended(call_id)
        await callee.dialog.bye()
        ended = await wait_for(lambda: edge.ended(call_id), timeout=5)
        assert ended[0].reason == call_pb2.END_REASON_CALLER_HANGUP
    finally:
        await callee.close()


async def test_leave_message_after_beep_then_voicemail(edge: Edge) -> None:
    callee = Callee(greeting_then_beep())
    control: list[control_pb2.ControlEvent] = []
    directive = asyncio.Event()
    try:
        port = await callee.start()
        call_id = subjects.new_call_id()

        async def on_control(ev: control_pb2.ControlEvent, _: Delivery) -> None:
            control.append(ev)
            if ev.WhichOneof("kind") == "directive":
                directive.set()

        sub = await edge.bus.subscribe(
            subjects.control(call_id), control_pb2.ControlEvent, on_control, lane=Lane.CONTROL
        )
        to = f"sip:callee@{HOST}:{port}"
        req = call_pb2.CallStarted(
            meta=common_pb2.EventMeta(call_id=call_id),
            to_uri=to,
            dial_decision_id=await approve_dial(edge.bus, call_id, to),
        )
        req.labels.update({"amd": "leave-message", "message": "Your order is ready."})
        reply = await edge.bus.request(subjects.edge_dial(), req, control_pb2.ControlEvent, timeout=5)
        assert reply.WhichOneof("kind") is None
        await wait_for(lambda: callee.received, timeout=5)
        await agent_says(edge, call_id, 25, gen=1)  # a greeting for a person: never played
        await asyncio.wait_for(directive.wait(), 10)
        d = [e.directive for e in control if e.WhichOneof("kind") == "directive"][0]
        assert (
            d.action == control_pb2.DIRECTIVE_ACTION_SAY_AND_HANG_UP
            and d.text == f"{DISCLOSURE_CORE} Your order is ready."
        )
        assert not callee.heard_tone_at()
        said_at = time.monotonic()
        await agent_says(edge, call_id, 10, gen=2)  # the dialog speaks the message ...
        await wait_for(lambda: [t for t in callee.heard_tone_at() if t >= said_at], timeout=3)
        hang = control_pb2.ControlEvent(
            meta=common_pb2.EventMeta(call_id=call_id),
            hangup=control_pb2.Hangup(reason=call_pb2.END_REASON_AGENT_HANGUP, detail="agent ended"),
        )
        await edge.bus.publish(subjects.control(call_id), hang, lane=Lane.CONTROL)  # ... and hangs up
        ended = await wait_for(lambda: edge.ended(call_id), timeout=5)
        assert ended[0].reason == call_pb2.END_REASON_VOICEMAIL and ended[0].detail == "amd: machine (beep)"
        await edge.bus.unsubscribe(sub)
    finally:
        await callee.close()

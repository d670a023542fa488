"""What the harness reads from the bus about its own call: the call id, the ASR finals and
preflights, the LLM's reply sentences, the first TTS chunk of each generation, transfers and the end of call.

The simulated caller's SIP From user is unique per call; the edge's session claims carry it in
the call's ``from_uri``, which is how the bus call id is found (the lifecycle subject, which is
stored, carries the party masked).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Delivery, Lane
from phoneagent.v1 import call_pb2, control_pb2, media_pb2, session_pb2, speech_pb2

log = logging.getLogger(__name__)


@dataclass
class CallTrace:
    call_id: str = ""
    finals: list[speech_pb2.Transcript] = field(default_factory=list)
    preflights: list[speech_pb2.Transcript] = field(default_factory=list)  # speculative finals
    replies: list[speech_pb2.AgentText] = field(default_factory=list)
    first_chunks: list[media_pb2.SpeechChunk] = field(default_factory=list)  # sequence 0 of each generation
    transfers: list[control_pb2.Transfer] = field(default_factory=list)
    ended: call_pb2.CallEnded | None = None


class BusWatch:
    """Follows the calls whose CallStarted ``from_uri`` (in a session claim) contains one of the
    watched users."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.traces: dict[str, CallTrace] = {}  # caller user -> trace
        self._found: dict[str, asyncio.Event] = {}

    async def start(self) -> None:
        await self.bus.subscribe(
            subjects.ALL_SESSION_CLAIMS, session_pb2.SessionClaim, self._on_claim, lane=Lane.CONTROL
        )
        await self.bus.subscribe(
            subjects.ALL_LIFECYCLE, call_pb2.CallEvent, self._on_lifecycle, lane=Lane.CONTROL
        )

    def watch(self, user: str) -> CallTrace:
        trace = self.traces.setdefault(user, CallTrace())
        self._found.setdefault(user, asyncio.Event())
        return trace

    async def call_id(self, user: str, timeout: float) -> str:
        await asyncio.wait_for(self._found[user].wait(), timeout)
        return self.traces[user].call_id

    async def _on_claim(self, claim: session_pb2.SessionClaim, _: Delivery) -> None:
        """The edge claims a session in each stage; the first claim of a watched caller's call
        names it (the others find its trace followed already)."""
        started = claim.call
        user = next((u for u in self.traces if u in started.from_uri), None)
        if user is None or self.traces[user].call_id:
            return
        trace = self.traces[user]
        trace.call_id = started.meta.call_id
        await self._follow(trace)
        self._found[user].set()

    async def _on_lifecycle(self, ev: call_pb2.CallEvent, _: Delivery) -> None:
        if ev.WhichOneof("event") == "ended":
            for trace in self.traces.values():
                if trace.call_id and trace.call_id == ev.ended.meta.call_id:
                    trace.ended = ev.ended

    async def _follow(self, trace: CallTrace) -> None:
        cid = trace.call_id

        async def on_final(m: speech_pb2.Transcript, _: Delivery) -> None:
            if m.final and not m.backchannel:
                trace.finals.append(m)
            elif m.preflight:
                trace.preflights.append(m)

        async def on_reply(m: speech_pb2.AgentText, _: Delivery) -> None:
            trace.replies.append(m)

        async def on_speech(m: media_pb2.SpeechChunk, _: Delivery) -> None:
            if m.sequence == 0:
                trace.first_chunks.append(m)

        async def on_control(m: control_pb2.ControlEvent, _: Delivery) -> None:
            if m.WhichOneof("kind") == "transfer":
                trace.transfers.append(m.transfer)

        await self.bus.subscribe(subjects.transcript(cid), speech_pb2.Transcript, on_final)
        await self.bus.subscribe(subjects.reply(cid), speech_pb2.AgentText, on_reply)
        await self.bus.subscribe(subjects.speech(cid), media_pb2.SpeechChunk, on_speech, max_pending=1024)
        await self.bus.subscribe(
            subjects.control(cid), control_pb2.ControlEvent, on_control, lane=Lane.CONTROL
        )

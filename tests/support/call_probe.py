"""The call probe: one call as a stage sees it on the bus. It holds the CallStarted a session is
claimed with, collects the replies and control events published for the call, and plays the
other side (transcripts, control events, lifecycle events)."""

from __future__ import annotations

import time
from typing import Any

from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Delivery, Lane
from phoneagent.v1 import call_pb2, common_pb2, control_pb2, session_pb2, speech_pb2

from support.common import wait_for


class CallProbe:
    def __init__(self, bus: Bus, direction: int = call_pb2.DIRECTION_INBOUND) -> None:
        self.bus = bus
        self.call_id = subjects.new_call_id()
        self.started = call_pb2.CallStarted(
            meta=common_pb2.EventMeta(call_id=self.call_id),
            direction=direction,
            from_uri="sip:+14155550134@h",
        )
        self.replies: list[speech_pb2.AgentText] = []
        self.control: list[control_pb2.ControlEvent] = []

    async def listen(self) -> None:
        async def on_reply(m: speech_pb2.AgentText, _: Delivery) -> None:
            self.replies.append(m)

        async def on_control(m: control_pb2.ControlEvent, _: Delivery) -> None:
            self.control.append(m)

        await self.bus.subscribe(subjects.reply(self.call_id), speech_pb2.AgentText, on_reply)
        await self.bus.subscribe(
            subjects.control(self.call_id), control_pb2.ControlEvent, on_control, lane=Lane.CONTROL
        )

    def claim(self, stage: str = "llm") -> session_pb2.SessionClaim:
        return session_pb2.SessionClaim(stage=stage, call=self.started)

    def kinds(self, kind: str) -> list[Any]:
        return [getattr(e, kind) for e in self.control if e.WhichOneof("kind") == kind]

    def spoken(self, generation: int) -> str:
        return " ".join(r.text for r in self.replies if r.meta.generation_id == generation).strip()

    def finished(self, generation: int) -> bool:
        return any(r.final for r in self.replies if r.meta.generation_id == generation)

    async def send(self, **kind: Any) -> None:
        ev = control_pb2.ControlEvent(meta=common_pb2.EventMeta(call_id=self.call_id), **kind)
        await self.bus.publish(subjects.control(self.call_id), ev, lane=Lane.CONTROL)

    async def lifecycle(self, **event: Any) -> None:
        await self.bus.publish(
            subjects.lifecycle(self.call_id), call_pb2.CallEvent(**event), lane=Lane.CONTROL
        )

    async def answered(self) -> None:
        await self.lifecycle(answered=call_pb2.CallAnswered(meta=common_pb2.EventMeta(call_id=self.call_id)))

    async def transcript(
        self, turn: int, text: str, backchannel: bool = False, preflight: bool = False, **fields: Any
    ) -> speech_pb2.Transcript:
        """Publish the final transcript of ``turn`` (a preflight with ``preflight``); returns it."""
        meta = common_pb2.EventMeta(call_id=self.call_id, turn_id=turn, ts_unix_ns=time.time_ns())
        tr = speech_pb2.Transcript(
            meta=meta,
            final=not preflight,
            preflight=preflight,
            text=text,
            backchannel=backchannel,
            emitted_unix_ns=meta.ts_unix_ns,
            **fields,
        )
        await self.bus.publish(subjects.transcript(self.call_id), tr)
        return tr

    async def speech_started(self, turn: int, at_unix_ns: int) -> None:
        """ASR heard the caller start speaking (turn ``turn``, at ``at_unix_ns``)."""
        started = speech_pb2.SpeechStarted(
            meta=common_pb2.EventMeta(call_id=self.call_id, turn_id=turn), speech_start_unix_ns=at_unix_ns
        )
        await self.bus.publish(
            subjects.asr_events(self.call_id), speech_pb2.AsrEvent(speech_started=started), lane=Lane.CONTROL
        )

    async def settle(self, generation: int) -> None:
        """Round-trip a marker on the control lane: what the session published before it has arrived."""
        await self.send(playback_done=control_pb2.PlaybackDone(generation_id=generation))
        await wait_for(
            lambda: any(p.generation_id == generation for p in self.kinds("playback_done")), timeout=5
        )

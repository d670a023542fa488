"""Live events of one browser call, pushed to its page over a WebSocket.

The feed subscribes to the call's ASR, transcript, say, control and lifecycle subjects and
turns them into small JSON events::

    {"type": "caller", "final": false, "text": "what are your"}       ASR partial / final
    {"type": "agent", "generation": 2, "seq": 0, "text": "...", "final": false}
    {"type": "state", "state": "listening" | "thinking" | "speaking"}
    {"type": "latency", "turn": 1, "ms": 812}      end of caller speech -> first agent audio
    {"type": "ended", "reason": "caller_hangup"}

A page that connects late gets the events it missed (a bounded backlog) first.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from typing import Any

from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Delivery, Lane, Subscription
from phoneagent.runtime.enums import enum_name
from phoneagent.v1 import call_pb2, control_pb2, speech_pb2

log = logging.getLogger(__name__)
BACKLOG = 400


class CallFeed:
    def __init__(self, bus: Bus, call_id: str, speech_ended_at: Callable[[], float | None]) -> None:
        self.bus = bus
        self.call_id = call_id
        self._speech_ended_at = speech_ended_at
        self.backlog: collections.deque[dict[str, Any]] = collections.deque(maxlen=BACKLOG)
        self.sockets: set[Any] = set()
        self.subs: list[Subscription[Any]] = []
        self.state = "listening"
        self.turns = 0
        self._awaiting_reply = False
        self.latencies_ms: list[int] = []

    async def start(self) -> None:
        cid = self.call_id
        pairs: list[tuple[str, Any, Any]] = [
            (subjects.asr_events(cid), speech_pb2.AsrEvent, self._on_asr),
            (subjects.transcript(cid), speech_pb2.Transcript, self._on_transcript),
            (subjects.say(cid), speech_pb2.AgentText, self._on_say),
            (subjects.control(cid), control_pb2.ControlEvent, self._on_control),
            (subjects.lifecycle(cid), call_pb2.CallEvent, self._on_lifecycle),
        ]
        for subject, msg_type, handler in pairs:
            self.subs.append(await self.bus.subscribe(subject, msg_type, handler, lane=Lane.CONTROL))

    async def close(self) -> None:
        for sub in self.subs:
            await self.bus.unsubscribe(sub)
        self.subs.clear()
        for ws in list(self.sockets):
            await ws.close()
        self.sockets.clear()

    # --- page side ---------------------------------------------------------------------------------
    async def attach(self, ws: Any) -> None:
        """Send the backlog to a newly connected page, then keep it updated."""
        for event in list(self.backlog):
            await ws.send_json(event)
        self.sockets.add(ws)

    def detach(self, ws: Any) -> None:
        self.sockets.discard(ws)

    async def emit(self, event: dict[str, Any]) -> None:
        self.backlog.append(event)
        for ws in list(self.sockets):
            try:
                await ws.send_json(event)
            except (ConnectionError, RuntimeError):
                self.sockets.discard(ws)

    async def set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            await self.emit({"type": "state", "state": state})

    # --- transport side -----------------------------------------------------------------------------
    async def agent_speech(self, speaking: bool) -> None:
        """The transport started (or stopped) sending agent speech."""
        if not speaking:
            return
        ended = self._speech_ended_at()
        if self._awaiting_reply and ended is not None:
            self._awaiting_reply = False
            ms = int((time.monotonic() - ended) * 1000)
            self.latencies_ms.append(ms)
            await self.emit({"type": "latency", "turn": self.turns, "ms": ms})
        await self.set_state("speaking")

    # --- bus side ----------------------------------------------------------------------------------
    async def _on_asr(self, ev: speech_pb2.AsrEvent, _: Delivery) -> None:
        if ev.WhichOneof("event") == "transcript" and not ev.transcript.final and ev.transcript.text:
            await self.emit({"type": "caller", "final": False, "text": ev.transcript.text})

    async def _on_transcript(self, tr: speech_pb2.Transcript, _: Delivery) -> None:
        if not tr.final:
            return
        await self.emit({"type": "caller", "final": True, "text": tr.text, "backchannel": tr.backchannel})
        if not tr.backchannel and tr.text.strip():
            self.turns += 1
            self._awaiting_reply = True
            await self.set_state("thinking")

    async def _on_say(self, m: speech_pb2.AgentText, _: Delivery) -> None:
        await self.emit(
            {
                "type": "agent",
                "generation": m.meta.generation_id,
                "seq": m.sentence_seq,
                "text": m.text,
                "final": m.final,
            }
        )

    async def _on_control(self, ev: control_pb2.ControlEvent, _: Delivery) -> None:
        kind = ev.WhichOneof("kind")
        if kind in ("playback_done", "barge_in"):
            await self.set_state("listening")
        elif kind == "transfer_result":
            await self.emit({"type": "notice", "text": ev.transfer_result.detail})

    async def _on_lifecycle(self, ev: call_pb2.CallEvent, _: Delivery) -> None:
        if ev.WhichOneof("event") == "ended":
            reason = enum_name(call_pb2.EndReason, ev.ended.reason, prefix="END_REASON_").lower()
            await self.emit({"type": "ended", "reason": reason})

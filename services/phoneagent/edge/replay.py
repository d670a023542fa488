"""The last seconds of one call's caller audio, replayed to a new ASR owner after a takeover.

Caller audio goes to ASR as plain NATS messages: while a killed ASR replica is being
replaced (~2 s: ``PA_DEAD_AFTER_S`` plus a heartbeat), nobody listens. So the edge keeps
the frames it published for the last ``keep_s`` seconds in a ring buffer, follows which
replica owns the call from the stage's heartbeats (a replica lists a call only once its
session has started and subscribed), and when the owner changes publishes the buffered
frames again, unchanged (original sequence numbers and capture times); frames older than the
end of the call's last final transcript are dropped as finals arrive. The new owner holds
its live frames until the replay fills the gap, skips audio the old owner already
transcribed, and drops repeats by sequence number (:mod:`phoneagent.asr.resume`).
"""

from __future__ import annotations

import collections
import logging

from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Delivery, Lane, Subscription
from phoneagent.runtime.errors import PhoneAgentError
from phoneagent.v1 import media_pb2, session_pb2

log = logging.getLogger(__name__)
KEEP_S = 5.0  # covers takeover (dead-after + two heartbeats) plus the start of an utterance
FRAME_MS = 20


class AudioReplay:
    """Ring buffer of one call's published AudioFrames, replayed when the ASR owner changes."""

    def __init__(self, bus: Bus, call_id: str, *, keep_s: float = KEEP_S, stage: str = "asr") -> None:
        self.bus = bus
        self.call_id = call_id
        self.stage = stage
        self.frames: collections.deque[media_pb2.AudioFrame] = collections.deque(
            maxlen=max(1, round(keep_s * 1000 / FRAME_MS))
        )
        self.owner = ""  # replica owning the call's ASR session ("" until known)
        self.replays = 0

    def keep(self, frame: media_pb2.AudioFrame) -> None:
        """Remember a frame just published to ASR (the oldest falls out)."""
        self.frames.append(frame)

    def transcribed(self, until_unix_ns: int) -> None:
        """ASR published a final for speech that ended at ``until_unix_ns``: frames captured
        before then need no replay (a new owner would transcribe them a second time)."""
        frame_ns = FRAME_MS * 1_000_000
        while self.frames and self.frames[0].capture_unix_ns + frame_ns <= until_unix_ns:
            self.frames.popleft()

    async def watch(self) -> Subscription[session_pb2.Heartbeat]:
        """Follow the stage's heartbeats; the caller unsubscribes the returned subscription."""
        return await self.bus.subscribe(
            subjects.session_heartbeat(self.stage),
            session_pb2.Heartbeat,
            self.on_heartbeat,
            lane=Lane.CONTROL,
        )

    async def on_heartbeat(self, hb: session_pb2.Heartbeat, _: Delivery | None = None) -> None:
        if self.call_id not in hb.call_ids or hb.replica_id == self.owner:
            return
        previous, self.owner = self.owner, hb.replica_id
        if previous:
            await self.replay(previous)

    async def replay(self, previous: str = "") -> None:
        frames = list(self.frames)
        try:
            for frame in frames:
                await self.bus.publish(subjects.audio_in(self.call_id), frame)
        except PhoneAgentError as exc:
            log.warning("audio replay failed", extra={"call_id": self.call_id, "error_kind": exc.kind.name})
            return
        self.replays += 1
        log.info(
            "caller audio replayed to new asr owner",
            extra={
                "call_id": self.call_id,
                "replica": self.owner,
                "previous_replica": previous,
                "frames": len(frames),
            },
        )

"""The edge side of an ASR takeover: a real EdgeCall publishes caller audio while the ASR
replica owning its session dies; the replica taking the session over receives, from the
edge's replay buffer, every frame the dead one never got: no gap in the sequence numbers.
Two in-process SessionHosts stand in for ASR replicas (no model needed)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from phoneagent.edge.callflow import EdgeCall, EdgeCallConfig
from phoneagent.runtime import streams, subjects
from phoneagent.runtime.bus import Bus, Delivery, Subscription
from phoneagent.runtime.sessions import SessionHost
from phoneagent.v1 import call_pb2, common_pb2, media_pb2, session_pb2
from support.common import wait_for

RATE = 16000
CALL = "edge-replay-1"


class CallerTransport:
    """A caller who talks all the time: one 20 ms frame per tick."""

    name = "loopback"
    sample_rate = RATE

    def pull_caller_frame(self) -> np.ndarray | None:
        return (np.random.default_rng().normal(0, 3000, RATE // 50)).astype(np.int16)

    async def send_agent_frame(self, pcm: np.ndarray, speech: bool) -> None: ...

    async def send_dtmf(self, digit: str) -> None: ...

    async def hangup(self, reason: str) -> None: ...

    async def transfer(self, target: str, warm: bool, summary: str) -> tuple[bool, str]:
        return False, "no transfer here"


@dataclass
class Replica:
    name: str
    bus: Bus
    seqs: list[int] = field(default_factory=list)
    host: SessionHost | None = None


class RecordingSession:
    """An ASR session that only notes the sequence numbers of the frames it hears."""

    def __init__(self, replica: Replica, call_id: str) -> None:
        self.replica, self.call_id = replica, call_id
        self.sub: Subscription[media_pb2.AudioFrame] | None = None

    async def start(self) -> None:
        self.sub = await self.replica.bus.subscribe(
            subjects.audio_in(self.call_id), media_pb2.AudioFrame, self.on_frame, max_pending=1000
        )

    async def on_frame(self, frame: media_pb2.AudioFrame, _: Delivery) -> None:
        self.replica.seqs.append(frame.sequence)

    async def close(self, reason: str) -> None:
        if self.sub is not None:
            await self.replica.bus.unsubscribe(self.sub)


async def test_the_new_asr_owner_gets_the_audio_the_dead_one_missed(fresh_nats: str) -> None:
    replicas = {r: Replica(r, Bus(r)) for r in ("asr-x", "asr-y")}
    edge_bus = Bus("edge-test")
    call: EdgeCall | None = None
    try:
        await edge_bus.connect(fresh_nats)
        await streams.ensure(edge_bus.jetstream())
        for rep in replicas.values():
            await rep.bus.connect(fresh_nats)

            async def factory(
                claim: session_pb2.SessionClaim, _: bool, rep: Replica = rep
            ) -> RecordingSession:
                return RecordingSession(rep, claim.call.meta.call_id)

            rep.host = SessionHost(rep.bus, "asr", rep.name, factory, heartbeat_s=0.2, dead_after_s=0.6)
            await rep.host.start()
        started = call_pb2.CallStarted(meta=common_pb2.EventMeta(call_id=CALL), sample_rate=RATE)
        call = EdgeCall(edge_bus, started, CallerTransport(), EdgeCallConfig(stages=("asr",)))
        await call.start()
        owner = replicas[call.replay.owner]
        heir = next(r for r in replicas.values() if r is not owner)
        await call.answered()
        await wait_for(lambda: len(owner.seqs) >= 25, timeout=10)

        # The owner dies: no more heartbeats, its session stops listening, its record stays.
        assert owner.host is not None
        await owner.host.close()
        owner.host = None
        await owner.bus.close()
        last_heard = max(owner.seqs)
        await wait_for(
            lambda: call.replay.replays and heir.seqs and max(heir.seqs) > last_heard + 50, timeout=10
        )

        # The heir started listening live long after the death, yet heard every frame since.
        first_live = heir.seqs[0]
        assert first_live > last_heard + 1, "the test must leave a gap for the replay to fill"
        assert set(range(last_heard + 1, max(heir.seqs) + 1)) <= set(heir.seqs)
        assert call.replay.replays == 1 and call.replay.owner == heir.name
    finally:
        if call is not None:
            await call.end(call_pb2.END_REASON_CALLER_HANGUP)
        for rep in replicas.values():
            if rep.host is not None:
                await rep.host.close()
            await rep.bus.close()
        await edge_bus.close()

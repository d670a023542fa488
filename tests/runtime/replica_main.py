"""A stage replica process for the session tests: the real Service and SessionHost with a
session that announces itself and answers pings on its call's control lane."""

from __future__ import annotations

import sys

from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Delivery, Lane
from phoneagent.runtime.service import Service, main
from phoneagent.v1 import control_pb2, session_pb2

ANNOUNCE = "test.session.started"


class PingSession:
    def __init__(self, svc: Service, claim: session_pb2.SessionClaim, taken_over: bool) -> None:
        self.svc = svc
        self.claim = claim
        self.taken_over = taken_over
        self.call_id = claim.call.meta.call_id
        self.sub = None

    async def start(self) -> None:
        self.sub = await self.svc.bus.subscribe(
            subjects.control(self.call_id), control_pb2.ControlEvent, self.on_control, lane=Lane.CONTROL
        )
        await self.svc.bus.publish(
            ANNOUNCE,
            session_pb2.SessionAssigned(
                stage=self.svc.stage,
                call_id=self.call_id,
                replica_id=self.svc.replica,
                existing=self.taken_over,
            ),
        )

    async def on_control(self, ev: control_pb2.ControlEvent, d: Delivery) -> None:
        if ev.WhichOneof("kind") == "dtmf" and not ev.dtmf.outbound:
            reply = control_pb2.ControlEvent()
            reply.CopyFrom(ev)
            reply.meta.producer = self.svc.replica
            reply.dtmf.outbound = True
            await self.svc.bus.publish(subjects.control(self.call_id), reply, lane=Lane.CONTROL)

    async def close(self, reason: str) -> None:
        if self.sub is not None:
            await self.svc.bus.unsubscribe(self.sub)


class PingStage(Service):
    name = "asr"
    stage = "asr"

    async def new_session(self, claim: session_pb2.SessionClaim, taken_over: bool) -> PingSession:
        return PingSession(self, claim, taken_over)


if __name__ == "__main__":
    sys.exit(main(PingStage))

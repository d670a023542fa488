"""A running policy service (real nats-server, the real SessionHost), the records service beside it,
and the call-side helpers that the live policy tests share: start a call, say something as the caller
or the agent, report playback."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

from phoneagent.policy.service import PolicyService
from phoneagent.policy.settings import PolicySettings
from phoneagent.records.service import RecordsService
from phoneagent.records.settings import RecordsServiceSettings
from phoneagent.runtime import streams, subjects
from phoneagent.runtime.bus import Bus, Delivery, Lane
from phoneagent.runtime.sessions import SessionHost, claim_session
from phoneagent.runtime.settings import CommonSettings, load
from phoneagent.v1 import call_pb2, common_pb2, control_pb2, speech_pb2

from support.common import SIGNING_KEY_FILE


@asynccontextmanager
async def running_policy(
    nats_url: str,
    db: Path,
    *,
    common: dict[str, Any] | None = None,
    now: datetime | None = None,
    **settings: Any,
) -> AsyncIterator[PolicyService]:
    """The policy service with these settings; ``now`` pins its clock (opening hours)."""
    base: dict[str, Any] = {
        "db_path": str(db),
        "caller_id": "+14155550100",
        "window_start": "00:00",
        "window_end": "23:59",
        "signing_key_file": SIGNING_KEY_FILE,
    }
    svc = PolicyService(
        load(CommonSettings, nats_url=nats_url, **(common or {})), load(PolicySettings, **(base | settings))
    )
    if now is not None:
        svc.clock = lambda: now
    await svc.bus.connect(nats_url)
    await streams.ensure(svc.bus.jetstream())
    await svc.setup()
    svc.sessions = SessionHost(svc.bus, "policy", svc.replica, svc.new_session)
    await svc.sessions.start()
    try:
        yield svc
    finally:
        await svc.sessions.close()
        await svc.bus.close()
        await svc.teardown()


@asynccontextmanager
async def running_records(
    nats_url: str, db: Path, *, replica_id: str = "", **settings: Any
) -> AsyncIterator[RecordsService]:
    """The records service (records worker, webhooks, summaries, the CallControl API on any
    port, campaigns) on ``nats_url``, its records in ``db``; ``settings`` override its own."""
    base: dict[str, Any] = {"grpc_port": 0, "window_start": "00:00", "window_end": "23:59"}
    common = load(CommonSettings, nats_url=nats_url, **({"replica_id": replica_id} if replica_id else {}))
    with mock.patch.dict(os.environ, PA_RECORDS_DB=str(db)):  # the records store reads its path from there
        svc = RecordsService(common, load(RecordsServiceSettings, **(base | settings)))
    await svc.bus.connect(nats_url)
    await streams.ensure(svc.bus.jetstream())
    await svc.setup()
    try:
        yield svc
    finally:
        await svc.bus.close()
        await svc.teardown()


@asynccontextmanager
async def control_api(records: RecordsService) -> AsyncIterator[Any]:
    """A CallControl client of the records service's API (plaintext, loopback)."""
    import grpc
    from phoneagent.v1 import control_api_pb2_grpc

    channel = grpc.aio.insecure_channel(f"127.0.0.1:{records.grpc_port}")
    try:
        yield control_api_pb2_grpc.CallControlStub(channel)
    finally:
        await channel.close()


# Tuesday 2 June 2026, 11:00 in New York: the example agent's front desk is open.
OPEN = datetime(2026, 6, 2, 15, 0, tzinfo=UTC)
# The same Tuesday at 20:00 in New York: closed.
CLOSED = datetime(2026, 6, 3, 0, 0, tzinfo=UTC)


class Call:
    """One call as seen from the bus: what policy let through for speech and its control events."""

    def __init__(self, bus: Bus, call_id: str) -> None:
        self.bus, self.call_id = bus, call_id
        self.said: list[speech_pb2.AgentText] = []
        self.control: list[control_pb2.ControlEvent] = []

    def texts(self) -> list[str]:
        return [m.text for m in self.said if m.text]

    def directives(self) -> list[control_pb2.PolicyDirective]:
        return [e.directive for e in self.control if e.WhichOneof("kind") == "directive"]

    async def agent(self, generation: int, *sentences: str) -> None:
        """The dialog's reply: one AgentText per sentence, then the final marker."""
        for seq, text in enumerate((*sentences, "")):
            meta = common_pb2.EventMeta(call_id=self.call_id, generation_id=generation)
            msg = speech_pb2.AgentText(meta=meta, sentence_seq=seq, text=text, final=not text)
            await self.bus.publish(subjects.reply(self.call_id), msg)

    async def caller(self, turn: int, text: str) -> None:
        meta = common_pb2.EventMeta(call_id=self.call_id, turn_id=turn)
        await self.bus.publish(
            subjects.transcript(self.call_id), speech_pb2.Transcript(meta=meta, final=True, text=text)
        )

    async def control_event(self, **kind: Any) -> None:
        ev = control_pb2.ControlEvent(meta=common_pb2.EventMeta(call_id=self.call_id), **kind)
        await self.bus.publish(subjects.control(self.call_id), ev, lane=Lane.CONTROL)

    async def played(self, generation: int) -> None:
        await self.control_event(playback_done=control_pb2.PlaybackDone(generation_id=generation))

    async def barged_in(self, generation: int, sentence_seq: int, chars: int) -> None:
        b = control_pb2.BargeIn(
            interrupted_generation_id=generation, heard_sentence_seq=sentence_seq, heard_text_chars=chars
        )
        await self.control_event(barge_in=b)


async def start_call(bus: Bus, caller: str, *, outbound: bool = False) -> Call:
    call = Call(bus, subjects.new_call_id())

    async def on_control(ev: control_pb2.ControlEvent, _: Delivery) -> None:
        call.control.append(ev)

    async def on_say(msg: speech_pb2.AgentText, _: Delivery) -> None:
        call.said.append(msg)

    await bus.subscribe(
        subjects.control(call.call_id), control_pb2.ControlEvent, on_control, lane=Lane.CONTROL
    )
    await bus.subscribe(subjects.say(call.call_id), speech_pb2.AgentText, on_say)
    them, us = f"sip:{caller}@127.0.0.1:5062", "sip:agent@127.0.0.1"
    started = call_pb2.CallStarted(
        meta=common_pb2.EventMeta(call_id=call.call_id),
        direction=call_pb2.DIRECTION_OUTBOUND if outbound else call_pb2.DIRECTION_INBOUND,
        from_uri=us if outbound else them,
        to_uri=them if outbound else us,
    )
    await claim_session(bus, "policy", started)
    return call

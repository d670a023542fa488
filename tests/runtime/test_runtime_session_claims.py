"""How long the edge's claim keeps asking: a stage that answers "unavailable" (its ownership
store electing a leader after a NATS server was lost, which takes 4-9 s or more) is waited out,
and a stage whose replicas are full is refused after a few quick tries."""

from __future__ import annotations

import time

import pytest
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Delivery
from phoneagent.runtime.errors import ErrorKind, PhoneAgentError
from phoneagent.runtime.sessions import claim_session
from phoneagent.v1 import call_pb2, common_pb2, session_pb2


def started(call_id: str) -> call_pb2.CallStarted:
    return call_pb2.CallStarted(
        meta=common_pb2.EventMeta(call_id=call_id), direction=call_pb2.DIRECTION_INBOUND
    )


async def stage_answering(bus: Bus, kind: ErrorKind, for_s: float, asked: list[float]) -> None:
    """A stand-in replica of "tts": ``kind`` errors for ``for_s`` seconds, then assignments."""
    since = time.monotonic()

    async def on_claim(claim: session_pb2.SessionClaim, _: Delivery) -> session_pb2.SessionAssigned:
        asked.append(time.monotonic() - since)
        out = session_pb2.SessionAssigned(stage="tts", call_id=claim.call.meta.call_id)
        if time.monotonic() - since < for_s:
            out.error.kind = kind.wire
            out.error.message = "session store unavailable" if kind is ErrorKind.UNAVAILABLE else "full"
        else:
            out.replica_id = "tts-a"
        return out

    await bus.serve(subjects.session_claim("tts"), session_pb2.SessionClaim, on_claim, queue_group="tts")


async def test_a_store_without_a_leader_is_waited_out_longer_than_the_quick_tries(bus: Bus) -> None:
    asked: list[float] = []
    # 4 s of "unavailable": six quick tries alone end after about 1.6 s.
    await stage_answering(bus, ErrorKind.UNAVAILABLE, 4.0, asked)
    assigned = await claim_session(bus, "tts", started("claim-wait-1"))
    assert assigned.replica_id == "tts-a"
    assert len(asked) > 6 and asked[-1] >= 4.0


async def test_full_replicas_are_refused_after_the_quick_tries(bus: Bus) -> None:
    asked: list[float] = []
    await stage_answering(bus, ErrorKind.OVERLOADED, 60.0, asked)
    began = time.monotonic()
    with pytest.raises(PhoneAgentError) as e:
        await claim_session(bus, "tts", started("claim-full-1"))
    assert e.value.kind is ErrorKind.OVERLOADED and len(asked) == 6
    assert time.monotonic() - began < 5.0


async def test_a_store_that_stays_unavailable_is_given_up_on_at_the_deadline(bus: Bus) -> None:
    asked: list[float] = []
    await stage_answering(bus, ErrorKind.UNAVAILABLE, 60.0, asked)
    began = time.monotonic()
    with pytest.raises(PhoneAgentError) as e:
        await claim_session(bus, "tts", started("claim-gone-1"), within=3.0)
    assert e.value.kind is ErrorKind.UNAVAILABLE
    assert 3.0 - 2.0 <= time.monotonic() - began < 3.0 + 2.5

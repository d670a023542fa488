"""What PA_CALLS keeps of a call's parties: the edge publishes the call on its lifecycle subject,
which the stream stores, with the caller's and our URI masked to the last two digits and no
label about the person called, while the
session claims, requests that are not stored, carry them whole for the stages that need the
number (policy's DNC, opt-out and consent rules). Real nats-server and the edge's call flow."""

from __future__ import annotations

import asyncio
from typing import Any

from phoneagent.edge.callflow import EdgeCall, EdgeCallConfig
from phoneagent.records.builder import CallRecord, apply_lifecycle
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus
from phoneagent.runtime.numbers import masked_party
from phoneagent.runtime.sessions import SessionHost
from phoneagent.v1 import call_pb2, common_pb2, session_pb2
from support.edge import SilentLine, TrivialSession

CALLER = '"Ann Lee" <sip:+12125550123@carrier.example;user=phone>'
OURS = "sip:+14155550100@pbx.example"
RAW = ("2125550123", "12125550123", "Ann", "carrier.example", "4155550100", "pbx.example", "A-778812")


def test_a_party_keeps_only_the_last_two_digits() -> None:
    assert masked_party(CALLER) == "…23"
    assert masked_party("tel:+44-20-7946-0958") == "…58"
    assert masked_party("sip:alice@10.0.0.1") == ""  # a name and a host: nothing kept
    assert masked_party("webrtc:browser") == "" and masked_party("") == ""
    assert masked_party(masked_party(CALLER)) == "…23"  # stored twice, still the same


async def test_the_calls_stream_keeps_the_parties_masked_and_claims_carry_them_whole(js_bus: Bus) -> None:
    call_id = subjects.new_call_id()
    claims: list[session_pb2.SessionClaim] = []

    async def factory(claim: session_pb2.SessionClaim, taken_over: bool) -> TrivialSession:
        claims.append(claim)
        return TrivialSession(claim)

    host = SessionHost(js_bus, "policy", "policy-parties-t", factory)
    await host.start()
    started = call_pb2.CallStarted(
        meta=common_pb2.EventMeta(call_id=call_id),
        direction=call_pb2.DIRECTION_INBOUND,
        from_uri=CALLER,
        to_uri=OURS,
        sample_rate=16000,
        labels={"name": "Ann Lee", "account": "A-778812", "purpose": "reminder", "amd": "off"},
    )
    call = EdgeCall(js_bus, started, SilentLine(), EdgeCallConfig(stages=("policy",)))
    try:
        await call.start()
    finally:
        await call.end(call_pb2.END_REASON_CALLER_HANGUP)
    try:
        assert [c.call.from_uri for c in claims] == [CALLER]  # policy's rules get the number
        assert claims[0].call.labels["name"] == "Ann Lee"  # and the LLM the contact's fields

        js = js_bus.jetstream()

        async def stored() -> list[Any]:
            info = await js.stream_info(subjects.CALLS_STREAM)
            out = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg(subjects.CALLS_STREAM, seq)
                if subjects.call_id_of(msg.subject) == call_id:
                    out.append(msg)
            return out

        msgs: list[Any] = []

        async def both() -> bool:
            msgs[:] = await stored()
            return len(msgs) >= 2

        await wait_for_async(both)
        events = [call_pb2.CallEvent.FromString(m.data) for m in msgs]
        assert [e.WhichOneof("event") for e in events] == ["started", "ended"]
        assert (events[0].started.from_uri, events[0].started.to_uri) == ("…23", "…00")
        assert dict(events[0].started.labels) == {"purpose": "reminder", "amd": "off"}
        for m in msgs:
            for raw in RAW:
                assert raw.encode() not in m.data, raw
        rec = CallRecord(call_id=call_id)
        apply_lifecycle(rec, events[0])
        assert (rec.from_number, rec.to_number) == ("…23", "…00")
    finally:
        await host.close()


async def wait_for_async(check: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "not stored in time"
        await asyncio.sleep(0.02)

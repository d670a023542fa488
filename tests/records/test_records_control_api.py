"""The CallControl gRPC API answers ListCalls/GetCall from the durable record store: whole
calls, and the same answers after the servicer (policy) restarts."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from phoneagent.records.control_api import CallControl, serve
from phoneagent.records.store import RecordStore
from phoneagent.records.worker import RecordsSettings, RecordsWorker
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Delivery, Lane
from phoneagent.v1 import (
    call_pb2,
    control_api_pb2,
    control_api_pb2_grpc,
    control_pb2,
    media_pb2,
    policy_pb2,
)
from support.records_sample_call import meta, publish_call, publish_start

ENDED, ACTIVE = "capi-ended", "capi-active"
TOKEN = "s3cret-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


async def no_dialling(check: policy_pb2.DialCheck, call_id: str) -> policy_pb2.PolicyDecision:
    raise AssertionError("these tests place no calls")


async def until(check: Any, timeout: float = 30.0) -> None:  # check: () -> Awaitable[bool]
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def record_two_calls(bus: Bus, settings: RecordsSettings) -> None:
    """A finished call (recorded, audited, summarised) and one still in progress, folded into the
    store by a real records worker."""
    store = RecordStore(settings.db)
    worker = RecordsWorker(bus.jetstream(), store, settings)
    await worker.start()
    t0 = time.time_ns() - 60 * 10**9
    try:
        await publish_call(bus, ENDED, t0)
        await bus.publish(
            subjects.recording(ENDED),
            media_pb2.RecordingStored(
                meta=meta(ENDED), uri="/recordings/x.wav", format="wav", duration_ms=8900, size_bytes=9
            ),
        )
        await bus.publish(
            subjects.audit(ENDED),
            policy_pb2.PolicyDecision(
                meta=meta(ENDED), decision_id="d1", decision=policy_pb2.DECISION_ALLOW, subject="disclosure"
            ),
        )
        await publish_start(bus, ACTIVE, t0 + 30 * 10**9)

        async def folded() -> bool:
            done, active = await asyncio.to_thread(lambda: (store.get(ENDED), store.get(ACTIVE)))
            return bool(done and done.ended and done.recording and done.decisions and active)

        await until(folded)
        assert store.set_summary(
            ENDED,
            {
                "summary": "Booked a cleaning.",
                "intent": "book",
                "outcome": "ok",
                "fields": {"name": "", "callback_number": "", "appointment": "tue"},
            },
        )
    finally:
        await worker.stop()
        store.close()


async def start_api(bus: Bus, db: str) -> tuple[Any, RecordStore, Any]:
    store = RecordStore(db)
    server, port = await serve(CallControl(bus, store, no_dialling, token=TOKEN), "127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return server, store, channel


def check_full_record(info: control_api_pb2.CallInfo) -> None:
    assert info.call_id == ENDED and info.direction == call_pb2.DIRECTION_INBOUND
    assert info.transport == call_pb2.TRANSPORT_SIP and info.agent == "dental_clinic"
    assert info.remote_hint == "…67" and info.from_number == "…67"
    assert "5551234567" not in str(info)
    assert 0 < info.started_unix_ns < info.answered_unix_ns < info.ended_unix_ns
    assert info.end_reason == call_pb2.END_REASON_CALLER_HANGUP and info.duration_ms == 8900
    assert info.outcome == "booked"
    assert [(t.role, t.turn_id) for t in info.turns] == [("agent", 0), ("caller", 1), ("agent", 1)]
    assert "[PHONE" in info.turns[1].text
    assert info.turns[2].text == "Sure. Tuesday at nine is booked." and info.turns[2].latency_ms == 650
    assert not info.turns[0].HasField("latency_ms")
    tool = info.tools[0]
    assert (tool.name, tool.ok, tool.status, tool.duration_ms) == ("book_appointment", True, "booked", 12)
    assert [(d.decision_id, d.decision) for d in info.decisions] == [("d1", policy_pb2.DECISION_ALLOW)]
    assert info.recording.uri == "/recordings/x.wav" and info.recording.duration_ms == 8900
    assert info.summary.summary == "Booked a cleaning." and info.summary.fields["appointment"] == "tue"


async def test_records_control_api_answers_from_store_across_restart(js_bus: Bus, tmp_path: Path) -> None:
    settings = RecordsSettings(db=str(tmp_path / "records.sqlite3"), retention_days=0)
    await record_two_calls(js_bus, settings)

    for _ in range(2):  # the second round is a restarted servicer over the same store
        server, store, channel = await start_api(js_bus, settings.db)
        try:
            api = control_api_pb2_grpc.CallControlStub(channel)
            check_full_record(await api.GetCall(control_api_pb2.GetCallRequest(call_id=ENDED), metadata=AUTH))
            listed = await api.ListCalls(control_api_pb2.ListCallsRequest(), metadata=AUTH)
            assert [c.call_id for c in listed.calls] == [ACTIVE, ENDED]  # newest first
            check_full_record(listed.calls[1])
            active = await api.ListCalls(control_api_pb2.ListCallsRequest(active_only=True), metadata=AUTH)
            assert [c.call_id for c in active.calls] == [ACTIVE] and not active.calls[0].ended_unix_ns
            brief = await api.ListCalls(control_api_pb2.ListCallsRequest(omit_details=True), metadata=AUTH)
            assert not brief.calls[1].turns and brief.calls[1].outcome == "booked"
            assert brief.calls[1].summary.summary and brief.calls[1].recording.uri
        finally:
            await channel.close()
            await server.stop(grace=1.0)
            store.close()


async def test_records_control_api_errors_and_hangup(js_bus: Bus, tmp_path: Path) -> None:
    settings = RecordsSettings(db=str(tmp_path / "records.sqlite3"), retention_days=0)
    await record_two_calls(js_bus, settings)
    hangups: asyncio.Queue[control_pb2.ControlEvent] = asyncio.Queue()

    async def on_control(ev: control_pb2.ControlEvent, _: Delivery) -> None:
        await hangups.put(ev)

    await js_bus.subscribe(subjects.control(ACTIVE), control_pb2.ControlEvent, on_control, lane=Lane.CONTROL)
    server, store, channel = await start_api(js_bus, settings.db)
    api = control_api_pb2_grpc.CallControlStub(channel)

    async def code_of(call: Any) -> grpc.StatusCode:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        return err.value.code()

    try:
        get = control_api_pb2.GetCallRequest
        assert await code_of(api.GetCall(get(call_id=ENDED))) == grpc.StatusCode.UNAUTHENTICATED
        assert await code_of(api.GetCall(get(call_id="nope"), metadata=AUTH)) == grpc.StatusCode.NOT_FOUND
        assert (
            await code_of(api.GetCall(get(call_id="not a call id!"), metadata=AUTH))
            == grpc.StatusCode.INVALID_ARGUMENT
        )
        hang = control_api_pb2.HangUpRequest
        assert await code_of(api.HangUp(hang(call_id=ENDED), metadata=AUTH)) == grpc.StatusCode.NOT_FOUND
        await api.HangUp(hang(call_id=ACTIVE), metadata=AUTH)
        ev = await asyncio.wait_for(hangups.get(), 10)
        assert ev.WhichOneof("kind") == "hangup" and ev.meta.call_id == ACTIVE
    finally:
        await channel.close()
        await server.stop(grace=1.0)
        store.close()

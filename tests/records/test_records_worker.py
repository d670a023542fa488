"""Call records built from a real nats-server's streams by the durable records worker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from phoneagent.records.store import RecordStore
from phoneagent.records.worker import TOOL_TYPE_HEADER, RecordsSettings, RecordsWorker
from phoneagent.runtime import streams, subjects
from phoneagent.runtime.bus import Bus
from phoneagent.v1 import call_pb2, common_pb2, media_pb2, policy_pb2, speech_pb2, tools_pb2

CALL = "crec1"


def meta(turn: int = 0, gen: int = 0, ts: int = 0) -> common_pb2.EventMeta:
    return common_pb2.EventMeta(
        call_id=CALL, turn_id=turn, generation_id=gen, ts_unix_ns=ts or time.time_ns()
    )


@pytest.fixture
async def js_bus(fresh_nats: str) -> AsyncIterator[Bus]:
    b = Bus("records-test")
    await b.connect(fresh_nats)
    await streams.ensure(b.jetstream())
    yield b
    await b.close()


async def wait_for(store: RecordStore, check, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = await asyncio.to_thread(store.get, CALL)
        if rec is not None and check(rec):
            return rec
        await asyncio.sleep(0.05)
    raise AssertionError("record did not reach the expected state in time")


async def publish_call(bus: Bus, t0: int) -> None:
    ms = 1_000_000
    await bus.publish(
        subjects.lifecycle(CALL),
        call_pb2.CallEvent(
            started=call_pb2.CallStarted(
                meta=meta(ts=t0),
                direction=call_pb2.DIRECTION_INBOUND,
                transport=call_pb2.TRANSPORT_SIP,
                from_uri="sip:+15551234567@example.org",
                to_uri="sip:clinic@example.org",
                agent="dental_clinic",
            )
        ),
    )
    await bus.publish(
        subjects.lifecycle(CALL),
        call_pb2.CallEvent(answered=call_pb2.CallAnswered(meta=meta(ts=t0 + 100 * ms))),
    )
    await bus.publish(
        subjects.say(CALL), speech_pb2.AgentText(meta=meta(0, 1, t0 + 200 * ms), text="Hello, dental clinic.")
    )
    await bus.publish(
        subjects.transcript(CALL),
        speech_pb2.Transcript(
            meta=meta(1),
            final=True,
            text="Book me in, my number is 555 123 4567",
            speech_end_unix_ns=t0 + 2000 * ms,
            emitted_unix_ns=t0 + 2200 * ms,
        ),
    )
    await bus.publish(subjects.say(CALL), speech_pb2.AgentText(meta=meta(1, 2, t0 + 2650 * ms), text="Sure."))
    await bus.publish(
        subjects.say(CALL),
        speech_pb2.AgentText(
            meta=meta(1, 2, t0 + 2700 * ms), sentence_seq=1, text="Tuesday at nine is booked.", final=True
        ),
    )
    await bus.publish(
        subjects.tool(CALL),
        tools_pb2.ToolCall(
            meta=meta(1, 2),
            tool_call_id="t1",
            name="book_appointment",
            arguments_json='{"when": "tuesday 9"}',
        ),
        headers={TOOL_TYPE_HEADER: "ToolCall"},
    )
    await bus.publish(
        subjects.tool(CALL),
        tools_pb2.ToolResult(
            meta=meta(1, 2),
            tool_call_id="t1",
            name="book_appointment",
            ok=True,
            result_json='{"status": "booked"}',
            duration_ms=12,
        ),
        headers={TOOL_TYPE_HEADER: "ToolResult"},
    )
    await bus.publish(
        subjects.lifecycle(CALL),
        call_pb2.CallEvent(
            ended=call_pb2.CallEnded(
                meta=meta(ts=t0 + 9000 * ms), reason=call_pb2.END_REASON_CALLER_HANGUP, duration_ms=8900
            )
        ),
    )


@pytest.mark.xfail(
    strict=False,
    reason="known bug: about half the runs, events published while the worker is stopped are not "
    "folded in after its restart (durable pull consumer resumption; under investigation)",
)
async def test_records_complete_call_and_restart(js_bus: Bus, tmp_path: Path) -> None:
    settings = RecordsSettings(db=str(tmp_path / "records.sqlite3"), retention_days=0)
    store = RecordStore(settings.db)
    worker = RecordsWorker(js_bus.jetstream(), store, settings)
    await worker.start()
    t0 = time.time_ns()
    await publish_call(js_bus, t0)
    rec = await wait_for(store, lambda r: r.ended)
    assert rec.direction == "inbound" and rec.agent == "dental_clinic"
    assert rec.from_number == "…67" and "5551234567" not in rec.to_json()
    assert rec.end_reason == "caller_hangup" and rec.outcome == "booked"
    roles = [(t.role, t.text) for t in rec.turns]
    assert roles[0] == ("agent", "Hello, dental clinic.")
    assert roles[1][0] == "caller" and "[PHONE" in roles[1][1]
    assert roles[2] == ("agent", "Sure. Tuesday at nine is booked.")
    assert rec.turns[2].latency_ms == 650
    assert (
        rec.tools[0]["name"] == "book_appointment"
        and rec.tools[0]["ok"]
        and rec.tools[0]["status"] == "booked"
    )
    await worker.stop()
    store.close()

    # While the worker is down: the recording is stored and an opt-out is audited.
    await js_bus.publish(
        subjects.recording(CALL),
        media_pb2.RecordingStored(meta=meta(), uri=str(tmp_path / "rec.wav"), format="wav", duration_ms=8900),
    )
    await js_bus.publish(
        subjects.audit(CALL),
        policy_pb2.PolicyDecision(
            meta=meta(),
            decision_id="d1",
            decision=policy_pb2.DECISION_ALLOW,
            subject="opt_out",
            rule="opt_out",
        ),
    )
    store = RecordStore(settings.db)
    worker = RecordsWorker(js_bus.jetstream(), store, settings)
    await worker.start()
    try:
        rec = await wait_for(store, lambda r: bool(r.recording) and bool(r.decisions))
        assert rec.recording["uri"].endswith("rec.wav") and rec.outcome == "opted_out"
        assert len(rec.turns) == 3  # nothing applied twice after the restart
        assert [s.call_id for s in store.list(limit=5)] == [CALL]
    finally:
        await worker.stop()
        store.close()


def test_records_purge_deletes_old_records_and_local_recordings(tmp_path: Path) -> None:
    from phoneagent.records.builder import CallRecord

    wav = tmp_path / "old.wav"
    wav.write_bytes(b"RIFF")
    store = RecordStore(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    now = time.time_ns()
    old = CallRecord(call_id="old", started_unix_ns=now - 40 * 86400 * 10**9, recording={"uri": str(wav)})
    store.put(old)
    store.put(CallRecord(call_id="new", started_unix_ns=now))
    assert store.purge(30, now) == 1
    assert store.get("old") is None and store.get("new") is not None and not wav.exists()
    store.close()

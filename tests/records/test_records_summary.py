"""Post-call summaries over a real nats-server: the records side asks on pa.v1.llm.summarize,
an llm responder (the real ``summarize`` over a replaying engine, or the real 0.5B model) answers,
and the summary lands on the stored record."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from phoneagent.llm.engines.base import Delta
from phoneagent.records.builder import CallRecord, Turn
from phoneagent.records.store import RecordStore
from phoneagent.records.summary import SUMMARY_SCHEMA, SummaryRequester, parse_summary, summarize
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Delivery
from phoneagent.runtime.errors import InvalidArgument, Unavailable
from phoneagent.v1 import records_pb2

ANSWER = {
    "summary": "Caller booked a cleaning for Tuesday at 10.",
    "intent": "book cleaning",
    "outcome": "booked",
    "fields": {"name": "Maria", "callback_number": "", "appointment": "Tuesday 10:00"},
}


class Replay:
    """An engine writing one fixed completion per request, and noting what it was asked."""

    name = "replay"

    def __init__(self, *texts: str) -> None:
        self.texts = list(texts)
        self.asked: list[dict[str, Any]] = []

    async def abort(self, request_id: str) -> None: ...

    async def stream(self, messages, *, request_id, max_tokens, temperature, tools=None, json_schema=None):  # type: ignore[no-untyped-def]
        self.asked.append({"messages": messages, "max_tokens": max_tokens, "json_schema": json_schema})
        text = self.texts.pop(0)
        for i in range(0, len(text), 9):
            yield Delta(text=text[i : i + 9])
        yield Delta(finish_reason="stop")


@pytest.fixture
async def llm_bus(nats_url: str) -> AsyncIterator[Bus]:
    b = Bus("summary-llm")
    await b.connect(nats_url)
    yield b
    await b.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RecordStore]:
    s = RecordStore(str(tmp_path / "records.sqlite3"))
    yield s
    s.close()


def ended_record(call_id: str) -> CallRecord:
    rec = CallRecord(call_id=call_id, agent="dental_clinic", ended_unix_ns=time.time_ns())
    lines = [
        ("caller", "Hi, this is Maria, I'd like a cleaning next Tuesday at 10."),
        ("agent", "You're booked for a cleaning on Tuesday at 10:00. Anything else?"),
        ("caller", "No, thanks, bye."),
    ]
    for i, (role, text) in enumerate(lines):
        rec.turns.append(Turn(role=role, turn_id=i // 2 + 1, text=text, ts_unix_ns=time.time_ns()))
    return rec


async def serve_llm(bus: Bus, engine: Any, fail_first: int = 0) -> list[str]:
    seen: list[str] = []

    async def respond(req: records_pb2.SummaryRequest, _: Delivery) -> records_pb2.CallSummary:
        seen.append(req.transcript)
        if len(seen) <= fail_first:
            from phoneagent.records.summary import error_reply

            return error_reply(req.call_id, Unavailable("engine busy"))
        return await summarize(engine, req, max_tokens=160)

    await bus.serve(subjects.llm_summarize(), records_pb2.SummaryRequest, respond, queue_group="llm")
    return seen


async def test_summary_round_trip_stored_on_record(bus: Bus, llm_bus: Bus, store: RecordStore) -> None:
    engine = Replay(json.dumps(ANSWER))
    seen = await serve_llm(llm_bus, engine)
    rec = ended_record("sum1")
    store.put(rec)
    req = SummaryRequester(bus, store, timeout_s=5.0)
    await req.on_events(rec, ["call.started"])  # not the end of the call: nothing asked
    await req.on_events(rec, ["call.ended"])
    await asyncio.wait_for(req.finished.wait(), 10)
    assert seen and seen[0].startswith("caller: Hi, this is Maria")
    assert engine.asked[0]["json_schema"] == SUMMARY_SCHEMA and engine.asked[0]["max_tokens"] == 160
    store.put(rec)  # a late event rewrites the record body: the summary column stays
    got = store.get("sum1")
    assert got is not None and got.summary == ANSWER
    assert req.stored == 1


async def test_summary_retried_after_llm_failure(bus: Bus, llm_bus: Bus, store: RecordStore) -> None:
    seen = await serve_llm(llm_bus, Replay(json.dumps(ANSWER)), fail_first=1)
    rec = ended_record("sum2")
    store.put(rec)
    req = SummaryRequester(bus, store, timeout_s=5.0, base_delay_s=0.05)
    await req.on_events(rec, ["call.ended"])
    await asyncio.wait_for(req.finished.wait(), 10)
    assert len(seen) == 2
    got = store.get("sum2")
    assert got is not None and got.summary["outcome"] == "booked"


async def test_unparseable_model_output_is_an_error_reply() -> None:
    reply = await summarize(
        Replay("not json at all"), records_pb2.SummaryRequest(call_id="x", transcript="caller: hi")
    )
    assert reply.HasField("error") and not reply.summary
    empty = await summarize(Replay(), records_pb2.SummaryRequest(call_id="x", transcript="  "))
    assert empty.HasField("error")
    with pytest.raises(InvalidArgument):
        parse_summary('{"intent": "x"}')
    assert parse_summary('{"summary": " ok ", "fields": {"name": "A"}}')["fields"] == {
        "name": "A",
        "callback_number": "",
        "appointment": "",
    }


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not built")
async def test_real_model_summary() -> None:
    from phoneagent.llm.engines.base import create_engine

    engine = create_engine("llama_cpp", model="qwen-0.5b", n_threads=1, n_threads_batch=2, n_ctx=2048, seed=7)
    await asyncio.to_thread(engine.load)
    try:
        text = "\n".join(f"{t.role}: {t.text}" for t in ended_record("real").turns)
        reply = await summarize(
            engine, records_pb2.SummaryRequest(call_id="real", transcript=text), max_tokens=160
        )
    finally:
        await engine.close()
    assert not reply.HasField("error"), reply.error.message
    assert reply.summary and set(reply.fields) == {"name", "callback_number", "appointment"}
    assert "cleaning" in (reply.summary + reply.intent).lower()

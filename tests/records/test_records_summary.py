"""Post-call summaries through the PA_WORK JetStream work queue, over a real nats-server: the
records side queues a job on call.ended, an llm worker (the real ``summarize`` over a replaying
engine behind the real live-first lane, or the real 0.5B model) takes it from the durable
consumer ``llm-summaries``, and the result comes back through ``records-summaries`` onto the
stored record. Busy engines, stopped workers, duplicate and malformed jobs are covered."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from phoneagent.llm.engines.base import Delta
from phoneagent.llm.priority import LiveFirst
from phoneagent.llm.summaries import SUMMARY_SCHEMA, SummaryWorker, parse_summary, summarize
from phoneagent.records.builder import CallRecord, Turn
from phoneagent.records.store import RecordStore
from phoneagent.records.summary import SummaryRequester
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus
from phoneagent.runtime.errors import InvalidArgument
from phoneagent.v1 import records_pb2
from support.common import wait_for

ANSWER = {
    "summary": "Caller booked a cleaning for Tuesday at 10.",
    "intent": "book cleaning",
    "outcome": "booked",
    "fields": {"name": "Maria", "callback_number": "", "appointment": "Tuesday 10:00"},
}


class Replay:
    """An engine writing one fixed completion per request, and noting what it was asked.
    Requests whose id starts with ``live`` stand for a caller's turn: they stream until
    ``live_done`` is set. ``hang`` makes summary generations start and never finish."""

    name = "replay"

    def __init__(self, *texts: str, hang: bool = False, pace_s: float = 0.0) -> None:
        self.texts = list(texts)
        self.asked: list[dict[str, Any]] = []
        self.hang = hang
        self.pace_s = pace_s
        self.generating = asyncio.Event()
        self.live_done = asyncio.Event()

    def load(self) -> None: ...

    async def close(self) -> None: ...

    async def abort(self, request_id: str) -> None: ...

    async def stream(self, messages, *, request_id, max_tokens, temperature, tools=None, json_schema=None):  # type: ignore[no-untyped-def]
        if str(request_id).startswith("live"):
            yield Delta(text="Sure, ")
            await self.live_done.wait()
            yield Delta(finish_reason="stop")
            return
        self.asked.append({"messages": messages, "max_tokens": max_tokens, "json_schema": json_schema})
        self.generating.set()
        if self.hang:
            await asyncio.Event().wait()
        text = self.texts.pop(0)
        for i in range(0, len(text), 9):
            if self.pace_s:
                await asyncio.sleep(self.pace_s)
            yield Delta(text=text[i : i + 9])
        yield Delta(finish_reason="stop")


@pytest.fixture
async def llm_bus(fresh_nats: str) -> AsyncIterator[Bus]:
    b = Bus("summary-llm")
    await b.connect(fresh_nats)
    yield b
    await b.close()


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


@asynccontextmanager
async def requester(bus: Bus, store: RecordStore) -> AsyncIterator[SummaryRequester]:
    req = SummaryRequester(bus, store, fetch_timeout_s=0.2)
    await req.start()
    try:
        yield req
    finally:
        await req.stop()


@asynccontextmanager
async def worker(bus: Bus, engine: Any, **kw: Any) -> AsyncIterator[SummaryWorker]:
    w = SummaryWorker(bus, LiveFirst(engine, quiet_s=0.05), max_tokens=160, fetch_timeout_s=0.2, **kw)
    await w.start()
    try:
        yield w
    finally:
        await w.stop(timeout=1.0)


async def backlog(bus: Bus, consumer: str) -> tuple[int, int]:
    """(jobs not yet delivered, jobs delivered and not yet acknowledged) of a PA_WORK consumer."""
    info = await bus.jetstream().consumer_info(subjects.WORK_STREAM, consumer)
    return info.num_pending, info.num_ack_pending


async def drained(bus: Bus) -> None:
    """Both consumers have nothing left and the work queue holds no message."""

    async def state() -> tuple[tuple[int, int], tuple[int, int], int]:
        jobs = await backlog(bus, subjects.LLM_SUMMARIES_CONSUMER)
        results = await backlog(bus, subjects.RECORDS_SUMMARIES_CONSUMER)
        stream = await bus.jetstream().stream_info(subjects.WORK_STREAM)
        return jobs, results, stream.state.messages

    for _ in range(100):
        if await state() == ((0, 0), (0, 0), 0):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"work queue not drained: {await state()}")


async def test_summary_round_trip_stored_on_record(js_bus: Bus, llm_bus: Bus, store: RecordStore) -> None:
    engine = Replay(json.dumps(ANSWER))
    rec = ended_record("sum1")
    store.put(rec)
    async with requester(js_bus, store) as req, worker(llm_bus, engine) as w:
        await req.on_events(rec, ["call.started"])  # not the end of the call: nothing queued
        assert await backlog(js_bus, subjects.LLM_SUMMARIES_CONSUMER) == (0, 0)
        await req.on_events(rec, ["call.ended"])
        await asyncio.wait_for(req.finished.wait(), 10)
        await drained(js_bus)
    asked = engine.asked[0]
    assert asked["messages"][-1]["content"].startswith("Transcript:\ncaller: Hi, this is Maria")
    assert asked["json_schema"] == SUMMARY_SCHEMA and asked["max_tokens"] == 160
    store.put(rec)  # a late event rewrites the record body: the summary column stays
    got = store.get("sum1")
    assert got is not None and got.summary == ANSWER
    assert (req.queued, req.stored, w.done) == (1, 1, 1)


async def test_busy_engine_defers_the_job_in_the_backlog_until_calls_pause(
    js_bus: Bus, llm_bus: Bus, store: RecordStore
) -> None:
    engine = Replay(json.dumps(ANSWER))
    rec = ended_record("sum2")
    store.put(rec)
    async with requester(js_bus, store) as req, worker(llm_bus, engine, wait_s=0.2, backoff_s=(0.3,)) as w:
        lanes = w.engine
        chunks = lanes.stream([], request_id="live-turn", max_tokens=8, temperature=0.0)
        assert (await chunks.__anext__()).text == "Sure, "  # a caller's turn holds the engine
        await req.on_events(rec, ["call.ended"])
        await wait_for(lambda: w.deferred >= 2, timeout=10)
        pending, unacked = await backlog(js_bus, subjects.LLM_SUMMARIES_CONSUMER)
        assert pending + unacked == 1  # still queued: the backlog KEDA's trigger sees
        assert not engine.asked and req.stored == 0
        engine.live_done.set()
        assert [d async for d in chunks][-1].finish_reason == "stop"
        await asyncio.wait_for(req.finished.wait(), 10)
        await drained(js_bus)
    got = store.get("sum2")
    assert got is not None and got.summary["outcome"] == "booked"
    assert len(engine.asked) == 1 and w.done == 1


async def test_job_in_hand_goes_to_another_worker_when_one_stops(
    js_bus: Bus, llm_bus: Bus, fresh_nats: str, store: RecordStore
) -> None:
    stuck = Replay(hang=True)
    rec = ended_record("sum3")
    store.put(rec)
    other_bus = Bus("summary-llm-2")
    await other_bus.connect(fresh_nats)
    try:
        async with requester(js_bus, store) as req:
            first = SummaryWorker(llm_bus, LiveFirst(stuck, quiet_s=0.05), fetch_timeout_s=0.2)
            await first.start()
            await req.on_events(rec, ["call.ended"])
            await asyncio.wait_for(stuck.generating.wait(), 10)  # mid-generation on the first worker
            await first.stop(timeout=0.2)  # SIGTERM: no more fetches, the job in hand goes back
            assert first.done == 0
            healthy = Replay(json.dumps(ANSWER))
            async with worker(other_bus, healthy) as second:
                await asyncio.wait_for(req.finished.wait(), 10)
                await drained(js_bus)
            assert second.done == 1 and len(healthy.asked) == 1
    finally:
        await other_bus.close()
    got = store.get("sum3")
    assert got is not None and got.summary == ANSWER


async def test_duplicate_job_for_a_call_is_dropped_by_the_stream(
    js_bus: Bus, llm_bus: Bus, fresh_nats: str, store: RecordStore
) -> None:
    engine = Replay(json.dumps(ANSWER), json.dumps(ANSWER))
    rec = ended_record("sum4")
    store.put(rec)
    replica_bus = Bus("records-2")
    await replica_bus.connect(fresh_nats)
    try:
        async with requester(js_bus, store) as one, requester(replica_bus, store) as two:
            await one.on_events(rec, ["call.ended"])
            await one.on_events(rec, ["call.ended"])  # the records event redelivered
            await two.on_events(rec, ["call.ended"])  # another records replica
            assert await backlog(js_bus, subjects.LLM_SUMMARIES_CONSUMER) == (1, 0)
            assert one.queued + two.queued == 1
            async with worker(llm_bus, engine) as w:
                await wait_for(lambda: one.stored + two.stored == 1, timeout=10)
                await drained(js_bus)
            assert w.done == 1 and len(engine.asked) == 1
    finally:
        await replica_bus.close()


async def test_malformed_jobs_and_results_do_not_stop_the_workers(
    js_bus: Bus, llm_bus: Bus, store: RecordStore
) -> None:
    engine = Replay(json.dumps(ANSWER))
    rec = ended_record("sum5")
    store.put(rec)
    js = js_bus.jetstream()
    async with requester(js_bus, store) as req, worker(llm_bus, engine) as w:
        await js.publish(subjects.WORK_SUMMARIZE, b"\xff\xfe garbage \x00\x01")
        bad_id = records_pb2.SummaryRequest(call_id="no spaces allowed", transcript="caller: hi")
        await js.publish(subjects.WORK_SUMMARIZE, bad_id.SerializeToString())
        await js.publish(subjects.WORK_SUMMARY_RESULTS, b"\x0a\xff\xff\xff\xff\xff")
        await wait_for(lambda: w.rejected == 2 and req.rejected == 1, timeout=10)
        await req.on_events(rec, ["call.ended"])  # both sides still serve
        await asyncio.wait_for(req.finished.wait(), 10)
        await drained(js_bus)
        assert w.healthy and req.healthy
    got = store.get("sum5")
    assert got is not None and got.summary == ANSWER


async def test_unusable_model_answer_comes_back_as_an_error_result(
    js_bus: Bus, llm_bus: Bus, store: RecordStore
) -> None:
    rec = ended_record("sum6")
    store.put(rec)
    async with requester(js_bus, store) as req, worker(llm_bus, Replay("not json at all")) as w:
        await req.on_events(rec, ["call.ended"])
        await asyncio.wait_for(req.finished.wait(), 10)  # not retried: the same input fails again
        await drained(js_bus)
    assert (req.failed, req.stored, w.done, w.deferred) == (1, 0, 1, 0)
    got = store.get("sum6")
    assert got is not None and not got.summary


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


async def test_idle_consumers_wait_quietly_and_end_when_the_bus_closes(
    fresh_nats: str, store: RecordStore, caplog: pytest.LogCaptureFixture
) -> None:
    """An empty queue is the normal state: no fetch failure is logged, no back-off is taken;
    a bus closed under the consumers (shutdown) ends them without warnings either."""
    from phoneagent.runtime import streams

    bus = Bus("records-idle")
    await bus.connect(fresh_nats)
    await streams.ensure(bus.jetstream())
    req = SummaryRequester(bus, store, fetch_timeout_s=0.05)
    w = SummaryWorker(bus, LiveFirst(Replay()), fetch_timeout_s=0.05)
    await req.start()
    await w.start()
    caplog.set_level("INFO")

    def warned() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "summar" in r.name]

    await asyncio.sleep(1.0)  # about 20 empty pulls each
    assert not warned()
    await bus.close()
    await asyncio.sleep(0.3)
    await w.stop(timeout=1.0)
    await req.stop()
    assert not warned()
    assert "summary results consumer ends: bus closed" in caplog.text


async def test_a_pull_that_times_out_either_way_is_an_empty_pull() -> None:
    """nats-py's batch fetch raises nats.errors.TimeoutError, or a plain asyncio.TimeoutError
    when its no-wait probe used up the deadline (seen under load): both mean "no job yet"."""
    import nats.errors
    from phoneagent.runtime.summary_work import fetch

    class Pull:
        def __init__(self, exc: BaseException) -> None:
            self.exc = exc

        async def fetch(self, batch: int, timeout: float) -> list[Any]:
            raise self.exc

    assert await fetch(Pull(nats.errors.TimeoutError()), 16, 0.1) == []
    assert await fetch(Pull(TimeoutError()), 16, 0.1) == []  # what asyncio.TimeoutError is
    with pytest.raises(nats.errors.ConnectionClosedError):
        await fetch(Pull(nats.errors.ConnectionClosedError()), 16, 0.1)


async def test_a_summary_cut_short_by_a_live_turn_runs_again_without_a_failure_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = Replay(json.dumps(ANSWER), json.dumps(ANSWER), pace_s=0.02)
    lanes = LiveFirst(engine, quiet_s=0.05)
    job = records_pb2.SummaryRequest(call_id="pre", transcript="caller: hi")
    caplog.set_level("INFO")
    summary = asyncio.ensure_future(lanes.background(lambda e: summarize(e, job), 10.0))
    try:
        await asyncio.wait_for(engine.generating.wait(), 5)  # mid-generation
        engine.live_done.set()
        live = [d async for d in lanes.stream([], request_id="live-1", max_tokens=8, temperature=0.0)]
        result = await asyncio.wait_for(summary, 10)
    finally:
        summary.cancel()
    assert live[-1].finish_reason == "stop"
    assert not result.HasField("error") and result.summary == ANSWER["summary"]
    assert lanes.preempted == 1 and len(engine.asked) == 2  # cut short once, then run again whole
    assert "summary failed" not in caplog.text


async def test_llm_service_shutdown_hands_the_job_in_hand_back_before_its_bus_closes(
    js_bus: Bus, llm_bus: Bus, fresh_nats: str, store: RecordStore
) -> None:
    """SIGTERM on an llm replica mid-summary: within its drain timeout the job goes back to the
    queue (not stranded until the 180 s ack wait) and another replica summarizes the call."""
    import dataclasses

    from phoneagent.llm.service import LlmService
    from phoneagent.llm.settings import LlmSettings
    from phoneagent.runtime.settings import CommonSettings, load

    stuck = Replay(hang=True)
    svc = LlmService(dataclasses.replace(load(CommonSettings), drain_timeout_s=0.3), load(LlmSettings))
    svc.bus, svc.engine = llm_bus, LiveFirst(stuck, quiet_s=0.05)
    svc.summaries = SummaryWorker(llm_bus, svc.engine, fetch_timeout_s=0.2)
    await svc.summaries.start()
    rec = ended_record("sum7")
    store.put(rec)
    other_bus = Bus("summary-llm-3")
    await other_bus.connect(fresh_nats)
    try:
        async with requester(js_bus, store) as req:
            await req.on_events(rec, ["call.ended"])
            await asyncio.wait_for(stuck.generating.wait(), 10)
            await asyncio.wait_for(svc._shutdown(), 10)  # what SIGTERM runs
            assert not llm_bus.connected
            async with worker(other_bus, Replay(json.dumps(ANSWER))) as second:
                await asyncio.wait_for(req.finished.wait(), 10)
            assert second.done == 1
    finally:
        await other_bus.close()
    got = store.get("sum7")
    assert got is not None and got.summary == ANSWER


async def test_a_job_busy_on_every_delivery_ends_as_an_error_result_not_a_silent_drop(
    js_bus: Bus, llm_bus: Bus, store: RecordStore
) -> None:
    """The consumer delivers a job at most max_deliver times; on the last one the worker
    answers with an error result (the records side logs it) instead of letting it vanish."""
    engine = Replay(json.dumps(ANSWER))
    rec = ended_record("sum8")
    store.put(rec)
    async with requester(js_bus, store) as req, worker(llm_bus, engine, wait_s=0.1, backoff_s=(0.1,)) as w:
        w.max_deliver = 3  # the consumer's own limit is 8: the worker's comes first
        chunks = w.engine.stream([], request_id="live-turn", max_tokens=8, temperature=0.0)
        await chunks.__anext__()  # a caller's turn holds the engine throughout
        await req.on_events(rec, ["call.ended"])
        await asyncio.wait_for(req.finished.wait(), 10)
        await drained(js_bus)
        engine.live_done.set()
        _ = [d async for d in chunks]
    assert (w.deferred, w.done, req.failed, req.stored) == (2, 1, 1, 0)
    assert not engine.asked

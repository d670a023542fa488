"""One trace per turn across the bus: ASR final -> LLM -> policy -> TTS -> edge.

The real policy and TTS services (Piper) and the edge's call flow run in this process on the
real nats-server; ASR and LLM are played by the test with the same runtime calls those services
make (a span around the final transcript, a child span per caller turn). Spans go to an
in-memory exporter.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from phoneagent.edge.callflow import EdgeCall, EdgeCallConfig
from phoneagent.policy.service import PolicyService
from phoneagent.policy.settings import PolicySettings
from phoneagent.runtime import streams, subjects, telemetry
from phoneagent.runtime.bus import Bus, Delivery
from phoneagent.runtime.sessions import SessionHost
from phoneagent.runtime.settings import CommonSettings, load
from phoneagent.tts.service import TtsService
from phoneagent.tts.settings import TtsSettings
from phoneagent.v1 import call_pb2, common_pb2, media_pb2, speech_pb2
from support.common import wait_for
from support.edge import SilentLine

pytestmark = pytest.mark.slow


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    telemetry.setup("tracing-test", "t1")  # idempotent: the provider of this process
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    provider = trace.get_tracer_provider()
    provider.add_span_processor(processor)  # type: ignore[attr-defined]
    yield exporter
    processor.shutdown()  # stops exporting to this test's exporter


async def start_stage(svc: PolicyService | TtsService, stage: str, url: str) -> None:
    await svc.bus.connect(url)
    await streams.ensure(svc.bus.jetstream())
    await svc.setup()
    svc.sessions = SessionHost(svc.bus, stage, svc.replica, svc.new_session)
    await svc.sessions.start()


async def stop_stage(svc: PolicyService | TtsService) -> None:
    if svc.sessions is not None:
        await svc.sessions.close()
    await svc.bus.close()
    await svc.tasks.close(timeout=5.0)
    await svc.teardown()


def by_name(exported: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in exported if s.name == name]


async def test_one_trace_per_turn_from_asr_final_to_the_edge(
    fresh_nats: str, tmp_path: Path, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PA_RECORDS_DB", str(tmp_path / "records.sqlite3"))
    policy = PolicyService(
        load(CommonSettings, nats_url=fresh_nats, replica_id="policy-t"),
        load(
            PolicySettings,
            db_path=str(tmp_path / "policy.sqlite3"),
            window_start="00:00",
            window_end="23:59",
        ),
    )
    tts = TtsService(
        load(CommonSettings, nats_url=fresh_nats, replica_id="tts-t"),
        load(TtsSettings, engines=["piper"], engine="piper", prompt_dir=str(tmp_path / "prompts")),
    )
    bus = Bus("trace-test")
    await bus.connect(fresh_nats)
    call_id = subjects.new_call_id()
    edge = EdgeCall(
        bus,
        call_pb2.CallStarted(
            meta=common_pb2.EventMeta(call_id=call_id),
            direction=call_pb2.DIRECTION_INBOUND,
            from_uri="sip:+14155550134@test",
            to_uri="sip:agent@test",
        ),
        SilentLine(),
        EdgeCallConfig(stages=("policy", "tts")),
    )
    generation = 7

    async def llm(tr: speech_pb2.Transcript, d: Delivery) -> None:
        """The LLM's part: continue the trace of the final transcript, reply sentence by sentence."""
        with telemetry.span_from(d.headers, "llm.turn", call_id=call_id, turn=tr.meta.turn_id):
            for seq, text in enumerate(("We open at nine.", "We close at five.", "")):
                meta = common_pb2.EventMeta(
                    call_id=call_id, turn_id=tr.meta.turn_id, generation_id=generation
                )
                reply = speech_pb2.AgentText(meta=meta, sentence_seq=seq, text=text, final=not text)
                await bus.publish(subjects.reply(call_id), reply, trace=seq == 0)

    chunks: list[int] = []

    async def count(chunk: object, _: Delivery) -> None:
        chunks.append(1)

    try:
        await start_stage(policy, "policy", fresh_nats)
        await start_stage(tts, "tts", fresh_nats)
        await edge.start()
        await bus.subscribe(subjects.transcript(call_id), speech_pb2.Transcript, llm)
        await bus.subscribe(subjects.speech(call_id), media_pb2.SpeechChunk, count)
        # The ASR's part: one span around the final transcript, its context in the headers.
        with telemetry.tracer().start_as_current_span("asr.final") as root:
            final = speech_pb2.Transcript(
                meta=common_pb2.EventMeta(call_id=call_id, turn_id=1), final=True, text="When are you open?"
            )
            await bus.publish(subjects.transcript(call_id), final, trace=True)
        trace_id = root.get_span_context().trace_id

        await wait_for(lambda: by_name(spans.get_finished_spans(), "edge.speech"), timeout=60)
        await wait_for(lambda: len(chunks) > 3, timeout=30)  # many chunks, one span per hop
        exported = spans.get_finished_spans()
        hops = {n: by_name(exported, n) for n in ("llm.turn", "policy.say", "tts.say", "edge.speech")}
        assert {n: len(v) for n, v in hops.items()} == {
            "llm.turn": 1,
            "policy.say": 1,  # only the first sentence of the reply carries the trace
            "tts.say": 1,
            "edge.speech": 1,  # not one per chunk
        }
        assert {s.context.trace_id for v in hops.values() for s in v} == {trace_id}
        parent = root.get_span_context().span_id
        for name in ("llm.turn", "policy.say", "tts.say", "edge.speech"):  # each hop a child of the last
            span = hops[name][0]
            assert span.parent is not None and span.parent.span_id == parent, name
            parent = span.context.span_id
    finally:
        await edge.end(call_pb2.END_REASON_CALLER_HANGUP)
        await bus.close()
        await stop_stage(tts)
        await stop_stage(policy)

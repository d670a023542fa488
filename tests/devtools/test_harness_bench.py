"""The bench's time line: the LLM stamps its first token on sentence 0 of a generation, and the
bench turns the bus events of a call into the per-hop latencies it prints."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from phoneagent.devtools.harness.bench import SEED, bench_scenario, table
from phoneagent.devtools.harness.bench_turns import HOPS, POINTS, hops_ms, turn_points
from phoneagent.devtools.harness.buswatch import CallTrace
from phoneagent.devtools.harness.caller import CallResult, Utterance
from phoneagent.llm.dialog import Dialog
from phoneagent.llm.dialog_state import DialogState, Sentence
from phoneagent.llm.engines.base import Delta
from phoneagent.v1 import common_pb2, media_pb2, speech_pb2

MS = 1_000_000


class SlowStartEngine:
    """Waits ``delay`` before its first piece, then streams the pieces at once."""

    name = "slow-start"

    def __init__(self, pieces: list[str], delay: float) -> None:
        self.pieces = pieces
        self.delay = delay

    def load(self) -> None: ...

    async def close(self) -> None: ...

    async def abort(self, request_id: str) -> None: ...

    async def stream(self, messages: list[dict[str, Any]], **_: Any) -> AsyncIterator[Delta]:
        await asyncio.sleep(self.delay)
        for piece in self.pieces:
            yield Delta(text=piece)
        yield Delta(finish_reason="stop", completion_tokens=len(self.pieces))


async def test_first_token_time_rides_on_sentence_zero_only() -> None:
    said: list[Sentence] = []
    published_at: list[int] = []
    done = asyncio.Event()

    async def publish(s: Sentence) -> None:
        said.append(s)
        published_at.append(time.time_ns())
        if s.final and s.turn == 1:
            done.set()

    async def save(_: DialogState) -> None: ...

    engine = SlowStartEngine(["We open at nine on Monday. ", "We close at five in the evening."], 0.2)
    dialog = Dialog(
        "c1", engine, system_prompt=lambda: "sys", greeting="Hi, I am an AI.", publish=publish, save=save
    )
    await dialog.greet()
    asked = time.time_ns()
    await dialog.on_user_turn(1, "When do you open on Monday?")
    await asyncio.wait_for(done.wait(), 5)
    await dialog.close()

    greeting = [s for s in said if s.turn == 0]
    assert greeting[0].first_token_unix_ns == 0  # no model ran for the greeting
    reply = [s for s in said if s.turn == 1 and s.text]
    assert len(reply) == 2
    first = reply[0].first_token_unix_ns
    assert asked + 150 * MS <= first <= published_at[said.index(reply[0])]
    assert all(s.first_token_unix_ns == 0 for s in said if s.turn == 1 and s is not reply[0])


def _meta(turn: int, ts: int, gen: int = 2) -> common_pb2.EventMeta:
    return common_pb2.EventMeta(call_id="c1", turn_id=turn, generation_id=gen, ts_unix_ns=ts)


def test_turn_points_and_hops_from_the_trace() -> None:
    t0 = 1_700_000_000_000_000_000
    result = CallResult(bench_scenario(1), "u1")
    result.utterances = [
        Utterance("Hi, sorry", 0.0, 1.0, t0 - 5000 * MS, barge_in=True, barge_stop_ms=180.0),
        Utterance("What are your opening hours?", 2.0, 3.0, t0, reply_latency_ms=1500.0),
    ]
    trace = CallTrace(call_id="c1")
    trace.finals.append(
        speech_pb2.Transcript(
            meta=_meta(3, t0 + 400 * MS),
            final=True,
            speech_end_unix_ns=t0 + 100 * MS,
            emitted_unix_ns=t0 + 400 * MS,
            endpoint_unix_ns=t0 + 250 * MS,
            compute_ms=120,
        )
    )
    trace.replies += [
        speech_pb2.AgentText(meta=_meta(1, t0 - 4000 * MS, 1), sentence_seq=0, text="old turn"),
        speech_pb2.AgentText(
            meta=_meta(3, t0 + 900 * MS),
            sentence_seq=0,
            text="We open at nine.",
            first_token_unix_ns=t0 + 700 * MS,
            request_unix_ns=t0 + 420 * MS,
        ),
    ]
    trace.first_chunks.append(media_pb2.SpeechChunk(meta=_meta(3, t0 + 1200 * MS), sequence=0, synth_ms=230))

    (point,) = turn_points(result, trace)
    assert tuple(point)[: len(POINTS)] == POINTS
    hops = hops_ms(point)
    assert tuple(hops) == HOPS
    assert hops == {
        "caller_stop->speech_end": 100.0,
        "speech_end->asr_final": 300.0,
        "asr_final->llm_first_token": 300.0,
        "llm_first_token->first_sentence": 200.0,
        "first_sentence->tts_first_audio": 300.0,
        "tts_first_audio->first_rtp": 300.0,
        "mouth_to_ear": 1500.0,
        "end_of_speech_wait": 250.0,
        # ASR 120 + dialog 900 - 420 = 480 + TTS 230
        "model_compute": 830.0,
        # end of speech declared at 250, first RTP at 1500: 1250 ms, of which 830 compute
        "overhead": 420.0,
    }


def test_reply_without_first_token_leaves_only_those_hops_empty() -> None:
    t0 = 1_700_000_000_000_000_000
    result = CallResult(bench_scenario(1), "u1")
    result.utterances = [Utterance("Hello", 0.0, 1.0, t0, reply_latency_ms=900.0)]
    trace = CallTrace(call_id="c1")
    trace.finals.append(speech_pb2.Transcript(meta=_meta(1, t0), final=True, emitted_unix_ns=t0 + 200 * MS))
    trace.replies.append(speech_pb2.AgentText(meta=_meta(1, t0 + 300 * MS), sentence_seq=0, text="Hi."))
    hops = hops_ms(turn_points(result, trace)[0])
    assert hops["asr_final->llm_first_token"] is None
    assert hops["llm_first_token->first_sentence"] is None
    assert hops["caller_stop->speech_end"] is None  # the transcript carried no end of speech
    assert hops["mouth_to_ear"] == 900.0
    assert hops["model_compute"] is None and hops["overhead"] is None  # no compute times reported


def test_table_lists_every_hop_in_order_for_each_kind_of_turn() -> None:
    group = {
        "turns": 4,
        "hops_ms": {h: {"n": 4, "p50": 100.0, "p95": 250.0} for h in HOPS},
        "prompt_tokens_evaluated": {"n": 4, "p50": 42.0, "p95": 480.0},
    }
    level = {
        "concurrency": 2,
        "calls_failed": 0,
        "by_kind": {
            "model": group,
            "code": group | {"prompt_tokens_evaluated": {"n": 0, "p50": None, "p95": None}},
        },
        "barge_in_stop_ms": {"n": 0, "p50": None, "p95": None},
    }
    report = {
        "machine": {"cpu": "test cpu", "cores": 2, "python": "3.11"},
        "turns": 2,
        "seed": SEED,
        "sweep": [level],
    }
    text = table(report)
    model, code = text.split("code-answered turns")
    for part in (model, code):
        rows = [line.split()[0] for line in part.splitlines() if line.startswith("    ") and "ms" not in line]
        rows = [r for r in rows if r != "new"]
        assert rows[: len(HOPS)] == list(HOPS)
    assert "model turns: the model wrote the reply (4)" in model
    assert "new prompt tokens per turn: median 42, p95 480" in model
    assert "prompt tokens" not in code  # no model ran for these
    assert "asr_final->llm_first_token" in text and "barge-in stop" in text
    assert f"seed {SEED}" in text

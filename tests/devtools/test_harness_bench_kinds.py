"""The bench groups turns by how they were answered: each turn's tag is read from its reply on
the bus, and the hops, mouth-to-ear and prompt tokens are summarised per kind, never over both."""

from __future__ import annotations

import json
from typing import Any

from phoneagent.devtools.harness.bench import HOURS_CONTROL, QUESTIONS, bench_scenario, summarise_level
from phoneagent.devtools.harness.bench_turns import HOPS, by_kind, call_turns, level_table
from phoneagent.devtools.harness.buswatch import CallTrace
from phoneagent.devtools.harness.caller import CallResult, Utterance
from phoneagent.devtools.harness.scenario import Say
from phoneagent.llm.domain.calendar_facts import asks_for_hours
from phoneagent.v1 import common_pb2, speech_pb2

MS = 1_000_000
T0 = 1_700_000_000_000_000_000


def _meta(turn: int, gen: int, ts: int) -> common_pb2.EventMeta:
    return common_pb2.EventMeta(call_id="c1", turn_id=turn, generation_id=gen, ts_unix_ns=ts)


def _turn(
    trace: CallTrace,
    turn: int,
    at: int,
    sentences: list[tuple[str, int]],
    end: int | None,
    tokens: int | None,
) -> None:
    """A caller turn ending at ``at`` and its reply (generation = turn + 1): ``sentences`` are
    (text, answered_by); ``end`` the final sentence's tag (None: the reply never ended)."""
    trace.finals.append(
        speech_pb2.Transcript(meta=_meta(turn, 0, at + 300 * MS), final=True, emitted_unix_ns=at + 300 * MS)
    )
    for seq, (text, tag) in enumerate(sentences):
        trace.replies.append(
            speech_pb2.AgentText(
                meta=_meta(turn, turn + 1, at + (600 + seq) * MS),
                sentence_seq=seq,
                text=text,
                answered_by=tag,
            )
        )
    if end is not None:
        last = speech_pb2.AgentText(
            meta=_meta(turn, turn + 1, at + 900 * MS),
            sentence_seq=len(sentences),
            final=True,
            answered_by=end,
        )
        if tokens is not None:
            last.prompt_tokens_evaluated = tokens
        trace.replies.append(last)


def _call() -> tuple[CallResult, CallTrace]:
    result = CallResult(bench_scenario(4), "u1")
    result.utterances = [
        Utterance("Hi, sorry", 0.0, 1.0, T0 - 9000 * MS, barge_in=True, barge_stop_ms=150.0),
        Utterance("What should I bring?", 2.0, 3.0, T0, reply_latency_ms=4000.0),
        Utterance(HOURS_CONTROL, 8.0, 9.0, T0 + 8000 * MS, reply_latency_ms=900.0),
        Utterance("Book Tuesday at ten", 14.0, 15.0, T0 + 14000 * MS, reply_latency_ms=2500.0),
        Utterance("Do you take Medicaid?", 20.0, 21.0, T0 + 20000 * MS, reply_latency_ms=None),
    ]
    trace = CallTrace(call_id="c1")
    model, tool, code = speech_pb2.ANSWERED_MODEL, speech_pb2.ANSWERED_MODEL_TOOL, speech_pb2.ANSWERED_CODE
    _turn(trace, 1, T0, [("Bring your ID.", model)], model, 38)
    _turn(trace, 2, T0 + 8000 * MS, [("We open at eight.", code)], code, None)
    _turn(trace, 3, T0 + 14000 * MS, [("One moment while I check.", code), ("Booked.", tool)], tool, 450)
    _turn(trace, 4, T0 + 20000 * MS, [("No, we", model)], None, None)  # cut off: no final sentence
    return result, trace


def test_each_turn_carries_how_it_was_answered_and_its_prompt_tokens() -> None:
    turns = call_turns(*_call())
    assert [(t["question"], t["answered_by"], t["prompt_tokens_evaluated"]) for t in turns] == [
        ("What should I bring?", "model", 38),
        (HOURS_CONTROL, "code", None),
        ("Book Tuesday at ten", "model_tool", 450),
        ("Do you take Medicaid?", "model", None),  # the first sentence's tag when there is no end
    ]
    assert turns[2]["first_sentence_answered_by"] == "code"  # the filler, not the answer
    assert turns[0]["hops_ms"]["mouth_to_ear"] == 4000.0 and turns[1]["hops_ms"]["mouth_to_ear"] == 900.0


def test_a_turn_without_a_reply_or_a_tag_is_untagged() -> None:
    result = CallResult(bench_scenario(1), "u1")
    result.utterances = [Utterance("Hello?", 0.0, 1.0, T0, reply_latency_ms=None)]
    assert call_turns(result, CallTrace(call_id="c1"))[0]["answered_by"] == "untagged"
    trace = CallTrace(call_id="c1")
    _turn(trace, 1, T0, [("Hi.", speech_pb2.ANSWERED_UNSPECIFIED)], speech_pb2.ANSWERED_UNSPECIFIED, None)
    assert call_turns(result, trace)[0]["answered_by"] == "untagged"


def _synthetic(kind: str, mouth_to_ear: float, tokens: int | None) -> dict[str, Any]:
    hops: dict[str, float | None] = dict.fromkeys(HOPS)
    hops["mouth_to_ear"] = mouth_to_ear
    return {"answered_by": kind, "prompt_tokens_evaluated": tokens, "hops_ms": hops}


def test_model_and_code_turns_are_summarised_apart() -> None:
    turns = [
        _synthetic("code", 800.0, None),
        _synthetic("model", 9000.0, 500),
        _synthetic("code", 1000.0, None),
        _synthetic("model", 7000.0, 400),
        _synthetic("model_tool", 12000.0, 900),
        _synthetic("model", 11000.0, 600),
    ]
    kinds = by_kind(turns)
    assert list(kinds) == ["model", "model_tool", "code"]  # the report's order; absent kinds left out
    assert kinds["model"]["turns"] == 3
    assert kinds["model"]["hops_ms"]["mouth_to_ear"] == {"n": 3, "p50": 9000.0, "p95": 10800.0}
    assert kinds["code"]["hops_ms"]["mouth_to_ear"] == {"n": 2, "p50": 900.0, "p95": 990.0}
    assert kinds["model_tool"]["hops_ms"]["mouth_to_ear"]["p50"] == 12000.0
    assert kinds["model"]["prompt_tokens_evaluated"] == {"n": 3, "p50": 500.0, "p95": 590.0}
    assert kinds["code"]["prompt_tokens_evaluated"] == {"n": 0, "p50": None, "p95": None}
    assert kinds["model"]["hops_ms"]["asr_final->llm_first_token"]["n"] == 0  # missing hops are not zeros


def test_the_questions_exercise_the_model_with_one_hours_control() -> None:
    asked = [s.text for s in bench_scenario(len(QUESTIONS)).steps if isinstance(s, Say)]
    assert asked == list(QUESTIONS) and asked.count(HOURS_CONTROL) == 1
    assert asks_for_hours(HOURS_CONTROL)
    needs_the_model = [q for q in asked if q != HOURS_CONTROL]
    assert len(needs_the_model) > len(asked) / 2
    assert any(" and " in q and "?" in q for q in needs_the_model)  # a question plus a second one
    assert any("book" in q.lower() for q in needs_the_model)


def test_a_level_keeps_every_turn_with_its_tag_and_summarises_per_kind() -> None:
    result, trace = _call()
    level = summarise_level(2, [result, TimeoutError("call failed")], {"u1": trace})
    assert level["calls_failed"] == 1
    assert [(t["call"], t["answered_by"]) for t in level["turns"]] == [
        ("u1", "model"),
        ("u1", "code"),
        ("u1", "model_tool"),
        ("u1", "model"),
    ]
    kinds = level["by_kind"]
    assert {k: v["turns"] for k, v in kinds.items()} == {"model": 2, "model_tool": 1, "code": 1}
    assert kinds["model"]["hops_ms"]["mouth_to_ear"] == {"n": 1, "p50": 4000.0, "p95": 4000.0}
    assert kinds["code"]["hops_ms"]["mouth_to_ear"] == {"n": 1, "p50": 900.0, "p95": 900.0}
    assert kinds["model"]["prompt_tokens_evaluated"] == {"n": 1, "p50": 38.0, "p95": 38.0}
    assert level["barge_in_stop_ms"]["p50"] == 150.0
    json.dumps(level)  # the report is written as JSON


def test_preemptive_replies_thrown_away_and_the_final_to_first_token_hop_are_reported() -> None:
    """Turn 1's preflight is confirmed by its final (the first token came 120 ms before the
    final); turn 3's caller went on after the preflight, and a third preflight had no final."""
    result, trace = _call()
    finals = {f.meta.turn_id: f for f in trace.finals}
    finals[1].text, finals[3].text = "What should I bring?", "Book Tuesday at ten."
    ahead = finals[1].emitted_unix_ns - 120 * MS
    trace.replies[0].first_token_unix_ns = ahead
    booking = next(r for r in trace.replies if r.meta.turn_id == 3)
    booking.first_token_unix_ns = finals[3].emitted_unix_ns + 700 * MS
    trace.preflights += [
        speech_pb2.Transcript(meta=_meta(1, 0, ahead), preflight=True, text="what should I bring"),
        speech_pb2.Transcript(meta=_meta(3, 0, ahead), preflight=True, text="Book Tuesday"),
        speech_pb2.Transcript(meta=_meta(9, 0, ahead), preflight=True, text="Mm-hmm."),
    ]
    level = summarise_level(1, [result], {"u1": trace})
    assert [t["preflight_confirmed"] for t in level["turns"]] == [True, False, False, False]
    pre = level["preflight"]
    assert (pre["preflights"], pre["thrown_away"], pre["thrown_away_rate"]) == (3, 2, 0.667)
    hop = pre["final_to_first_token_ms"]
    assert hop["with_preflight"] == {"n": 1, "p50": -120.0, "p95": -120.0}
    assert hop["without"] == {"n": 1, "p50": 700.0, "p95": 700.0}
    printed = "\n".join(level_table(level))
    assert "preemptive replies thrown away: 2 (67 %)" in printed
    json.dumps(level)

"""Preemptive replies, on a real bus with the LLM call session: a preflight transcript starts the
reply at once, but nothing of it leaves the llm (the reply subject is the only way to policy and
TTS) or enters the history until the final for the same turn confirms the same words. Then the
held sentences go out at once, earlier than a reply started on the final would, and identical
to it. A differing final or more speech from the caller throws the held reply away, and no tool
runs on a preflight alone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from phoneagent.llm.engines.base import Delta
from phoneagent.llm.preflight import goes_beyond, same_words
from phoneagent.llm.service import LlmCallSession
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Delivery
from phoneagent.runtime.dial_approvals import CALL_ID_HEADER
from phoneagent.runtime.sessions import claim_session
from phoneagent.v1 import policy_pb2, speech_pb2, tools_pb2
from prometheus_client import REGISTRY
from support.common import wait_for
from support.llm import StandInEngine, asr_events_handled, open_session
from support.policy_stack import running_policy

TUESDAY_TEN = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)  # 10:00 in New York: open
TRANSFER_CALL = '<tool_call>{"name": "transfer_to_human", "arguments": {}}</tool_call>'


class EvaluatingEngine(StandInEngine):
    """Answers by the caller's last words (the same prompt always gets the same reply), after a
    prompt evaluation that lasts until the test opens the request's gate (``gates``, in request
    order). ``done`` counts the completions streamed to the end."""

    name = "evaluating"

    def __init__(self, answers: dict[str, list[str]]) -> None:
        super().__init__()
        self.answers = answers
        self.ids: list[str] = []
        self.gates: list[asyncio.Event] = []
        self.done = 0

    async def stream(
        self, messages: list[dict[str, Any]], *, request_id: str, **_: Any
    ) -> AsyncIterator[Delta]:
        self.requests.append([dict(m) for m in messages])
        self.ids.append(request_id)
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        for piece in self.answers.get(str(messages[-1]["content"]), ["Okay."]):
            yield Delta(text=piece)
        self.done += 1
        yield Delta(finish_reason="stop", completion_tokens=3)


def preflights(outcome: str) -> float:
    return REGISTRY.get_sample_value("pa_llm_preflight_replies_total", {"outcome": outcome}) or 0.0


async def held_complete(session: LlmCallSession) -> None:
    """Wait until the reply held for the preflight has all its sentences (the final one too)."""

    def complete() -> bool:
        spec = session.dialog.speculative if session.dialog is not None else None
        return spec is not None and any(s.final for s in spec.reply.held or [])

    await wait_for(complete, timeout=5)


SATURDAY = "When are you open on Saturday?"
ANSWERS = {SATURDAY: ["On Saturdays we open at nine, ", "and we close at one."]}


async def answer_saturday(bus: Bus, preflight: bool) -> dict[str, Any]:
    engine = EvaluatingEngine(ANSWERS)
    _, call, session = await open_session(bus, engine)
    try:
        if preflight:
            await call.transcript(1, SATURDAY, preflight=True)
            gates = await wait_for(lambda: engine.gates, timeout=5)
            gates[0].set()
            await held_complete(session)
            await call.settle(99)  # anything the session published by now has arrived
            assert not call.replies, "a held reply was published before the final confirmed it"
            assert session.dialog is not None and not session.dialog.state.history
        final = await call.transcript(1, SATURDAY)
        if not preflight:
            (await wait_for(lambda: engine.gates, timeout=5))[0].set()
        await wait_for(lambda: call.finished(1), timeout=5)
        first = next(r for r in call.replies if r.meta.generation_id == 1 and r.sentence_seq == 0)
        assert session.dialog is not None
        return {
            "final_at": final.meta.ts_unix_ns,
            "first_token_at": first.first_token_unix_ns,
            "first_sentence_at": first.meta.ts_unix_ns,
            "spoken": [r.text for r in call.replies],
            "turns": [(r.meta.turn_id, r.meta.generation_id, r.sentence_seq, r.final) for r in call.replies],
            "prompts": engine.requests,
            "history": json.dumps(session.dialog.state.history),
        }
    finally:
        await session.close("test")


async def test_a_confirmed_preflight_releases_the_same_reply_sooner(bus: Bus) -> None:
    used = preflights("used")
    plain = await answer_saturday(bus, preflight=False)
    early = await answer_saturday(bus, preflight=True)
    # Without a preflight the model starts on the final; with one, its tokens came before the
    # final, and the first sentence goes out as the final arrives instead of a prompt later.
    assert plain["first_token_at"] > plain["final_at"]
    assert early["first_token_at"] < early["final_at"] <= early["first_sentence_at"]
    assert early["first_sentence_at"] - early["final_at"] < plain["first_sentence_at"] - plain["final_at"]
    for same in ("spoken", "turns", "prompts", "history"):
        assert early[same] == plain[same], same
    assert preflights("used") == used + 1


async def test_a_differing_final_throws_the_held_reply_away(bus: Bus) -> None:
    engine = EvaluatingEngine({"When are you open": ["We open at nine every weekday."], **ANSWERS})
    stage, call, session = await open_session(bus, engine)
    discarded = preflights("discarded")
    try:
        await call.transcript(1, "When are you open", preflight=True)
        (await wait_for(lambda: engine.gates, timeout=5))[0].set()
        await held_complete(session)
        await call.transcript(1, SATURDAY)  # the caller went on before the end of the turn
        (await wait_for(lambda: len(engine.gates) == 2 and engine.gates, timeout=5))[1].set()
        await wait_for(lambda: call.finished(1), timeout=5)
        await call.settle(99)
        assert call.spoken(1) == "On Saturdays we open at nine, and we close at one."
        assert all("weekday" not in r.text for r in call.replies)  # never on the way to policy or TTS
        assert session.dialog is not None
        history = json.dumps(session.dialog.state.history)
        assert "weekday" not in history and 'When are you open"' not in history
        assert all("weekday" not in json.dumps(s.history) for s in stage.saved)
        assert engine.requests[1][-1]["content"] == SATURDAY
        assert any("p1" in rid for rid in engine.aborted), "the held reply's request was not aborted"
        assert preflights("discarded") == discarded + 1
    finally:
        await session.close("test")


@pytest.mark.parametrize("how", ["speech", "partial"])
async def test_the_caller_going_on_stops_the_held_reply_at_once(bus: Bus, how: str) -> None:
    engine = EvaluatingEngine({"My number is": ["Thank you."], "My number is 555 0134.": ["Got it."]})
    _, call, session = await open_session(bus, engine)
    try:
        stopped = 1_000_000_000
        await call.transcript(1, "My number is", preflight=True, speech_end_unix_ns=stopped)
        await wait_for(lambda: engine.gates, timeout=5)
        if how == "speech":
            await call.speech_started(1, stopped + 400_000_000)
        else:
            meta = speech_pb2.Transcript(text="my number is five five five").meta
            meta.call_id, meta.turn_id = call.call_id, 1
            partial = speech_pb2.Transcript(meta=meta, text="my number is five five five")
            await bus.publish(subjects.asr_events(call.call_id), speech_pb2.AsrEvent(transcript=partial))
        await wait_for(lambda: session.dialog is not None and session.dialog.speculative is None, timeout=5)
        assert engine.aborted and "p1" in engine.aborted[0]
        engine.gates[0].set()  # too late: its tokens have nowhere to go
        await call.transcript(1, "My number is 555 0134.")
        (await wait_for(lambda: len(engine.gates) == 2 and engine.gates, timeout=5))[1].set()
        await wait_for(lambda: call.finished(1), timeout=5)
        assert call.spoken(1) == "Got it."
        assert [r.text for r in call.replies if "Thank" in r.text] == []
    finally:
        await session.close("test")


async def test_no_tool_runs_on_a_preflight_until_the_final_confirms_it(bus: Bus) -> None:
    engine = EvaluatingEngine({"Can I talk to a person please?": [TRANSFER_CALL]})
    _, call, session = await open_session(bus, engine, TUESDAY_TEN)
    effects: list[str] = []

    async def on_tool(m: tools_pb2.ToolCall, d: Delivery) -> None:
        effects.append(d.headers.get(subjects.TOOL_TYPE_HEADER, "?") if d.headers else "?")

    async def on_check(m: policy_pb2.TransferCheck, d: Delivery) -> None:
        if d.headers and d.headers.get(CALL_ID_HEADER) == call.call_id:
            effects.append("transfer check")

    await bus.subscribe(subjects.tool(call.call_id), tools_pb2.ToolCall, on_tool)
    await bus.subscribe(subjects.transfer_check(), policy_pb2.TransferCheck, on_check)
    try:
        # A preflight the caller then talks on from: the tool call is generated, never run.
        await call.transcript(1, "Can I talk to a person please?", preflight=True, speech_end_unix_ns=1)
        (await wait_for(lambda: engine.gates, timeout=5))[0].set()
        await wait_for(lambda: engine.done == 1, timeout=5)
        await call.settle(99)
        assert effects == [] and not call.replies
        await call.speech_started(1, 2)
        await wait_for(lambda: session.dialog is not None and session.dialog.speculative is None, timeout=5)
        await call.settle(98)
        assert effects == [] and not call.replies

        # The same words confirmed by the final: the tool runs, once.
        await call.transcript(2, "Can I talk to a person please?", preflight=True)
        (await wait_for(lambda: len(engine.gates) == 2 and engine.gates, timeout=5))[1].set()
        await wait_for(lambda: engine.done == 2, timeout=5)
        await call.settle(97)
        assert effects == []
        await call.transcript(2, "Can I talk to a person, please?")
        await wait_for(lambda: call.finished(1), timeout=5)
        assert "put you through" in call.spoken(1)
        await wait_for(lambda: effects.count("ToolCall") == 1, timeout=5)
        assert len(engine.requests) == 2  # the tool's words came from code, on the confirmed reply
    finally:
        await session.close("test")


def test_words_are_compared_without_case_punctuation_or_spacing() -> None:
    assert same_words("When are you open on Saturday?", "when are you  open on saturday")
    assert not same_words("When are you open", "When are you open on Saturday?")
    assert goes_beyond("my number is five", "My number is")
    assert not goes_beyond("my number", "My number is") and not goes_beyond("", "anything")
    assert not goes_beyond("my numb", "My number is")  # decoded on less audio, arriving late


async def test_with_policy_running_only_confirmed_words_are_approved_for_speech(
    bus: Bus, nats_url: str, tmp_path: Path
) -> None:
    """The real policy service between the llm and TTS: what it approves for speech (the say
    subject, TTS's input) never carries the held reply of a preflight the final did not confirm."""
    engine = EvaluatingEngine({"When are you open": ["We open at nine every weekday."], **ANSWERS})
    async with running_policy(nats_url, tmp_path / "policy.sqlite3", common={"replica_id": "policy-pre-t"}):
        stage, call, session = await open_session(bus, engine)
        said: list[speech_pb2.AgentText] = []

        async def on_say(m: speech_pb2.AgentText, _: Delivery) -> None:
            said.append(m)

        await bus.subscribe(subjects.say(call.call_id), speech_pb2.AgentText, on_say)
        try:
            await claim_session(bus, "policy", call.started)
            await call.transcript(1, "When are you open", preflight=True)
            (await wait_for(lambda: engine.gates, timeout=5))[0].set()
            await held_complete(session)
            await call.transcript(1, SATURDAY)
            (await wait_for(lambda: len(engine.gates) == 2 and engine.gates, timeout=5))[1].set()
            await wait_for(lambda: any("close at one" in m.text for m in said), timeout=10)
            await call.settle(99)
            assert all("weekday" not in m.text for m in said)
            assert any("Saturdays" in m.text for m in said)
        finally:
            await session.close("test")


async def test_a_preflight_over_a_reply_still_playing_is_released_with_that_reply_in_the_history(
    bus: Bus,
) -> None:
    """The caller speaks while the first answer plays: the held reply was started on the
    conversation as the final leaves it (the answer as published, then the new words), so the
    final releases it rather than starting again."""
    engine = EvaluatingEngine({"Hi, when are you open?": ["Nine to five on weekdays."], **ANSWERS})
    _, call, session = await open_session(bus, engine)
    used = preflights("used")
    try:
        await call.transcript(1, "Hi, when are you open?")
        (await wait_for(lambda: engine.gates, timeout=5))[0].set()
        await wait_for(lambda: call.finished(1), timeout=5)  # published, not yet played out
        await call.transcript(2, SATURDAY, preflight=True)
        (await wait_for(lambda: len(engine.gates) == 2 and engine.gates, timeout=5))[1].set()
        await held_complete(session)
        await call.transcript(2, SATURDAY)
        await wait_for(lambda: call.finished(2), timeout=5)
        assert preflights("used") == used + 1 and len(engine.requests) == 2
        assert [m["role"] for m in engine.requests[1][1:]] == ["user", "assistant", "user"]
        assert session.dialog is not None
        assert session.dialog.state.history == engine.requests[1][1:]
    finally:
        await session.close("test")


async def test_a_backchannel_preflight_while_the_agent_talks_starts_nothing(bus: Bus) -> None:
    engine = EvaluatingEngine({"When are you open?": ["Nine to five on weekdays."]})
    _, call, session = await open_session(bus, engine)
    try:
        await call.transcript(1, "When are you open?")
        (await wait_for(lambda: engine.gates, timeout=5))[0].set()
        await wait_for(lambda: call.finished(1), timeout=5)
        await call.transcript(2, "mm-hmm", backchannel=True, preflight=True)
        await call.settle(99)
        assert session.dialog is not None and session.dialog.speculative is None
        assert len(engine.requests) == 1
    finally:
        await session.close("test")


async def test_a_partial_decoded_before_the_preflight_does_not_throw_it_away(bus: Bus) -> None:
    engine = EvaluatingEngine({"My number is 555 0134.": ["Got it."]})
    _, call, session = await open_session(bus, engine)
    used = preflights("used")
    try:
        await call.transcript(1, "My number is 555 0134.", preflight=True)
        (await wait_for(lambda: engine.gates, timeout=5))[0].set()
        meta = speech_pb2.Transcript().meta
        meta.call_id, meta.turn_id = call.call_id, 1
        late = speech_pb2.Transcript(meta=meta, text="my number is five")  # on less audio
        handled = asr_events_handled(session, call.call_id)
        await bus.publish(subjects.asr_events(call.call_id), speech_pb2.AsrEvent(transcript=late))
        await wait_for(lambda: handled, timeout=5)
        await held_complete(session)
        assert session.dialog is not None and session.dialog.speculative is not None
        await call.transcript(1, "My number is 555 0134.")
        await wait_for(lambda: call.finished(1), timeout=5)
        assert call.spoken(1) == "Got it." and len(engine.requests) == 1
        assert preflights("used") == used + 1
    finally:
        await session.close("test")

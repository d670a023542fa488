"""Every sentence says how its words were produced (the model, a tool the model chose, code alone,
or a fixed apology), and the end of a generation carries the prompt tokens its model requests
evaluated: the bench groups turns by it. Each path through the dialog, against scripted engines;
and on the bus, through an LLM call session with the real tools."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from phoneagent.llm.dialog import Dialog
from phoneagent.llm.dialog_state import Answered, DialogConfig, DialogState, Sentence, ToolOutcome
from phoneagent.llm.engines.base import Delta
from phoneagent.llm.engines.openai_http import prompt_evaluated
from phoneagent.llm.replies import APOLOGY
from phoneagent.runtime.bus import Bus
from phoneagent.runtime.errors import EngineFailure
from phoneagent.v1 import speech_pb2
from support.common import wait_for
from support.llm import ScriptEngine, StandInEngine, open_session

TUESDAY_TEN = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)  # 10:00 in New York: open
TRANSFER_CALL = '<tool_call>{"name": "transfer_to_human", "arguments": {}}</tool_call>'
BOOK_CALL = '<tool_call>{"name": "book_appointment", "arguments": {"when": "Tuesday at 10"}}</tool_call>'


class CountingEngine(StandInEngine):
    """Streams each script and says how many prompt tokens each request evaluated (``evaluated``,
    one per request; None: the engine does not say). ``structured`` engines answer a request
    under a JSON schema with ``constrained``, as a grammar would."""

    name = "counting"

    def __init__(
        self,
        scripts: list[list[str]],
        evaluated: list[int | None],
        *,
        structured: bool = False,
        constrained: str = "",
        fail: bool = False,
    ) -> None:
        super().__init__()
        self.scripts, self.evaluated, self.fail = scripts, evaluated, fail
        self.structured_output = structured
        self.constrained = constrained

    async def stream(
        self, messages: list[dict[str, Any]], *, json_schema: Any = None, **_: Any
    ) -> AsyncIterator[Delta]:
        self.requests.append([dict(m) for m in messages])
        if self.fail:
            raise EngineFailure("engine down")
        n = self.evaluated.pop(0) if self.evaluated else None
        pieces = [self.constrained] if json_schema is not None else self.scripts.pop(0)
        for piece in pieces:  # the count rides on every piece, as llama.cpp sends it
            yield Delta(text=piece, prompt_evaluated_tokens=n)
        yield Delta(finish_reason="stop", completion_tokens=len(pieces), prompt_evaluated_tokens=n)


class Tools:
    """A booking tool; ``final`` outcomes are spoken as they are, ``declined`` ones not run."""

    def __init__(
        self, *, final: bool = True, declined: bool = False, resumed: dict[str, Any] | None = None
    ) -> None:
        self.final, self.declined, self.resumed = final, declined, resumed

    def schemas(self) -> list[dict[str, Any]]:
        return [{"type": "function", "function": {"name": "book_appointment"}}]

    def resume(self, text: str) -> dict[str, Any] | None:
        return self.resumed

    async def run(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        if self.declined:
            return ToolOutcome(ok=False, result={"status": "declined"}, declined=True)
        return ToolOutcome(
            ok=True, result={"booked": True}, spoken="Booked for Tuesday at ten.", final=self.final
        )


def make(engine: Any, tools: Tools | None = None, **cfg: Any) -> tuple[Dialog, list[Sentence]]:
    said: list[Sentence] = []

    async def publish(s: Sentence) -> None:
        said.append(s)

    async def save(_: DialogState) -> None: ...

    dialog = Dialog(
        "c1",
        engine,
        system_prompt=lambda: "You are a receptionist.",
        greeting="Hello, this is Ada.",
        publish=publish,
        save=save,
        tools=tools,  # type: ignore[arg-type]
        config=DialogConfig(**cfg),
    )
    return dialog, said


async def answer(
    dialog: Dialog, said: list[Sentence], text: str = "I'd like Tuesday at ten"
) -> list[Sentence]:
    await dialog.on_user_turn(1, text)
    await wait_for(lambda: said and said[-1].final and said[-1].turn == 1, timeout=3)
    await dialog.close()
    return [s for s in said if s.turn == 1]


def tags(sentences: list[Sentence]) -> list[tuple[str, Answered]]:
    return [(s.text, s.answered_by) for s in sentences]


async def test_the_greeting_is_code_and_a_free_reply_is_the_model_with_its_prompt_tokens() -> None:
    dialog, said = make(CountingEngine([["We open at nine. ", "Anything else?"]], [37]))
    await dialog.greet()
    assert tags(said) == [("Hello, this is Ada.", Answered.CODE), ("", Answered.CODE)]
    assert said[-1].prompt_tokens_evaluated is None  # no model ran
    reply = await answer(dialog, said, "When do you open?")
    assert tags(reply) == [
        ("We open at nine.", Answered.MODEL),
        ("Anything else?", Answered.MODEL),
        ("", Answered.MODEL),
    ]
    assert reply[-1].prompt_tokens_evaluated == 37
    assert all(s.prompt_tokens_evaluated is None for s in reply[:-1])  # only the end carries it


async def test_a_tool_the_model_chose_spoken_as_is_is_model_tool_and_its_filler_is_code() -> None:
    engine = CountingEngine([[BOOK_CALL]], [120])
    tools = Tools()
    slow_run = tools.run

    async def run(name: str, arguments: dict[str, Any]) -> ToolOutcome:
        await asyncio.sleep(0.2)
        return await slow_run(name, arguments)

    tools.run = run  # type: ignore[method-assign]
    dialog, said = make(engine, tools, filler_after_s=0.05)
    reply = await answer(dialog, said)
    assert tags(reply) == [
        ("One moment while I check.", Answered.CODE),
        ("Booked for Tuesday at ten.", Answered.MODEL_TOOL),
        ("", Answered.MODEL_TOOL),
    ]
    assert reply[-1].prompt_tokens_evaluated == 120


async def test_a_constrained_tool_call_counts_both_requests_prompt_tokens() -> None:
    """The free stream stops where the call opens and the call is generated under the schema:
    the prompt tokens of both requests are the turn's."""
    call = json.dumps({"name": "book_appointment", "arguments": {"when": "Tuesday at 10"}})
    engine = CountingEngine([["<tool_call>", "{"]], [410, 3], structured=True, constrained=call)
    dialog, said = make(engine, Tools())
    reply = await answer(dialog, said)
    assert len(engine.requests) == 2
    assert tags(reply)[-1] == ("", Answered.MODEL_TOOL)
    assert reply[-1].prompt_tokens_evaluated == 413


async def test_words_the_model_writes_after_a_tool_result_or_a_declined_call_are_the_model() -> None:
    for tools in (Tools(final=False), Tools(declined=True)):
        engine = CountingEngine([[BOOK_CALL], ["You're all set for Tuesday."]], [200, 25])
        dialog, said = make(engine, tools)
        reply = await answer(dialog, said)
        assert tags(reply) == [("You're all set for Tuesday.", Answered.MODEL), ("", Answered.MODEL)]
        assert reply[-1].prompt_tokens_evaluated == 225


async def test_a_call_resumed_in_code_is_code_and_no_model_runs() -> None:
    engine = CountingEngine([], [])
    resumed = {"name": "book_appointment", "arguments": {"when": "Tuesday at 10"}}
    dialog, said = make(engine, Tools(resumed=resumed))
    reply = await answer(dialog, said, "Ada Lovelace")
    assert not engine.requests
    assert tags(reply) == [("Booked for Tuesday at ten.", Answered.CODE), ("", Answered.CODE)]
    assert reply[-1].prompt_tokens_evaluated is None


async def test_a_failed_or_unusable_reply_is_a_fallback() -> None:
    dialog, said = make(CountingEngine([], [], fail=True))
    assert tags(await answer(dialog, said)) == [(APOLOGY, Answered.FALLBACK), ("", Answered.FALLBACK)]
    dialog, said = make(CountingEngine([['<tool_call>{"name": "book_app']], [50]), Tools())
    reply = await answer(dialog, said)  # a cut-off call is never read out: an apology is
    assert " ".join(s.text for s in reply if s.text) == APOLOGY
    assert {s.answered_by for s in reply} == {Answered.FALLBACK}
    assert reply[-1].prompt_tokens_evaluated == 50  # the model ran for it


async def test_an_engine_that_does_not_report_leaves_the_count_unset() -> None:
    dialog, said = make(CountingEngine([[BOOK_CALL], ["All set."]], [300, None]), Tools(final=False))
    reply = await answer(dialog, said)
    assert reply[-1].answered_by is Answered.MODEL and reply[-1].prompt_tokens_evaluated is None


async def test_policy_words_are_code_and_the_answer_after_them_the_model() -> None:
    engine = ScriptEngine([["We accept ", None, "most plans."], ["We accept Delta Dental."]])
    dialog, said = make(engine)
    await dialog.on_user_turn(1, "Do you take Delta Dental?")
    await wait_for(lambda: len(engine.requests) == 1)
    generation = await dialog.say_directive("This call may be recorded.", answer_pending=True)
    await wait_for(lambda: said[-1].final and said[-1].generation == generation)
    mine = [s for s in said if s.generation == generation]
    assert tags(mine) == [
        ("This call may be recorded.", Answered.CODE),
        ("We accept Delta Dental.", Answered.MODEL),
        ("", Answered.MODEL),
    ]
    ended = await dialog.say_directive("Goodbye.")
    assert tags([s for s in said if s.generation == ended]) == [
        ("Goodbye.", Answered.CODE),
        ("", Answered.CODE),
    ]
    await dialog.close()


async def test_the_tag_and_the_count_ride_on_the_bus(bus: Bus) -> None:
    """Through the LLM call session with the real tools: an hours question is answered from the
    configuration in code; a request for a person is a tool the model chose."""
    engine = ScriptEngine([[TRANSFER_CALL]])
    _, call, session = await open_session(bus, engine, TUESDAY_TEN)
    try:
        await call.transcript(1, "What are your opening hours on Monday?")
        await wait_for(lambda: call.finished(1), timeout=5)
        await call.settle(1)
        await call.transcript(2, "Can I talk to a person please?")
        await wait_for(lambda: call.finished(2), timeout=5)
    finally:
        await session.close("test")
    assert len(engine.requests) == 1  # the hours needed no model
    by_generation = {r.meta.generation_id: r for r in call.replies if r.final}
    assert by_generation[1].answered_by == speech_pb2.ANSWERED_CODE
    assert not by_generation[1].HasField("prompt_tokens_evaluated")
    assert by_generation[2].answered_by == speech_pb2.ANSWERED_MODEL_TOOL
    spoken = [r for r in call.replies if r.text]
    assert {r.answered_by for r in spoken if r.meta.generation_id == 2} == {speech_pb2.ANSWERED_MODEL_TOOL}


def test_an_openai_protocol_server_reports_the_prompt_less_its_cached_prefix() -> None:
    usage = {"prompt_tokens": 480, "prompt_tokens_details": {"cached_tokens": 460}}
    assert prompt_evaluated(usage) == 20
    assert prompt_evaluated({"prompt_tokens": 480}) is None  # no cache figure: not known
    assert prompt_evaluated({}) is None

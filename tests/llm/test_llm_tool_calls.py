"""Schema-constrained tool calls in the dialog (a scripted engine that reports structured output):
once the free reply starts a tool call it is stopped, and the call is finished under the tools'
JSON schemas: continued after the opener on an engine that continues a reply, generated again
from the start of the reply on one that does not; the free-text repair is only the fallback,
and it is counted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from phoneagent.llm.dialog import Dialog
from phoneagent.llm.dialog_state import Sentence, ToolOutcome
from phoneagent.llm.domain.tool_schemas import tool_definitions
from phoneagent.llm.engines.base import Delta
from phoneagent.llm.engines.fallback import FallbackLlmEngine
from phoneagent.llm.priority import LiveFirst
from phoneagent.llm.tool_calls import (
    call_prefix,
    claims_done_action,
    maybe_tool_call,
    parse_tool_call,
    read_constrained,
    starts_tool_call,
    tool_call_schema,
)
from phoneagent.runtime.errors import InvalidArgument
from prometheus_client import REGISTRY
from support.common import wait_for
from support.llm import StandInEngine

CALL = '{"name": "book_appointment", "arguments": {"appointment_type": "cleaning", "when": "Tuesday at 10"}}'


class SchemaEngine(StandInEngine):
    """Free requests replay ``free``; a request with a json_schema gets ``constrained``."""

    name = "schema-script"
    structured_output = True

    def __init__(
        self, free: list[str], constrained: str, grammar_ok: bool = True, *, continues: bool = False
    ) -> None:
        super().__init__()
        self.free, self.constrained, self.grammar_ok = free, constrained, grammar_ok
        self.continues_reply = continues  # the constrained answer then continues assistant_prefix
        self.free_pieces_sent = 0

    async def stream(
        self, messages: list[dict[str, Any]], *, request_id: str, **kw: Any
    ) -> AsyncIterator[Delta]:
        self.requests.append({"request_id": request_id, **kw})
        if kw.get("json_schema") is not None:
            if not self.grammar_ok:
                raise InvalidArgument("json_schema cannot be turned into a grammar")
            yield Delta(text=self.constrained)
        elif kw.get("tools") is None:
            yield Delta(text="Done.")
        else:
            for piece in self.free:
                self.free_pieces_sent += 1
                yield Delta(text=piece)
                await asyncio.sleep(0)
        yield Delta(finish_reason="stop")


class Tools:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def schemas(self) -> list[dict[str, Any]]:
        return tool_definitions(frozenset({"book_appointment", "lookup_knowledge"}))

    async def run(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        self.calls.append((name, arguments))
        return ToolOutcome(ok=True, result={"status": "ok"}, spoken="Booked.", final=True)


def repairs(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "pa_llm_tool_call_repairs_total", {"engine": "schema-script", "reason": reason}
    )
    return value or 0.0


async def talk(
    engine: SchemaEngine, caller: str = "Book a cleaning Tuesday at 10", tools: Tools | None = None
) -> tuple[Tools, list[Sentence]]:
    said: list[Sentence] = []
    tools = tools or Tools()

    async def publish(s: Sentence) -> None:
        said.append(s)

    async def save(_: Any) -> None: ...

    d = Dialog(
        "c-tc", engine, system_prompt=lambda: "x", greeting="", publish=publish, save=save, tools=tools
    )  # type: ignore[arg-type]
    await d.on_user_turn(1, caller)
    await wait_for(lambda: said and said[-1].final, timeout=3)
    await d.close()
    return tools, said


async def test_a_started_tool_call_is_finished_under_the_tool_schemas() -> None:
    # Free text that would need repairs (cut off mid-value): it is never read.
    engine = SchemaEngine(["<tool_call>", '\n{"name": "book_appointment", "arguments": {"when": "Tue'], CALL)
    before = repairs("unconstrained") + repairs("cut_off")
    tools, said = await talk(engine)
    assert tools.calls == [("book_appointment", {"appointment_type": "cleaning", "when": "Tuesday at 10"})]
    assert engine.free_pieces_sent == 1, "the free request must stop at the tool-call marker"
    assert engine.aborted == [engine.requests[0]["request_id"]]
    assert engine.requests[1]["json_schema"] == tool_call_schema(Tools().schemas())
    assert engine.requests[1]["tools"] == Tools().schemas()  # same prompt: the engine's cache is reused
    assert "assistant_prefix" not in engine.requests[1], "this engine cannot continue a reply"
    assert [s.text for s in said if s.text] == ["Booked."]
    assert repairs("unconstrained") + repairs("cut_off") == before


async def test_an_engine_that_continues_a_reply_finishes_the_opened_call_in_the_same_reply() -> None:
    """The constrained request carries what the free reply wrote up to the call's JSON object
    (the marker and its line break), and its answer is only the rest: the object, here followed
    by the marker's closer as the model writes it. The call is read without repairs, nothing of
    it is spoken."""
    engine = SchemaEngine(
        ["<tool_call>", '\n{"name": "book_appointment", "arguments": {"when": "Tue'],
        f"{CALL}\n</tool_call>",
        continues=True,
    )
    before = repairs("unconstrained") + repairs("cut_off")
    tools, said = await talk(engine)
    assert engine.free_pieces_sent == 1 and engine.aborted == [engine.requests[0]["request_id"]]
    assert engine.requests[1]["assistant_prefix"] == "<tool_call>\n"
    assert engine.requests[1]["json_schema"] == tool_call_schema(Tools().schemas())
    assert engine.requests[1]["tools"] == Tools().schemas()
    assert tools.calls == [("book_appointment", {"appointment_type": "cleaning", "when": "Tuesday at 10"})]
    assert [s.text for s in said if s.text] == ["Booked."]
    assert repairs("unconstrained") + repairs("cut_off") == before


@pytest.mark.parametrize("free", [['```json\n{"'], ['{"name'], [" ", '{"'], ["<tools>"]])
async def test_a_continued_call_goes_on_after_the_marker_the_history_renders(free: list[str]) -> None:
    """Whatever opened the call (a fence, a bare object, another marker), it is continued after
    Qwen's marker: the history renders every call that way, so the tokens the engine evaluated
    for the call are the ones the next turn's prompt holds."""
    engine = SchemaEngine(free, CALL, continues=True)
    tools, _ = await talk(engine)
    assert tools.calls == [("book_appointment", {"appointment_type": "cleaning", "when": "Tuesday at 10"})]
    assert engine.requests[1].get("assistant_prefix") == "<tool_call>\n"


def test_wrappers_continue_a_reply_only_when_their_engines_do() -> None:
    yes, no = SchemaEngine([], "", continues=True), SchemaEngine([], "")
    assert LiveFirst(yes).continues_reply and not LiveFirst(no).continues_reply  # type: ignore[arg-type]
    assert FallbackLlmEngine([yes]).continues_reply  # type: ignore[list-item]
    assert not FallbackLlmEngine([yes, no]).continues_reply  # type: ignore[list-item]


def test_the_prefix_of_a_continued_call() -> None:
    assert call_prefix("<tool_call>") == "<tool_call>\n"
    assert call_prefix("<tool_call>\n") == "<tool_call>\n"
    assert call_prefix('<tool_call>\n{"na') == "<tool_call>\n"
    # Whatever opened the call, it goes on after the marker the history renders it with.
    assert call_prefix("<tools>") == "<tool_call>\n"
    assert call_prefix('```json\n{"') == "<tool_call>\n"
    assert call_prefix('{"') == call_prefix(' \n{"') == "<tool_call>\n"
    assert call_prefix("Sure") == call_prefix("") == ""


async def test_without_a_grammar_the_free_call_is_repaired_and_counted() -> None:
    engine = SchemaEngine([CALL], "", grammar_ok=False)
    before = repairs("no_grammar")
    tools, _ = await talk(engine)
    assert tools.calls == [("book_appointment", {"appointment_type": "cleaning", "when": "Tuesday at 10"})]
    assert repairs("no_grammar") == before + 1


async def test_plain_answers_are_spoken_without_a_second_request() -> None:
    engine = SchemaEngine(["We are open ", "nine to five."], CALL)
    tools, said = await talk(engine)
    assert not tools.calls and len(engine.requests) == 1
    assert " ".join(s.text for s in said if s.text) == "We are open nine to five."


def claims(when: str = "before_tool") -> float:
    labels = {"engine": "schema-script", "when": when}
    return REGISTRY.get_sample_value("pa_llm_unbacked_claims_total", labels) or 0.0


class AnswerEngine(SchemaEngine):
    """The first free request opens a tool call (finished under the schemas as ``constrained``);
    the answer after the tool is ``answer``."""

    def __init__(self, constrained: str, answer: list[str]) -> None:
        super().__init__(["<tool_call>"], constrained)
        self.answer = answer
        self.answer_pieces_sent = 0

    async def stream(
        self, messages: list[dict[str, Any]], *, request_id: str, **kw: Any
    ) -> AsyncIterator[Delta]:
        if kw.get("json_schema") is None and len(self.requests) >= 2:  # the answer after the tool
            self.requests.append({"request_id": request_id, **kw})
            for piece in self.answer:
                self.answer_pieces_sent += 1
                yield Delta(text=piece)
            yield Delta(finish_reason="stop")
            return
        async for delta in super().stream(messages, request_id=request_id, **kw):
            yield delta


class Answered(Tools):
    """Each tool runs with ``outcome`` (an answer for the model to give, not spoken as it is)."""

    def __init__(self, outcome: ToolOutcome) -> None:
        super().__init__()
        self.outcome = outcome

    async def run(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        self.calls.append((name, arguments))
        return self.outcome


async def answer_after(
    tool: str, outcome: ToolOutcome, answer: list[str], engine: AnswerEngine | None = None
) -> list[str]:
    """What the caller hears when the model calls ``tool``, it runs with ``outcome`` and the
    model's answer after it is ``answer``."""
    args = {"question": "cancel it"} if tool == "lookup_knowledge" else {"when": "Tuesday at 10"}
    engine = engine or AnswerEngine(json.dumps({"name": tool, "arguments": args}), answer)
    tools, said = await talk(engine, "Yes, please cancel.", Answered(outcome))
    assert [name for name, _ in tools.calls] == [tool] and len(engine.requests) == 3
    return [s.text for s in said if s.text]


async def test_the_answer_after_a_tool_that_did_nothing_never_says_it_was_done() -> None:
    """Over SIP the 0.5B model, after a call that cancelled nothing, said "You're cancelled."
    and the booking stayed. After a tool that booked, moved or cancelled, the same words are
    its outcome and are said."""
    looked_up = ToolOutcome(ok=True, result={"passages": ["Cancel 24 hours ahead."]})
    before = claims("after_tool")
    said = await answer_after(
        "lookup_knowledge", looked_up, ["You're cancelled. ", "Anything else I can help with?"]
    )
    assert said == ["Anything else I can help with?"] and claims("after_tool") == before + 1
    booked = ToolOutcome(ok=True, result={"status": "ok", "start": "2026-12-01T10:00:00-05:00"})
    said = await answer_after(
        "book_appointment", booked, ["You're booked for Tuesday at 10. ", "See you then!"]
    )
    assert (
        said == ["You're booked for Tuesday at 10.", "See you then!"] and claims("after_tool") == before + 1
    )


async def test_an_answer_that_says_nothing_after_a_failed_tool_gives_the_tools_words() -> None:
    """A booking that failed, then an answer with nothing to say (a bare refusal and a claim are
    not said, or the model wrote nothing): the caller hears why it failed, not an apology for
    not understanding them."""
    taken = ToolOutcome(ok=False, result={"status": "error"}, spoken="Sorry, that time has just been taken.")
    for answer in (["I can't assist with that."], [], ["You're booked."]):
        said = await answer_after("book_appointment", taken, answer)
        assert said == ["Sorry, that time has just been taken."], answer


@pytest.mark.parametrize(
    "free",
    [
        # The claim in the first clause the splitter releases, and one after a sentence was said.
        ["You're booked for cleaning ", "on Wednesday at 9 in the morning."],
        ["Sure thing! ", "I've moved your appointment to Wednesday at nine."],
        # And one that only the end of the completion holds (released by the splitter's flush).
        ["Your cleaning has been cancelled"],
    ],
)
async def test_a_booking_said_to_be_done_before_any_tool_ran_becomes_the_tool_call(free: list[str]) -> None:
    """A small model restates its last confirmation with the caller's new time and nothing is
    booked: the claim is never said, the model writes the call after Qwen's marker, and the
    caller hears the tool's outcome."""
    engine = SchemaEngine(free, CALL, continues=True)
    before = claims()
    tools, said = await talk(engine)
    assert tools.calls == [("book_appointment", {"appointment_type": "cleaning", "when": "Tuesday at 10"})]
    assert engine.requests[1]["assistant_prefix"] == "<tool_call>\n"
    assert engine.requests[1]["json_schema"] == tool_call_schema(Tools().schemas())
    spoken = [s.text for s in said if s.text]
    assert spoken[-1] == "Booked." and not any(claims_done_action(t) for t in spoken[:-1])
    assert claims() == before + 1


async def test_a_confirmation_that_repeats_the_booking_tools_words_is_said() -> None:
    """ "Yes, book it" after the booking was made: the model says again what the booking tool
    said. That is no claim of its own: it is said (once its sentence is whole), and no tool runs;
    the same words with another time are a claim."""
    booked = "You're booked for cleaning on Tuesday 24 November at 10 am."
    said: list[Sentence] = []
    tools = Tools()

    async def publish(s: Sentence) -> None:
        said.append(s)

    async def save(_: Any) -> None: ...

    for free, runs in (
        (["You're booked for cleaning ", "on Tuesday 24 November at 10 am."], False),
        (["You're booked for cleaning ", "on Wednesday at 9 in the morning."], True),
    ):
        said.clear()
        tools.calls.clear()
        engine = SchemaEngine(free, CALL, continues=True)
        d = Dialog(
            "c-re", engine, system_prompt=lambda: "x", greeting="", publish=publish, save=save, tools=tools
        )  # type: ignore[arg-type]
        d.state.history = [
            {"role": "user", "content": "Book a cleaning Tuesday at 10"},
            {
                "role": "tool",
                "content": json.dumps({"ok": True, "say": f"{booked} Your reference is 123456."}),
            },
            {"role": "assistant", "content": booked},
        ]
        d.state.turn = 1
        await d.on_user_turn(2, "Yes, book it.")
        await wait_for(lambda: said and said[-1].final, timeout=3)
        await d.close()
        spoken = [s.text for s in said if s.text]
        if runs:
            assert tools.calls and spoken == ["Booked."]
        else:
            assert not tools.calls and spoken == [booked], spoken


async def test_offers_and_questions_about_a_booking_are_said_as_they_are() -> None:
    engine = SchemaEngine(["I can book that for you. ", "Shall I move it to Wednesday at nine?"], CALL)
    before = claims()
    tools, said = await talk(engine)
    assert not tools.calls and len(engine.requests) == 1 and claims() == before
    assert (
        " ".join(s.text for s in said if s.text)
        == "I can book that for you. Shall I move it to Wednesday at nine?"
    )


def test_what_counts_as_a_booking_said_to_be_done() -> None:
    done = [
        "You're booked for cleaning on Wednesday at 9 in the morning.",
        "Great, you are all set and booked for Friday.",
        "It's rescheduled for Thursday.",
        "Your appointment is now moved to 9.",
        "I have cancelled it.",
    ]
    not_done = [
        "I can book that for you.",
        "Would you like me to cancel it?",
        "Friday is booked up.",
        "Are you booked already?",
        "I will cancel it once you confirm.",
    ]
    assert all(claims_done_action(t) for t in done)
    assert not any(claims_done_action(t) for t in not_done)


def test_the_schema_names_each_tool_and_its_arguments() -> None:
    schema = tool_call_schema(Tools().schemas())
    names = [o["properties"]["name"]["const"] for o in schema["anyOf"]]
    assert names == ["book_appointment", "lookup_knowledge"]
    assert schema["anyOf"][1]["properties"]["arguments"]["required"] == ["question"]
    assert starts_tool_call("<tool_call>") and starts_tool_call(' {"') and starts_tool_call('```json\n{"')
    assert not starts_tool_call("{Sorry") and not starts_tool_call("Sure")
    assert read_constrained(CALL) is not None and read_constrained(CALL[:-3]) is None
    assert read_constrained(f"{CALL}\n</tool_call>") == read_constrained(f" {CALL} </tools>") is not None
    assert read_constrained(f"{CALL}\n</tool_call> and more") is None


@pytest.mark.parametrize("opener", ["<tool_call>", "<tools>", "<tool>"])
def test_every_tag_a_qwen_model_wraps_a_call_in_is_a_tool_call_never_words(opener: str) -> None:
    """The 1.5B model writes <tools>...</tools> where the template asks for <tool_call>: the
    call must be recognised (and never spoken), whichever tag wraps it."""
    closer = opener.replace("<", "</")
    text = f'{opener}\n{{"name": "lookup_knowledge", "arguments": {{"question": "price"}}}}\n{closer}'
    assert maybe_tool_call(opener[:3]) and maybe_tool_call(opener) and starts_tool_call(opener)
    call = parse_tool_call(text)
    assert call is not None and call["name"] == "lookup_knowledge"


async def test_an_answer_that_begins_another_tool_call_is_stopped_there() -> None:
    """After a knowledge lookup the 0.5B model wrote ~490 characters of JSON, five seconds of
    decoding before the caller heard the passage. The answer is stopped as soon as it opens a
    call, and the tool's words are said."""
    passage = "Free parking for patients is available in the lot behind the building."
    found = ToolOutcome(ok=True, result={"passages": [passage]}, spoken=passage)
    answer = ["<tool_call>", '\n{"name": "lookup_knowledge", ', '"arguments": {"question": "parking"}}']
    call = json.dumps({"name": "lookup_knowledge", "arguments": {"question": "parking"}})
    engine = AnswerEngine(call, answer)
    said = await answer_after("lookup_knowledge", found, answer, engine)
    assert " ".join(said) == passage
    assert engine.answer_pieces_sent == 1 and engine.aborted[-1] == engine.requests[-1]["request_id"]


WHITENING = "Teeth whitening in the office costs 350 dollars; a take-home whitening kit costs 200 dollars."
NOTICE = "Please cancel or move an appointment at least 24 hours in advance."


def uncovered() -> float:
    labels = {"engine": "schema-script"}
    return REGISTRY.get_sample_value("pa_llm_uncovered_parts_total", labels) or 0.0


@pytest.mark.parametrize(
    ("answer", "added"),
    [
        # The 0.5B model over SIP read out the first part's paragraph alone.
        ([WHITENING], True),
        (["Yes, whitening costs 350 dollars. ", "Please cancel at least 24 hours in advance."], False),
    ],
)
async def test_a_part_of_the_question_the_answer_left_out_is_said_from_its_passage(
    answer: list[str], added: bool
) -> None:
    found = ToolOutcome(ok=True, result={"passages": [WHITENING, NOTICE], "parts": True}, spoken=WHITENING)
    before = uncovered()
    said = await answer_after("lookup_knowledge", found, answer)
    answered = " ".join(a.strip() for a in answer)
    assert " ".join(said) == (f"{answered} {NOTICE}" if added else answered)
    assert uncovered() == before + int(added)
    # One question, one passage: nothing is added, whatever the answer used.
    one = ToolOutcome(ok=True, result={"passages": [NOTICE]}, spoken=NOTICE)
    assert await answer_after("lookup_knowledge", one, ["We are happy to help."]) == ["We are happy to help."]

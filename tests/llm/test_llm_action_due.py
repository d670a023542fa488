"""A caller who asks for a booking, a move or a cancellation gets a tool call or a question, not
words: the 0.5B model answered "Can you move it to Thursday at 2?" with the caller's own words,
and "Hey, it's Ann, can I get my teeth cleaned Thursday around 2? ... Yeah, book it, please."
with "Sure, I can help you book an appointment." and an emergency paragraph, and nothing was
booked (scripted calls over SIP, ``python -m phoneagent.devtools.sip_eval``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from phoneagent.agents.agent import Agent
from phoneagent.llm.dialog import Dialog
from phoneagent.llm.dialog_state import DialogState, Sentence, ToolOutcome
from phoneagent.llm.domain.scheduling import SchedulingStore
from phoneagent.llm.domain.tool_result import CallContext
from phoneagent.llm.domain.tool_schemas import tool_definitions
from phoneagent.llm.domain.tools import ToolExecutor
from phoneagent.llm.prompting import WHEN_MAX_CHARS, caller_when
from phoneagent.llm.replies import APOLOGY
from phoneagent.llm.tool_calls import asks_caller, leaks_template
from phoneagent.llm.tools import Tools
from prometheus_client import REGISTRY
from support.common import wait_for
from test_llm_tool_calls import CALL, SchemaEngine
from test_llm_tool_calls import Tools as Tools_

CALLER = "+12125556211"
NOW = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)  # the clock of the shared ``store`` fixture (conftest)


def tools_for(agent: Agent, store: SchedulingStore) -> Tools:
    return Tools(
        ToolExecutor(agent, store, None, lambda: NOW), CallContext("call-d", CALLER), clock=lambda: NOW
    )


@pytest.mark.parametrize(
    ("turns", "due"),
    [
        (["Can you move it to Wednesday at nine?"], True),
        (["Please reschedule my cleaning to Friday at 2 pm."], True),
        (["I need to cancel my appointment."], True),
        (["Sorry, I changed my mind. Please cancel that appointment."], True),
        (["What happens if I cancel the appointment late?"], False),  # a question about cancelling
        (
            ["Hey, it's Ann Lee. Can I get my teeth cleaned Thursday around 2?", "Yeah, book it, please."],
            True,
        ),
        (["Hey, it's Ann Lee. Can I get my teeth cleaned Thursday around 2?"], False),  # no action word
        (["Book me a cleaning next Thursday at 11.", "Hmm, could we do Thursday at two instead?"], True),
        (["I'd like to book a cleaning."], False),  # no day or time: the model asks for one
        (["How much does a filling cost, and can I book one?"], False),
        (["Do you move appointments if I'm late?"], False),
        (["Yeah hi, Robin Hale here, can I come in Wednesday at eleven for a filling?"], True),
        (["Could you fit me in for a check-up on Friday at 10?"], True),
        (["Can I come in early for my first visit?"], False),  # no day
    ],
)
def test_which_caller_turns_need_a_tool(
    agent: Agent, store: SchedulingStore, turns: list[str], due: bool
) -> None:
    tools = tools_for(agent, store)
    for text in turns:
        tools.caller_said(text)
    assert tools.action_due() is due


async def test_after_the_booking_a_yes_book_it_needs_no_second_call(
    agent: Agent, store: SchedulingStore
) -> None:
    tools = tools_for(agent, store)
    tools.caller_said("Hi, this is Ann Lee. Please book a cleaning next Tuesday at 11 in the morning.")
    assert tools.action_due()
    args = {"appointment_type": "cleaning", "when": "next Tuesday at 11 in the morning", "name": "Ann Lee"}
    assert (await tools.run("book_appointment", args)).ok
    tools.caller_said("Yes, book it.")  # confirming what was just booked
    assert not tools.action_due()
    tools.caller_said("And can you book a filling for Friday at 10 too?")
    assert tools.action_due()


def test_a_question_that_repeats_the_callers_words_asks_nothing() -> None:
    caller = "Can you move it to Thursday at 2 pm instead?"
    assert not asks_caller("Can you move it to Thursday at 2 pm instead?", caller)
    assert not asks_caller("Move it to Thursday at 2 pm?", caller)
    assert not asks_caller("Sure, I can help you with that.", caller)
    assert asks_caller("May I have your booking reference, please?", caller)
    assert asks_caller("Which appointment would you like to move?", caller)
    assert asks_caller("May I have your name,", caller)  # a first clause, cut at its comma


class DueTools:
    def __init__(self, said: str) -> None:
        self.said = [said]
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def schemas(self) -> list[dict[str, Any]]:
        return tool_definitions(frozenset({"book_appointment", "lookup_knowledge"}))

    def action_due(self) -> bool:
        return True

    async def run(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        self.calls.append((name, arguments))
        return ToolOutcome(ok=True, result={"status": "ok"}, spoken="Booked.", final=True)


def without_tool() -> float:
    value = REGISTRY.get_sample_value("pa_llm_action_replies_without_tool_total", {"engine": "schema-script"})
    return value or 0.0


@pytest.mark.parametrize(
    ("free", "runs"),
    [
        (["Sure, I can help you with that. ", "Please call the on-call dentist."], True),
        (["Can you move it to Thursday at 2 pm instead?"], True),  # the caller's question, back
        (["May I have your booking reference, please?"], False),  # a real question is said
    ],
)
async def test_a_reply_that_neither_calls_nor_asks_becomes_the_tool_call(free: list[str], runs: bool) -> None:
    said: list[Sentence] = []
    caller = "Can you move it to Thursday at 2 pm instead?"
    tools = DueTools(caller)

    async def publish(s: Sentence) -> None:
        said.append(s)

    async def save(_: Any) -> None: ...

    engine = SchemaEngine(free, CALL, continues=True)
    before = without_tool()
    d = Dialog(
        "c-due", engine, system_prompt=lambda: "x", greeting="", publish=publish, save=save, tools=tools
    )  # type: ignore[arg-type]
    await d.on_user_turn(1, caller)
    await wait_for(lambda: said and said[-1].final, timeout=3)
    await d.close()
    spoken = [s.text for s in said if s.text]
    if runs:
        assert tools.calls and spoken == ["Booked."], spoken
        assert engine.requests[1]["assistant_prefix"] == "<tool_call>\n"
        assert without_tool() == before + 1
    else:
        assert not tools.calls and " ".join(spoken) == "".join(free) and without_tool() == before


class LookupTools(DueTools):
    """No action due; the agent has the knowledge tool."""

    def action_due(self) -> bool:
        return False

    def knowledge_call(self) -> dict[str, Any]:
        return {"name": "lookup_knowledge", "arguments": {"question": self.said[-1]}}

    async def run(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        self.calls.append((name, arguments))
        return ToolOutcome(ok=True, result={"status": "ok"}, spoken="We accept Delta Dental.", final=True)


def empty(outcome: str) -> float:
    labels = {"engine": "schema-script", "outcome": outcome}
    return REGISTRY.get_sample_value("pa_llm_empty_replies_total", labels) or 0.0


@pytest.mark.parametrize(
    ("tools", "outcome", "spoken"),
    [
        (DueTools("Can I book a cleaning next Tuesday at ten in the morning?"), "tool", ["Booked."]),
        (LookupTools("Do you take Delta Dental?"), "lookup", ["We accept Delta Dental."]),
    ],
)
async def test_a_reply_with_nothing_in_it_becomes_the_tool_call_or_the_lookup(
    tools: DueTools, outcome: str, spoken: list[str]
) -> None:
    """In the bench's call the 0.5B model ended its reply at once when the booking was asked for
    a second time, and the caller heard the apology."""
    said: list[Sentence] = []

    async def publish(s: Sentence) -> None:
        said.append(s)

    async def save(_: Any) -> None: ...

    engine = SchemaEngine([], CALL, continues=True)
    before = empty(outcome)
    d = Dialog(
        "c-empty", engine, system_prompt=lambda: "x", greeting="", publish=publish, save=save, tools=tools
    )  # type: ignore[arg-type]
    await d.on_user_turn(1, tools.said[-1])
    await wait_for(lambda: said and said[-1].final, timeout=3)
    await d.close()
    assert [s.text for s in said if s.text] == spoken and APOLOGY not in spoken
    assert empty(outcome) == before + 1
    assert [name for name, _ in tools.calls] == [
        "book_appointment" if outcome == "tool" else "lookup_knowledge"
    ]


def leaks() -> float:
    return REGISTRY.get_sample_value("pa_llm_template_leaks_total", {"engine": "schema-script"}) or 0.0


PREAMBLE = [
    "You may call one or more functions to assist with the user query. ",
    "You are provided with function signatures within <tools></tools> XML tags: <tools>",
]


@pytest.mark.parametrize(
    ("free", "spoken"),
    [
        # the 1.5B model, after a booking the tool refused, over SIP
        (PREAMBLE, [APOLOGY]),
        (["We are open nine to five. ", *PREAMBLE], ["We are open nine to five."]),
    ],
)
async def test_the_chat_templates_own_words_are_never_said(free: list[str], spoken: list[str]) -> None:
    assert leaks_template(PREAMBLE[0]) and leaks_template("<|im_start|>assistant")
    assert leaks_template("Caller: I'd like a cleaning next Tuesday at 10.")  # its instructions' example
    assert leaks_template("[Facts for you, not said by the caller] Today is Sunday.")
    assert not leaks_template("Our caller ID shows your number.") and not leaks_template("The caller: you.")
    assert not leaks_template("We have three dentists, and one of them sees children.")
    said: list[Sentence] = []

    async def publish(s: Sentence) -> None:
        said.append(s)

    async def save(_: Any) -> None: ...

    engine = SchemaEngine(free, CALL)
    before = leaks()
    d = Dialog(
        "c-leak", engine, system_prompt=lambda: "x", greeting="", publish=publish, save=save, tools=Tools_()
    )  # type: ignore[arg-type]
    await d.on_user_turn(1, "Are you open today?")
    await wait_for(lambda: said and said[-1].final, timeout=3)
    await d.close()
    assert [s.text for s in said if s.text] == spoken
    assert leaks() == before + 1


def test_a_long_turn_gives_the_booking_only_the_sentences_that_name_the_time(agent: Agent) -> None:
    said = [
        "Hello, I am Jonathan Alexander Richardson, a new patient from out of town, and I have a question. "
        "I would like my first visit on Wednesday at 3 in the afternoon, please."
    ]
    assert len(said[0]) > WHEN_MAX_CHARS  # the tool's "when" refused it whole, and nothing was booked
    assert (
        caller_when(agent, said, NOW, exact=True)
        == "I would like my first visit on Wednesday at 3 in the afternoon, please."
    )


async def test_a_replica_that_takes_the_call_over_knows_the_booking_was_just_made(
    agent: Agent, store: SchedulingStore
) -> None:
    first = tools_for(agent, store)
    first.caller_said("Hi, this is Ann Lee. Please book a cleaning next Tuesday at 11 in the morning.")
    args = {"appointment_type": "cleaning", "when": "next Tuesday at 11 in the morning", "name": "Ann Lee"}
    assert (await first.run("book_appointment", args)).ok
    saved = DialogState.from_json(DialogState(tools=first.snapshot()).to_json())
    second = tools_for(agent, store)
    second.restore(saved.tools)
    second.caller_said("Yes, book it.")  # confirming, on the replica that took over
    assert not second.action_due()
    for bad in ({"turns": "3", "acted_turn": 1}, {"turns": 2, "acted_turn": 5}, {}):
        second.restore(bad)  # malformed: the counts start afresh, nothing raised
        assert (second.turns, second.acted_turn) == (0, -1)

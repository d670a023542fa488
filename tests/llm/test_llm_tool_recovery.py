"""A tool call with missing or invalid required arguments recovers: the knowledge tool takes the
caller's own question, or asks for it and runs once the caller answers; the schema check's words
("question: is required") are never spoken."""

from __future__ import annotations

import pytest
from phoneagent.agents.agent import Agent
from phoneagent.devtools.llm_eval import NOW
from phoneagent.llm.dialog_state import ToolOutcome
from phoneagent.llm.domain.knowledge import Passage
from phoneagent.llm.domain.scheduling import SchedulingStore
from phoneagent.llm.domain.tool_result import CallContext
from phoneagent.llm.domain.tools import ASK_AGAIN, ToolExecutor
from phoneagent.llm.prompting import ASK_QUESTION
from phoneagent.llm.tools import APPOINTMENT_TOOLS, Tools

INSURANCE = "We accept most PPO plans, including Delta Dental."


class Documents:
    """The knowledge base's search as the tool uses it (retrieval itself: test_llm_domain_knowledge)."""

    def __init__(self) -> None:
        self.questions: list[str] = []

    def search(self, question: str, k: int = 3, min_score: float = 0.2) -> list[Passage]:
        self.questions.append(question)
        return [Passage(INSURANCE, "prices.md", "Insurance", 0.8)]


def tools_for(agent: Agent, store: SchedulingStore, docs: Documents) -> Tools:
    executor = ToolExecutor(agent, store, docs, lambda: NOW)  # type: ignore[arg-type]
    return Tools(executor, CallContext("call-r", "+15552013344"), clock=lambda: NOW)


def answered_from_documents(outcome: ToolOutcome) -> bool:
    """The passage goes to the model as text, which phrases the answer; the passage itself is only
    what is said when the model's answer is unusable."""
    return (
        outcome.ok
        and not outcome.final
        and outcome.result["passages"] == [INSURANCE]
        and INSURANCE in outcome.for_model
        and outcome.spoken == INSURANCE
    )


@pytest.mark.parametrize("args", [{}, {"question": None}, {"question": ""}, {"query": "insurance"}])
async def test_the_knowledge_tool_without_its_question_uses_the_callers_words(
    agent: Agent, store: SchedulingStore, args: dict[str, object]
) -> None:
    docs = Documents()
    tools = tools_for(agent, store, docs)
    tools.caller_said("do you take delta dental insurance")
    outcome = await tools.run("lookup_knowledge", args)
    assert answered_from_documents(outcome)
    assert docs.questions == ["do you take delta dental insurance"]


async def test_with_nothing_to_go_on_the_caller_is_asked_and_the_answer_runs_it(
    agent: Agent, store: SchedulingStore
) -> None:
    docs = Documents()
    tools = tools_for(agent, store, docs)
    outcome = await tools.run("lookup_knowledge", {})  # no caller words yet (say, a fresh replica)
    assert outcome.spoken == ASK_QUESTION and "required" not in outcome.spoken
    tools.caller_said("do you take delta dental")
    call = tools.resume("do you take delta dental")
    assert call is not None and call["name"] == "lookup_knowledge"
    outcome = await tools.run(call["name"], call["arguments"])
    assert answered_from_documents(outcome) and docs.questions == ["do you take delta dental"]


async def test_other_invalid_arguments_ask_again_instead_of_reading_out_the_schema_check(
    agent: Agent, store: SchedulingStore
) -> None:
    tools = tools_for(agent, store, Documents())
    tools.caller_said("I'd like to leave a message")
    outcome = await tools.run("take_message", {"name": "Ann"})  # "message" is required
    assert outcome.spoken == ASK_AGAIN
    assert outcome.result["problems"] == "message: is required"


def test_the_grammar_offers_appointment_tools_only_when_the_caller_talks_about_one(
    agent: Agent, store: SchedulingStore
) -> None:
    tools = tools_for(agent, store, Documents())

    def offered() -> set[str]:
        return {t["function"]["name"] for t in tools.callable_schemas()}

    every = {t["function"]["name"] for t in tools.schemas()}
    tools.caller_said("how much is a cleaning")
    assert "lookup_knowledge" in offered() and not offered() & APPOINTMENT_TOOLS
    assert every >= APPOINTMENT_TOOLS  # the prompt still lists them all (its cached prefix stays)
    tools.caller_said("can I book one next Tuesday at ten")
    assert offered() == every - {"end_call"}
    tools.caller_said("yes please")  # accepting an offered slot, right after a booking turn
    assert offered() == every - {"end_call"}
    tools.caller_said("what happens if I cancel late?")
    tools.caller_said("and is there a fee for that?")
    assert not offered() & APPOINTMENT_TOOLS  # a question about cancelling
    tools.caller_said("Oh wait, can you cancel it?")  # asking to cancel, with no day or name
    assert offered() >= APPOINTMENT_TOOLS


def test_the_grammar_offers_hanging_up_only_when_the_caller_takes_their_leave(
    agent: Agent, store: SchedulingStore
) -> None:
    """Any other end_call is declined: to "Yes, please cancel." the 0.5B model wrote end_call,
    and the answer after the declined call said "You're cancelled." with nothing cancelled."""
    tools = tools_for(agent, store, Documents())

    def offered() -> set[str]:
        return {t["function"]["name"] for t in tools.callable_schemas()}

    assert "end_call" in {t["function"]["name"] for t in tools.schemas()}
    tools.caller_said("Oh wait, I can't make it after all. Can you cancel it?")
    tools.caller_said("Yes, please cancel.")
    assert "end_call" not in offered() and "cancel_appointment" in offered()
    tools.caller_said("No, that's all. Thanks, goodbye.")
    assert "end_call" in offered()


def test_the_grammar_leaves_out_arguments_the_caller_gave_nothing_for(
    agent: Agent, store: SchedulingStore
) -> None:
    """A phone number, notes, a booking reference and a date of birth are optional, and code
    keeps only what the caller said: the grammar does not let the model write them until the
    caller's words hold one (the prompt still lists them, so its cached prefix stays)."""
    tools = tools_for(agent, store, Documents())

    def arguments(name: str) -> set[str]:
        (tool,) = [t for t in tools.callable_schemas() if t["function"]["name"] == name]
        return set(tool["function"]["parameters"]["properties"])

    listed = {t["function"]["name"]: t for t in tools.schemas()}
    assert {"phone", "notes"} <= set(listed["book_appointment"]["function"]["parameters"]["properties"])
    tools.caller_said("Can I book a cleaning on Monday at ten? My name is Ana Diaz.")
    assert arguments("book_appointment") == {"appointment_type", "when", "name"}
    assert arguments("take_message") == {"name", "message", "urgent"}  # required ones always stay
    assert "reference" not in arguments("cancel_appointment")
    tools.caller_said("Please add a note that I use a wheelchair, and call me on 212 555 0147.")
    assert arguments("book_appointment") == {"appointment_type", "when", "name", "phone", "notes"}
    tools.caller_said("I want to cancel, my reference is four seven one two oh nine")
    assert "reference" in arguments("cancel_appointment")
    tools.caller_said("yes please")  # a reference counts only in the words that give it
    assert "reference" not in arguments("cancel_appointment")
    assert listed == {t["function"]["name"]: t for t in tools.schemas()}  # nothing changed in place


class Scored(Documents):
    def __init__(self, runner_up: float) -> None:
        super().__init__()
        self.runner_up = runner_up

    def search(self, question: str, k: int = 3, min_score: float = 0.2) -> list[Passage]:
        self.questions.append(question)
        return [
            Passage(INSURANCE, "prices.md", "Insurance", 0.70),
            Passage(
                "Outside opening hours, call the on-call dentist.",
                "practice.md",
                "Emergencies",
                self.runner_up,
            ),
        ]


@pytest.mark.parametrize(("runner_up", "read"), [(0.40, 1), (0.67, 2)])
async def test_the_model_reads_a_runner_up_passage_only_when_it_scored_close_to_the_best(
    agent: Agent, store: SchedulingStore, runner_up: float, read: int
) -> None:
    """A clear winner comes alone ("Do you accept Medicaid?": 0.71 against 0.41, ~30 tokens
    less to read); a runner-up as close as the prompt's own passages need comes with it (the
    embedding ranks "An emergency visit costs ..." 0.288 just above "New patients should ...
    bring ..." 0.270 for "What should I bring to my first visit?")."""
    executor = ToolExecutor(agent, store, Scored(runner_up), lambda: NOW)  # type: ignore[arg-type]
    tools = Tools(executor, CallContext("call-p", "+15552013344"), clock=lambda: NOW)
    tools.caller_said("do you take delta dental")
    outcome = await tools.run("lookup_knowledge", {"question": "delta dental"})
    assert outcome.ok and not outcome.final and outcome.spoken == INSURANCE
    assert INSURANCE in outcome.for_model
    assert ("on-call dentist" in outcome.for_model) is (read == 2)
    assert len(outcome.result["passages"]) == read


class Literal(Documents):
    """Finds the insurance paragraph only for a question that names the plan."""

    def search(self, question: str, k: int = 3, min_score: float = 0.2) -> list[Passage]:
        self.questions.append(question)
        found = "met life" in question.lower()
        return [Passage(INSURANCE, "prices.md", "Insurance", 0.8)] if found else []


async def test_a_question_the_model_rewrote_into_nothing_is_searched_in_the_callers_words(
    agent: Agent, store: SchedulingStore
) -> None:
    """Over SIP the 0.5B model asked the knowledge tool "Is life okay with you?" for "I have met
    life, is that okay with you?" and found nothing; the caller's own words find the paragraph.
    A question that finds something is not searched again."""
    docs = Literal()
    tools = tools_for(agent, store, docs)
    tools.caller_said("I have met life, is that okay with you?")
    outcome = await tools.run("lookup_knowledge", {"question": "Is life okay with you?"})
    assert answered_from_documents(outcome)
    assert docs.questions == ["Is life okay with you?", "I have met life, is that okay with you?"]
    docs.questions.clear()
    outcome = await tools.run("lookup_knowledge", {"question": "Do you accept Met Life?"})
    assert answered_from_documents(outcome) and docs.questions == ["Do you accept Met Life?"]
    # The caller's words themselves found nothing: they are not searched twice.
    tools.caller_said("what about the weather")
    docs.questions.clear()
    outcome = await tools.run("lookup_knowledge", {"question": "What about the weather?"})
    assert docs.questions == ["What about the weather?"]


class ByTopic(Documents):
    """The whitening paragraph for a question about whitening, the cancellation one otherwise."""

    def search(self, question: str, k: int = 3, min_score: float = 0.2) -> list[Passage]:
        self.questions.append(question)
        if "whitening" in question:
            return [Passage("Whitening costs 350 dollars.", "prices.md", "Prices", 0.6)]
        return [Passage("Cancel 24 hours ahead.", "practice.md", "Cancellations", 0.5)]


async def test_a_question_in_two_parts_gives_the_answer_a_passage_for_each_to_cover(
    agent: Agent, store: SchedulingStore
) -> None:
    docs = ByTopic()
    tools = tools_for(agent, store, docs)
    question = "Do you do whitening and how much notice do I need to give to cancel?"
    tools.caller_said(question)
    outcome = await tools.run("lookup_knowledge", {"question": question})
    assert outcome.result["passages"] == ["Whitening costs 350 dollars.", "Cancel 24 hours ahead."]
    assert outcome.result["parts"] is True and not outcome.final
    tools.caller_said("How much notice do I need to give to cancel?")
    outcome = await tools.run(
        "lookup_knowledge", {"question": "How much notice do I need to give to cancel?"}
    )
    assert "parts" not in outcome.result

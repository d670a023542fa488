"""A first reply without what the caller asked for is not said: over SIP the 0.5B model answered
"What time do you open on Monday, and is parking free?" with "The business is open on Monday
and is parking free on Wednesday." (``python -m phoneagent.devtools.sip_eval``, scenario
monday_and_parking). The model answers again from the knowledge tool's passages."""

from __future__ import annotations

from typing import Any

import pytest
from phoneagent.llm.dialog_state import Answered, ToolOutcome
from phoneagent.llm.domain.tool_schemas import tool_definitions
from phoneagent.llm.tool_calls import answer_kind, gives, written_as_code
from prometheus_client import REGISTRY
from test_llm_document_claims import scripted_turn

MONDAY_AND_PARKING = "What time do you open on Monday, and is parking free?"
HOURS = "Monday: 8 am to 5 pm."
PARKING = "Free parking for patients is available in the lot behind the building."


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        (MONDAY_AND_PARKING, "time"),
        ("When do you close on Friday?", "time"),
        ("what are your hours on saturday", "time"),
        ("How late are you open tomorrow?", "time"),
        ("How much is a cleaning?", "price"),
        ("what does whitening cost and how much notice do you need", "price"),
        ("Is there a fee if I cancel late?", "fee"),
        ("do you charge for x-rays", "fee"),
        # Not asked here: a yes/no question, an appointment's time (a tool finds it), the notice.
        ("Are you open on Monday?", None),
        ("When is my appointment?", None),
        ("When can I come in for a cleaning?", None),
        ("How much notice do you need?", None),
        ("What should new patients bring?", None),
    ],
)
def test_what_a_question_asks_for(question: str, kind: str | None) -> None:
    assert answer_kind(question) == kind


@pytest.mark.parametrize(
    ("kind", "sentence", "ok"),
    [
        ("time", "We open at 8 am on Monday.", True),
        ("time", "We're open from eight to five.", True),
        ("time", "We are closed on Sunday.", True),
        ("time", "The business is open on Monday and is parking free on Wednesday.", False),
        ("price", "A cleaning is 120 dollars.", True),
        ("price", "Whitening costs three hundred dollars.", True),
        ("price", "It is free for children under five.", True),
        ("price", "It depends on your insurance plan.", True),
        ("price", "to cancel an appointment.", False),
        ("fee", "Yes, late cancellations are charged 50 dollars.", True),
        ("fee", "No, there isn't.", True),
        ("fee", "Yes, there is a fee if you cancel late.", False),  # the 0.5B model over SIP
    ],
)
def test_what_a_sentence_gives(kind: str, sentence: str, ok: bool) -> None:
    assert gives(kind, sentence) is ok


class KnowledgeTools:
    def __init__(self, question: str) -> None:
        self.said = [question]
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def schemas(self) -> list[dict[str, Any]]:
        return tool_definitions(frozenset({"lookup_knowledge"}))

    def knowledge_call(self) -> dict[str, Any]:
        return {"name": "lookup_knowledge", "arguments": {"question": self.said[-1]}}

    async def run(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        self.calls.append((name, arguments))
        return ToolOutcome(ok=True, result={"passages": [HOURS, PARKING]})


def unanswered(kind: str) -> float:
    labels = {"engine": "claims-script", "kind": kind}
    return REGISTRY.get_sample_value("pa_llm_unanswered_replies_total", labels) or 0.0


async def _turn(question: str, *completions: str) -> tuple[list[tuple[str, Answered]], KnowledgeTools]:
    tools = KnowledgeTools(question)
    said = await scripted_turn(tools, *completions)
    return [(s.text.strip(), s.answered_by) for s in said], tools


async def test_a_reply_without_the_time_asked_for_is_answered_again_from_the_passages() -> None:
    before = unanswered("time")
    answer = "We open at 8 am on Monday, and parking is free in the lot behind the building."
    words, tools = await _turn(
        MONDAY_AND_PARKING, "The business is open on Monday and is parking free on Wednesday.", answer
    )
    assert " ".join(w for w, _ in words) == answer
    assert {how for _, how in words} == {Answered.MODEL}
    assert tools.calls == [("lookup_knowledge", {"question": MONDAY_AND_PARKING})]
    assert unanswered("time") == before + 1


async def test_a_reply_without_the_amount_asked_for_is_answered_again() -> None:
    before = unanswered("price")
    words, tools = await _turn(
        "How much is whitening?", "To cancel an appointment, please call us.", "Whitening is 300 dollars."
    )
    assert [w for w, _ in words] == ["Whitening is 300 dollars."]
    assert len(tools.calls) == 1 and unanswered("price") == before + 1


@pytest.mark.parametrize(
    "reply",
    [
        # The time comes after the first clause, which is held back until its sentence says it.
        "We are open on Monday from 8 am to 5 pm, and parking is free.",
        "Sure! We open at eight on Monday, and parking is free.",  # a short opener first
        "Which Monday do you mean, this week or next?",  # a question to the caller
    ],
)
async def test_a_reply_that_gives_the_time_is_said_as_the_model_wrote_it(reply: str) -> None:
    before = unanswered("time")
    words, tools = await _turn(MONDAY_AND_PARKING, reply)
    assert " ".join(w for w, _ in words) == reply
    assert tools.calls == [] and unanswered("time") == before


async def test_other_questions_are_not_held_to_an_answer_kind() -> None:
    reply = "New patients should arrive 15 minutes early and bring a photo ID."
    words, tools = await _turn("Do you see new patients?", reply)
    assert " ".join(w for w, _ in words) == reply and tools.calls == []


@pytest.mark.parametrize(
    ("sentence", "code"),
    [
        ('[Signa, "Signa", "Signa"]', True),  # the 0.5B model over SIP, to "Do you guys take Signa?"
        ('{"insurance": "Cigna"}', True),
        ('("Cigna")', True),
        ("[Cigna, Aetna]", True),
        ('[Signa, "Signa",', True),  # its first clause
        ("{Sorry} we are closed today.", False),
        ("Yes, we accept Cigna.", False),
        ('The "Bright Smile" plan costs 20 dollars.', False),
        ("We open at 9 (Monday to Friday).", False),
    ],
)
def test_a_sentence_written_as_code(sentence: str, code: bool) -> None:
    assert written_as_code(sentence) is code


def code_replies(outcome: str) -> float:
    labels = {"engine": "claims-script", "outcome": outcome}
    return REGISTRY.get_sample_value("pa_llm_code_replies_total", labels) or 0.0


async def test_a_reply_written_as_code_is_never_said() -> None:
    before = code_replies("lookup")
    answer = "Yes, we accept most plans, including Cigna."
    words, tools = await _turn("Do you guys take Signa?", '[Signa, "Signa", "Signa"]', answer)
    assert " ".join(w for w, _ in words) == answer
    assert len(tools.calls) == 1 and code_replies("lookup") == before + 1

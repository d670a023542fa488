"""A reply that says the opposite of the practice's documents is not said: over SIP the 0.5B
model answered "Do you take Medicaid?" with "Yes, we accept Medicaid." while its prompt held
"We do not accept Medicaid." (``python -m phoneagent.devtools.sip_eval``, scenario medicaid)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from phoneagent.agents import example_agent_path
from phoneagent.agents.agent import load_agent, read_documents
from phoneagent.llm.dialog import Dialog
from phoneagent.llm.dialog_state import Answered, DialogConfig, Sentence, ToolOutcome
from phoneagent.llm.domain.document_claims import DocumentClaims
from phoneagent.llm.domain.knowledge import KnowledgeBase
from phoneagent.llm.domain.tool_result import CallContext
from phoneagent.llm.domain.tool_schemas import tool_definitions
from phoneagent.llm.domain.tools import ToolExecutor
from phoneagent.llm.engines.base import Delta
from phoneagent.llm.tools import Tools
from prometheus_client import REGISTRY
from support.common import wait_for

NO_MEDICAID = "We do not accept Medicaid."
PLANS = "We accept most dental insurance plans, including Delta Dental, Cigna, MetLife and Aetna."


@pytest.fixture(scope="module")
def claims() -> DocumentClaims:
    return DocumentClaims(read_documents(load_agent(example_agent_path()).knowledge))


FEE = "Late cancellations and missed appointments are charged a 50 dollar fee."
DENTISTS = "The practice has three dentists: Dr. Alice Moreno, Dr. James Okafor and Dr. Priya Shah."
FREE_PARKING = "Free parking for patients is available in the lot behind the building."


@pytest.mark.parametrize(
    ("said", "contradicts", "strictly"),
    [
        ("Yes, we accept Medicaid.", NO_MEDICAID, NO_MEDICAID),
        ("We accept Delta Dental, Cigna and Medicaid.", NO_MEDICAID, NO_MEDICAID),
        ("No, we do not accept Delta Dental insurance.", PLANS, PLANS),
        ("We don't take Cigna or Aetna.", PLANS, PLANS),
        ("No fee if you cancel late.", FEE, None),  # the 0.5B model over SIP
        ("No, parking is not free.", FREE_PARKING, None),
        # May be right: the first check costs a lookup, the strict one lets it be said.
        ("No, Dr. Okafor is not the children's dentist.", DENTISTS, None),
        ("No, we do not accept Medicaid.", None, None),
        ("No, we don't take Medicaid, but we accept Delta Dental.", None, None),
        ("Yes, Delta Dental insurance is accepted.", None, None),
        ("Parking is free in the lot behind the building.", None, None),
        ("Do you have Medicaid?", None, None),  # a question claims nothing
        ("We do not offer sedation.", None, None),  # the documents say nothing about it
        ("No problem, I can help with that.", None, None),
    ],
)
def test_what_contradicts_the_documents(
    claims: DocumentClaims, said: str, contradicts: str | None, strictly: str | None
) -> None:
    found, strict = claims.contradicted(said), claims.contradicted(said, strict=True)
    assert (found.text if found else None, strict.text if strict else None) == (contradicts, strictly)


def test_headings_and_unreadable_documents_give_no_statements(tmp_path: Any) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("# We do not park\n\nParking is free.\n", encoding="utf-8")
    claims = DocumentClaims(read_documents([doc, tmp_path / "missing.md"]))
    assert [s.text for s in claims.statements] == ["Parking is free."]


class Script:
    """Each request replays the next completion."""

    name = "claims-script"
    structured_output = True

    def __init__(self, *completions: str) -> None:
        self.completions = list(completions)
        self.requests: list[dict[str, Any]] = []

    async def abort(self, request_id: str) -> None: ...

    async def stream(
        self, messages: list[dict[str, Any]], *, request_id: str, **kw: Any
    ) -> AsyncIterator[Delta]:
        self.requests.append(kw)
        for piece in self.completions.pop(0).split(" "):
            yield Delta(text=piece + " ")
        yield Delta(finish_reason="stop")


class KnowledgeTools:
    def __init__(self, claims: DocumentClaims) -> None:
        self.claims = claims
        self.said = ["Do you take Medicaid?"]
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def schemas(self) -> list[dict[str, Any]]:
        return tool_definitions(frozenset({"lookup_knowledge"}))

    def contradicted(self, sentence: str, strict: bool = False) -> str | None:
        found = self.claims.contradicted(sentence, strict=strict)
        return found.text if found else None

    def knowledge_call(self) -> dict[str, Any]:
        return {"name": "lookup_knowledge", "arguments": {"question": self.said[-1]}}

    async def run(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        self.calls.append((name, arguments))
        return ToolOutcome(ok=True, result={"passages": [PLANS + " " + NO_MEDICAID]})


def contradicted(outcome: str) -> float:
    labels = {"engine": "claims-script", "outcome": outcome}
    return REGISTRY.get_sample_value("pa_llm_contradicted_replies_total", labels) or 0.0


async def scripted_turn(
    tools: Any, *completions: str, engine: Any = None, config: DialogConfig | None = None
) -> list[Sentence]:
    """The sentences with words that one caller turn (``tools.said[-1]``) got from a scripted
    engine (``engine``, else one replaying ``completions``)."""
    said: list[Sentence] = []

    async def publish(s: Sentence) -> None:
        said.append(s)

    async def save(_: Any) -> None: ...

    d = Dialog(
        "c-claims",
        engine or Script(*completions),
        system_prompt=lambda: "x",
        greeting="",
        publish=publish,
        save=save,
        tools=tools,
        config=config,
    )  # type: ignore[arg-type]
    await d.on_user_turn(1, tools.said[-1])
    await wait_for(lambda: said and said[-1].final, timeout=3)
    await d.close()
    return [s for s in said if s.text.strip()]


def off_topic(reason: str) -> float:
    labels = {"engine": "claims-script", "reason": reason}
    return REGISTRY.get_sample_value("pa_llm_off_topic_replies_total", labels) or 0.0


@pytest.mark.parametrize(
    ("first", "after_lookup", "spoken", "how"),
    [
        (
            "Yes, we accept Medicaid.",
            "No, we do not accept Medicaid.",
            "No, we do not accept Medicaid.",
            Answered.MODEL,
        ),
        ("Yes, we accept Medicaid.", "Yes, we accept Medicaid.", NO_MEDICAID, Answered.CODE),  # wrong again
        # Broadly a contradiction, so the model answers again from the passages; the strict check
        # then lets the answer be said (it may be right).
        (
            "No fee if you cancel late.",
            "No fee if you cancel late.",
            "No fee if you cancel late.",
            Answered.MODEL,
        ),
    ],
)
async def test_a_reply_against_the_documents_is_answered_again_from_them(
    claims: DocumentClaims, first: str, after_lookup: str, spoken: str, how: Answered
) -> None:
    tools = KnowledgeTools(claims)
    before = (contradicted("lookup"), contradicted("statement"))
    said = await scripted_turn(tools, first, after_lookup)
    words = [(s.text.strip(), s.answered_by) for s in said]
    assert words == [(spoken, how)]
    assert tools.calls == [("lookup_knowledge", {"question": "Do you take Medicaid?"})]
    wrong_twice = how is Answered.CODE
    assert (contradicted("lookup"), contradicted("statement")) == (before[0] + 1, before[1] + wrong_twice)


@pytest.mark.parametrize(
    ("said", "name"),
    [
        ("The bus that goes to your office is Delta Dental.", "delta"),  # the 0.5B model over SIP
        ("Our children's dentist is Dr. Moreno.", "moreno"),
        ("You can park behind the building on Elm Street.", "elm"),
        # The name with words its sentences use, or with none the documents use at all.
        ("Yes, we accept Delta Dental.", None),
        ("Yes, Delta Dental insurance is accepted.", None),
        ("Dr. Priya Shah sees kids and teenagers.", None),
        ("Dr. Shah is our children's dentist.", None),
        ("Sorry, Medicaid isn't something we take.", None),
        ("Take bus line 7, it stops in front of the pharmacy on Maple Avenue.", None),
        ("Thank you for calling Bright Smile Dental.", None),  # the business's own name
        ("Bright Smile Dental is on the second floor above the pharmacy.", None),
        ("Is Dr. Moreno the children's dentist?", None),  # a question claims nothing
    ],
)
def test_a_name_put_where_the_documents_never_do(claims: DocumentClaims, said: str, name: str | None) -> None:
    assert claims.misplaced(said, known=["Bright Smile Dental"]) == name


class NamesTools(KnowledgeTools):
    def __init__(self, claims: DocumentClaims) -> None:
        super().__init__(claims)
        self.said = ["Which bus goes to your office?"]

    def misplaced(self, sentence: str) -> str | None:
        return self.claims.misplaced(sentence, known=["Bright Smile Dental"])

    async def run(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        self.calls.append((name, arguments))
        return ToolOutcome(ok=True, result={"passages": ["Bus line 7 stops in front of the pharmacy."]})


async def test_a_first_reply_with_a_misplaced_name_is_answered_again_from_the_passages(
    claims: DocumentClaims,
) -> None:
    tools = NamesTools(claims)
    before = off_topic("name")
    said = await scripted_turn(
        tools,
        "The bus that goes to your office is Delta Dental.",
        "Bus line 7 stops in front of the pharmacy.",
    )
    # The first phrase went out before the rest of its sentence arrived; the name was not said,
    # and the filler covers the lookup at once (over SIP the scripted caller hung up in the silence).
    spoken = [(s.text.strip(), s.answered_by) for s in said]
    assert spoken[0] == ("The bus that goes", Answered.MODEL)
    assert spoken[1] == ("One moment while I check.", Answered.CODE)
    assert " ".join(t for t, _ in spoken[2:]) == "Bus line 7 stops in front of the pharmacy."
    assert tools.calls == [("lookup_knowledge", {"question": "Which bus goes to your office?"})]
    assert off_topic("name") == before + 1


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeBase:
    from phoneagent.llm.domain.minilm import MiniLMEncoder

    agent = load_agent(example_agent_path())
    return KnowledgeBase(agent.knowledge, MiniLMEncoder(), cache_dir=tmp_path_factory.mktemp("kb"))


NOTICE = "Do you do whitening, and how much notice do I need to give to cancel?"
LATE_FEE = "Is there a fee if I cancel late?"


@pytest.mark.parametrize(
    ("question", "sentence", "off"),
    [
        # The 0.5B model over SIP read out the emergency paragraph to this question ...
        (
            NOTICE,
            "To cancel an appointment, please contact the on-call dentist at the number on our voicemail,",
            True,
        ),
        # ... and blended two paragraphs, neither about cancelling, into this answer.
        (
            LATE_FEE,
            "The fee for a dental emergency during opening hours is 95 dollars, plus the cost of any "
            "treatment.",
            True,
        ),
        (LATE_FEE, "Yes, late cancellations and missed appointments are charged a 50 dollar fee.", False),
        (
            "I have a bad toothache, what do I do tonight?",
            "Call the on-call dentist at the number on our voicemail.",
            False,
        ),
        (NOTICE, "Please cancel or move an appointment at least 24 hours in advance.", False),
        (NOTICE, "Teeth whitening in the office costs 350 dollars.", False),
        (
            "What should new patients bring?",
            "Bring a photo ID, your insurance card and a list of medications.",
            False,
        ),
        ("What should new patients bring?", "Sure, happy to help with that.", False),  # no document words
        ("Which bus goes to your office?", "Bus line 7 stops in front of the pharmacy.", False),
        # A paragraph the question matches, but far less than the one it is about (0.36, 0.71):
        # the 0.5B model's answers over SIP.
        (
            "Can I pay for a big treatment in monthly payments?",
            "We accept most dental insurance plans, including Delta Dental, Cigna, MetLife and Aetna.",
            True,
        ),
        (
            "which bus goes to your office.",
            "The business is going to your office at the 418 Maple Avenue, Springfield, on the second "
            "floor above the pharmacy.",
            True,
        ),
    ],
)
async def test_a_reply_that_reads_out_a_paragraph_the_question_does_not_match(
    kb: KnowledgeBase, question: str, sentence: str, off: bool
) -> None:
    agent = load_agent(example_agent_path())
    tools = Tools(ToolExecutor(agent, None, kb), CallContext("call-topic", "+12125550100"))
    tools.said = [question]
    assert await tools.off_topic(sentence) is off


# A right answer, as a model might phrase it, to each knowledge question of the scripted calls'
# three sets (harness/eval): the passage rule must let every one of them through.
RIGHT_ANSWERS = [
    (
        "What should new patients bring?",
        "Please bring a photo ID, your insurance card and a list of medications.",
    ),
    ("Who is the children's dentist?", "Dr. Priya Shah is our children's dentist."),
    ("Do you accept Delta Dental insurance?", "Yes, we accept Delta Dental and most dental insurance plans."),
    ("Do you take Medicaid?", "No, we do not accept Medicaid."),
    ("Is there somewhere to park?", "Yes, free parking is available in the lot behind the building."),
    (
        "How much is a cleaning without insurance?",
        "A cleaning with a check-up costs 120 dollars without insurance.",
    ),
    (
        "Where are you located?",
        "We are at 418 Maple Avenue, Springfield, on the second floor above the pharmacy.",
    ),
    (
        "Is there a fee if I cancel late?",
        "Yes, late cancellations and missed appointments are charged a 50 dollar fee.",
    ),
    (
        "I have a really bad toothache and my cheek is swollen. Can someone see me today?",
        "During opening hours we keep same-day emergency slots, so we can see you today.",
    ),
    (
        "How much does a filling cost, and can I book one?",
        "Tooth-coloured fillings start at 150 dollars per tooth.",
    ),
    (
        "What do I need to bring to my first appointment?",
        "Bring a photo ID, your insurance card and a list of medications.",
    ),
    ("Which of your dentists sees kids?", "Dr. Priya Shah sees kids and teenagers."),
    ("Do you guys take Cigna?", "Yes, we accept Cigna."),
    (
        "Can I pay for a big treatment in monthly payments?",
        "Yes, for treatments over 500 dollars you can pay in monthly instalments with a payment plan.",
    ),
    ("Which bus goes to your office?", "Bus line 7 stops in front of the pharmacy."),
    (
        "How much does teeth whitening cost?",
        "Teeth whitening in the office costs 350 dollars, and a take-home kit 200.",
    ),
    (
        "Do you do whitening, and how much notice do I need to give to cancel?",
        "Yes, whitening in the office costs 350 dollars, and please cancel at least 24 hours in advance.",
    ),
    ("Which street is your entrance on?", "The entrance is on Elm Street."),
    ("What do X-rays cost on top of a cleaning?", "X-rays add 45 dollars to a cleaning."),
    (
        "How much is the exam for a new patient?",
        "A new patient exam, including a full set of X-rays, costs 180 dollars.",
    ),
    ("I have MetLife, is that okay with you?", "Yes, we accept MetLife."),
    ("What happens if I just miss my appointment?", "Missed appointments are charged a 50 dollar fee."),
    (
        "How early should I get there for my first visit?",
        "New patients should arrive 15 minutes early to fill in forms.",
    ),
    (
        "What floor are you on, and where can I leave my car?",
        "We are on the second floor above the pharmacy, and free parking is in the lot behind the building.",
    ),
]


@pytest.mark.parametrize(("question", "sentence"), RIGHT_ANSWERS, ids=[q[:40] for q, _ in RIGHT_ANSWERS])
async def test_right_answers_to_the_scripted_calls_questions_are_on_topic(
    kb: KnowledgeBase, question: str, sentence: str
) -> None:
    agent = load_agent(example_agent_path())
    tools = Tools(ToolExecutor(agent, None, kb), CallContext("call-topic", "+12125550100"))
    tools.said = [question]
    assert not await tools.off_topic(sentence)
    assert tools.misplaced(sentence) is None


class PassageTools(NamesTools):
    def misplaced(self, sentence: str) -> str | None:
        return None

    async def off_topic(self, sentence: str) -> bool:
        return "voicemail" in sentence


async def test_a_first_reply_that_reads_out_the_wrong_paragraph_is_answered_again(
    claims: DocumentClaims,
) -> None:
    tools = PassageTools(claims)
    before = off_topic("passage")
    said = await scripted_turn(
        tools, "Please call the number on our voicemail.", "Bus line 7 stops in front of the pharmacy."
    )
    spoken = " ".join(s.text.strip() for s in said)
    assert "voicemail" not in spoken and spoken.endswith("Bus line 7 stops in front of the pharmacy.")
    assert off_topic("passage") == before + 1


class SlowAfterTool(Script):
    """The answer after the tool starts only after ``delay_s`` (its prompt being read)."""

    def __init__(self, *completions: str, delay_s: float) -> None:
        super().__init__(*completions)
        self.delay_s = delay_s
        self.calls = 0

    async def stream(
        self, messages: list[dict[str, Any]], *, request_id: str, **kw: Any
    ) -> AsyncIterator[Delta]:
        self.calls += 1
        if self.calls > 1:
            await asyncio.sleep(self.delay_s)
        async for delta in super().stream(messages, request_id=request_id, **kw):
            yield delta


@pytest.mark.parametrize(("delay_s", "filler"), [(0.05, False), (1.0, True)])
async def test_a_reply_that_began_has_the_filler_when_its_answer_is_slow(
    claims: DocumentClaims, delay_s: float, filler: bool
) -> None:
    """Over SIP "I can help you with that." went out, the next sentence read out the wrong
    paragraph, and the answer from the passages came after the scripted caller had hung up."""
    engine = SlowAfterTool(
        "I can help you with that. Call our voicemail.",
        "Please cancel at least 24 hours in advance.",
        delay_s=delay_s,
    )
    said = await scripted_turn(PassageTools(claims), engine=engine, config=DialogConfig(filler_after_s=0.5))
    texts = [s.text.strip() for s in said if s.text.strip()]
    fillers = [s for s in said if s.text == "One moment while I check."]
    assert " ".join(texts).startswith("I can help you with that.") and texts[-1].endswith("in advance.")
    assert "voicemail" not in " ".join(texts)
    assert len(fillers) == filler and all(s.answered_by is Answered.CODE for s in fillers)
    assert [s.seq for s in said] == list(range(len(said)))

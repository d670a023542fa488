"""Short documents go in the system prompt, evaluated once; longer ones are searched per turn.

With the example practice's two documents (~3,900 characters) in the prompt, a model turn on the
0.5B model evaluated a median of 17 new prompt tokens instead of 73, because no turn carries a
retrieved passage any more (``python -m phoneagent.devtools.llm_turns``)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from phoneagent.agents import example_agent_path
from phoneagent.agents.agent import load_agent
from phoneagent.llm.domain.calendar_facts import agent_passages
from phoneagent.llm.domain.knowledge import KnowledgeBase
from phoneagent.llm.domain.tools import CallContext, ToolExecutor
from phoneagent.llm.prompting import (
    DOCUMENTS_HEADER,
    KNOWLEDGE_BY_PASSAGE,
    KNOWLEDGE_IN_PROMPT,
    Prompter,
    prompt_documents,
)
from phoneagent.llm.settings import PROMPT_DOCUMENTS_CHARS, LlmSettings
from phoneagent.runtime.settings import SettingsError, load


class WordEncoder:
    """Bag of words hashed into 384 dimensions: enough for search to find a paragraph that
    shares the question's words, without the MiniLM weights."""

    def encode(self, texts: Sequence[str], batch_size: int = 8) -> np.ndarray:
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().replace("?", " ").replace(".", " ").split():
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % 384] += 1.0
            out[i] /= max(float(np.linalg.norm(out[i])), 1e-9)
        return out


@pytest.fixture
def agent():  # type: ignore[no-untyped-def]
    return load_agent(example_agent_path())


@pytest.fixture
def kb(agent, tmp_path: Path) -> KnowledgeBase:  # type: ignore[no-untyped-def]
    return KnowledgeBase(agent.knowledge, WordEncoder(), cache_dir=tmp_path, extra=agent_passages(agent))


def tool_names(executor: ToolExecutor) -> set[str]:
    return {t["function"]["name"] for t in executor.definitions()}


def test_short_documents_are_all_in_the_system_prompt_and_no_turn_carries_a_passage(agent, kb) -> None:  # type: ignore[no-untyped-def]
    prompter = Prompter(agent, None, kb)
    prompt = prompter.system_prompt()
    assert prompter.documents is not None
    assert DOCUMENTS_HEADER in prompt and KNOWLEDGE_IN_PROMPT in prompt and KNOWLEDGE_BY_PASSAGE not in prompt
    for fact in (
        "We do not accept Medicaid.",
        "Dr. Priya Shah is our children's dentist",
        "costs 180 dollars",
    ):
        assert fact in prompt
    assert "Prices:" in prompt and "Insurance and payment:" in prompt  # headings kept as context
    # The configured hours are a static fact already; they are not repeated as a document.
    assert prompt.count("is open Monday and Tuesday") == 1 and "We are open Monday" not in prompt
    # The documents come last (see Prompter.system_prompt).
    assert prompt.index(DOCUMENTS_HEADER) > prompt.index("</tool_call>")
    context = prompter.turn_context("Do you accept Medicaid?")
    assert "Medicaid" not in context and "From the practice's documents" not in context


async def test_the_knowledge_tool_is_still_there_for_a_model_that_asks_for_it(agent, kb) -> None:  # type: ignore[no-untyped-def]
    executor = ToolExecutor(agent, knowledge=kb)
    assert "lookup_knowledge" in tool_names(executor)
    # the test's bag-of-words encoder ranks by shared words ("the" counts): a question with few
    question = {"question": "Which dentist sees kids?"}
    result = await executor.execute("lookup_knowledge", question, CallContext("c1"))
    assert result.ok and any("Priya Shah" in p["text"] for p in result.data["passages"])


def test_longer_documents_are_searched_and_ride_with_the_callers_words(agent, kb) -> None:  # type: ignore[no-untyped-def]
    total = len(prompt_documents(kb, 10**6) or "")
    assert total > 1000
    prompter = Prompter(agent, None, kb, documents_chars=total - 1)
    assert prompter.documents is None
    prompt = prompter.system_prompt()
    assert DOCUMENTS_HEADER not in prompt and "Medicaid" not in prompt and KNOWLEDGE_BY_PASSAGE in prompt
    context = prompter.turn_context("Do you accept Medicaid insurance?")
    assert "From the practice's documents:" in context and "Medicaid" in context
    assert Prompter(agent, None, kb, documents_chars=total).documents is not None  # the limit is inclusive


def test_no_documents_or_a_zero_limit_keeps_the_prompt_as_it_was(agent, kb) -> None:  # type: ignore[no-untyped-def]
    assert prompt_documents(None, 6000) is None
    assert prompt_documents(kb, 0) is None
    assert Prompter(agent).system_prompt() == Prompter(agent, None, kb, documents_chars=0).system_prompt()


def test_the_setting_is_read_and_checked() -> None:
    assert load(LlmSettings, {}).prompt_documents_chars == PROMPT_DOCUMENTS_CHARS
    assert load(LlmSettings, {"PA_LLM_PROMPT_DOCUMENTS_CHARS": "0"}).prompt_documents_chars == 0
    with pytest.raises(SettingsError, match="PA_LLM_PROMPT_DOCUMENTS_CHARS"):
        load(LlmSettings, {"PA_LLM_PROMPT_DOCUMENTS_CHARS": "-1"})

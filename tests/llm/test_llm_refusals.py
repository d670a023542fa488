"""A bare refusal is never said: over SIP the 0.5B model answered "I have a really bad toothache
and my cheek is swollen. Can someone see me today?" and "I need a cleaning Monday at 9. Sorry, I
meant 10." with "I'm sorry, but I can't assist with that." (``python -m
phoneagent.devtools.sip_eval``, scenarios toothache and h_book_corrected)."""

from __future__ import annotations

import pytest
from phoneagent.llm.replies import APOLOGY
from phoneagent.llm.tool_calls import refuses
from prometheus_client import REGISTRY
from test_llm_tool_calls import CALL, SchemaEngine, Tools, talk


@pytest.mark.parametrize(
    ("sentence", "bare"),
    [
        ("I'm sorry, but I can't assist with that.", True),
        ("Sorry, but I can't assist with that.", True),
        ("I'm afraid I'm unable to help.", True),
        ("I cannot help you with this request.", True),
        ("but I can't assist with that.", True),  # after "I'm sorry," went out as the first clause
        ("I can't give medical advice, but we keep same-day emergency slots.", False),
        ("I can't help with that, but I can take a message.", False),
        ("Sure, I can help with that.", False),
    ],
)
def test_what_a_bare_refusal_is(sentence: str, bare: bool) -> None:
    assert refuses(sentence) is bare


def refusals(outcome: str) -> float:
    labels = {"engine": "schema-script", "outcome": outcome}
    return REGISTRY.get_sample_value("pa_llm_refusals_total", labels) or 0.0


async def spoken_to(engine: SchemaEngine, caller: str) -> tuple[Tools, list[str]]:
    tools, said = await talk(engine, caller)
    return tools, [s.text for s in said if s.text]


async def test_a_refusal_makes_way_for_the_tool_call() -> None:
    before = refusals("tool")
    engine = SchemaEngine(["Hello, Morgan. ", "Sorry, but I can't assist with that."], CALL, continues=True)
    tools, spoken = await spoken_to(engine, "I need a cleaning Monday at 9. Sorry, I meant 10.")
    assert spoken == ["Hello, Morgan.", "Booked."] and len(tools.calls) == 1
    assert refusals("tool") == before + 1


async def test_a_refusal_without_a_tool_to_call_is_dropped() -> None:
    before = refusals("dropped")
    engine = SchemaEngine(["I'm sorry, but I can't assist with that."], CALL, grammar_ok=False)
    engine.structured_output = False  # no grammar: the reply cannot be turned into a call
    tools, spoken = await spoken_to(engine, "Can someone see me today?")
    assert spoken == ["I'm sorry,", APOLOGY] and not tools.calls  # the first clause had gone out
    assert refusals("dropped") == before + 1

"""Schema-constrained tool calls with the real Qwen2.5-Coder-0.5B model: for several booking
phrasings the tool call is generated under the tools' JSON schemas (a llama.cpp grammar), so
the raw call is valid JSON that matches the booking tool's schema, and nothing is repaired."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from phoneagent.devtools.llm_eval import Rig, evaluate
from phoneagent.devtools.llm_eval_phrasings import PHRASINGS
from phoneagent.llm.domain.schema_check import validate
from phoneagent.llm.domain.tool_schemas import TOOL_SCHEMAS
from prometheus_client import REGISTRY
from support.llm import needs

pytestmark = [pytest.mark.slow, needs("llama_cpp", what="llama-cpp-python")]

SAMPLED = ("cleaning-next-tue", "checkup-friday", "filling-the-3rd")


def repairs() -> float:
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name == "pa_llm_tool_call_repairs":
            total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
    return total


@pytest.fixture(scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    r = await Rig.open(tmp_path_factory.mktemp("llm-calls"), knowledge=False, max_tokens=48)
    yield r
    await r.close()


async def test_booking_tool_calls_match_the_schema_without_repair(rig: Rig) -> None:
    phrasings = tuple(p for p in PHRASINGS if p.key in SAMPLED)
    assert len(phrasings) == len(SAMPLED)
    before = repairs()
    results = await evaluate(rig, phrasings)
    for r in results:
        calls = [(name, args) for name, args, _ in r.tools if not name.endswith("*")]
        assert calls, f"{r.phrasing.key}: the model made no tool call ({r.replies})"
        name, args = calls[0]
        # The model's tool (code may make it another: a day with no time and no name is an
        # availability check, "book_appointment>check_availability").
        assert name.split(">")[0] == "book_appointment", (r.phrasing.key, name)
        assert validate(args, TOOL_SCHEMAS["book_appointment"]["parameters"]) == [], (r.phrasing.key, args)
    assert repairs() == before, "a tool call was read back with repairs instead of under the schema"
    assert sum(r.ok for r in results) >= len(results) - 1, [(r.phrasing.key, r.detail) for r in results]

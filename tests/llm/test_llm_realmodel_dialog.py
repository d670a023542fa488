"""The dialog with the real Qwen2.5-Coder-0.5B model, real tools, a real SQLite appointment
book and the example practice's documents, in process (no bus): bookings from caller phrasings
(an honest success count with a floor), knowledge answers, a transfer request, barge-in
truncation, and a failing appointment book."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from phoneagent.devtools.llm_eval import NOW, RecordingTools, Rig, evaluate, say, table
from phoneagent.devtools.llm_eval_phrasings import PHRASINGS
from phoneagent.llm.dialog_state import Sentence
from phoneagent.llm.domain.scheduling import SchedulingStore
from phoneagent.llm.domain.tool_result import CallContext
from phoneagent.llm.domain.tools import ToolExecutor
from support.llm import needs

pytestmark = [
    pytest.mark.slow,
    needs("llama_cpp", what="llama-cpp-python"),  # fails instead in CI
]

# Measured 11/11 booked (temperature 0, one decoding thread); the floor sits just below it. The
# model's own words for the day and time were right in 6/11: the rest come from the caller's words.
BOOKING_FLOOR = 10
MODEL_WHEN_FLOOR = 5


@pytest.fixture(scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    r = await Rig.open(tmp_path_factory.mktemp("llm-real"), max_tokens=48)
    await r.warm_up()
    yield r
    await r.close()


class Heard:
    """Collects published sentences; ``first`` is set once a non-empty sentence is out."""

    def __init__(self) -> None:
        self.sentences: list[Sentence] = []
        self.first = asyncio.Event()

    async def __call__(self, s: Sentence) -> None:
        self.sentences.append(s)
        if s.text:
            self.first.set()


async def test_booking_phrasings_success_count(rig: Rig) -> None:
    results = await evaluate(rig, PHRASINGS)
    report = table(results, verbose=True)
    print("\n" + report)
    assert len(results) >= 10
    assert sum(r.ok for r in results) >= BOOKING_FLOOR, report
    assert sum(r.model_when for r in results) >= MODEL_WHEN_FLOOR, report
    # A booking on the wrong day, time or type is worse than none: there must be none.
    wrong = [r.phrasing.key for r in results if not r.ok and r.detail != "no booking"]
    assert not wrong, report


@pytest.mark.parametrize(
    ("question", "facts"),
    [
        ("Do you take insurance?", ("delta dental", "cigna", "metlife", "aetna")),
        ("How much is a cleaning?", ("120",)),
        ("Sorry, are you open on Saturday?", ("saturday 28 november we are closed",)),  # on Monday 23 Nov
    ],
)
async def test_knowledge_answer_carries_the_documented_fact(
    rig: Rig, question: str, facts: tuple[str, ...]
) -> None:
    dialog, _ = rig.dialog(f"kb-{facts[0]}")
    try:
        replies = await say(dialog, question, [])
    finally:
        await dialog.close()
    answer = " ".join(replies).lower()
    assert any(f in answer for f in facts), answer


async def test_asking_for_a_person_transfers_the_call(rig: Rig) -> None:
    actions: list[tuple[str, dict[str, Any]]] = []

    async def action(name: str, result: dict[str, Any]) -> None:
        actions.append((name, result))

    dialog, tools = rig.dialog("transfer", action=action)
    try:
        replies = await say(dialog, "Can I talk to a real person, please?", [])
    finally:
        await dialog.close()
    assert [c[0].split(">")[-1] for c in tools.calls] == ["transfer_to_human"]
    # Monday 9:30 am: the front desk is staffed, so the service is told to transfer.
    assert actions == [("transfer_to_human", {"status": "ok", "transferred": True, "target_kind": "sip"})]
    assert " ".join(replies) == "I'll put you through now."


async def test_barge_in_keeps_only_what_the_caller_heard(rig: Rig) -> None:
    heard = Heard()
    dialog, _ = rig.dialog("barge", publish=heard)
    try:
        await dialog.on_user_turn(1, "Tell me about the practice: where are you, and who are the dentists?")
        reply = dialog.reply
        assert reply is not None
        await asyncio.wait_for(heard.first.wait(), 60)
        first = next(s for s in heard.sentences if s.text)
        await dialog.on_barge_in(first.generation, 0, 12)
        assert reply.task is not None and reply.task.done()
        published = len(heard.sentences)
        assert dialog.state.history[-1] == {"role": "assistant", "content": first.text[:12].rstrip() + "..."}
        # Nothing more comes out of the aborted generation, and the next turn is answered.
        replies = await say(dialog, "Thanks. Are you open on Saturday?", [])
        assert replies and heard.sentences[published].generation > first.generation
        assert all(s.generation != first.generation for s in heard.sentences[published:])
    finally:
        await dialog.close()


async def test_failing_appointment_book_gives_an_apology_and_the_call_goes_on(
    rig: Rig, tmp_path: Path
) -> None:
    broken = SchedulingStore.open(f"sqlite:///{tmp_path / 'broken.db'}", rig.agent, lambda: NOW)
    broken.db.close()  # every query now raises inside the tool
    dialog, _ = rig.dialog("broken")
    failing = RecordingTools(
        ToolExecutor(rig.agent, broken, rig.knowledge, lambda: NOW), CallContext("broken", "+15550001111")
    )
    dialog.tools = failing
    try:
        replies = await say(dialog, "Book me a cleaning tomorrow at 11 am, my name is Ann Lee.", [])
        assert [c[2] for c in failing.calls] == ["error"]
        assert " ".join(replies) == "Sorry, something went wrong on my side."
        dialog.tools = RecordingTools(rig.executor, CallContext("broken", "+15550001111"))
        replies = await say(dialog, "Okay. How much is a cleaning?", [])
        assert "120" in " ".join(replies)
    finally:
        await dialog.close()

"""A caller who corrects the time of a booking in the call ends up with one appointment, at the
corrected time, under their own name: a scripted caller's "... a cleaning Monday at nine. Sorry, I
meant ten." then "Yes, ten o'clock Monday please." was booked twice (at nine, from the first time
said, and at ten under the name "10 o'clock Monday, please")."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from phoneagent.agents.agent import Agent
from phoneagent.llm.domain.scheduling import SchedulingStore
from phoneagent.llm.domain.tool_result import CallContext
from phoneagent.llm.domain.tools import ToolExecutor
from phoneagent.llm.tools import Tools

CALLER = "+12125556210"
NOW = datetime(2026, 12, 5, 1, 0, tzinfo=UTC)  # Friday 4 December, 8 pm in New York (as the eval ran)


@pytest.fixture
def store(agent: Agent, tmp_path: Path) -> Iterator[SchedulingStore]:
    s = SchedulingStore.open(f"sqlite:///{tmp_path / 'book.db'}", agent, clock=lambda: NOW)
    yield s
    s.db.close()


def tools_for(agent: Agent, store: SchedulingStore) -> Tools:
    executor = ToolExecutor(agent, store, None, lambda: NOW)
    return Tools(executor, CallContext("call-c", CALLER), clock=lambda: NOW)


async def test_a_corrected_time_books_once_at_the_time_meant(agent: Agent, store: SchedulingStore) -> None:
    tools = tools_for(agent, store)
    tools.caller_said("Hi, it's Riley Stone, a cleaning on Monday at nine please. Sorry, I meant ten.")
    # What a small model writes: the first time it read, and the caller's name.
    outcome = await tools.run(
        "book_appointment", {"appointment_type": "cleaning", "when": "Monday at nine", "name": "Riley Stone"}
    )
    assert outcome.ok and "Monday 7 December at 10 am" in outcome.spoken, outcome.spoken
    tools.caller_said("Yes, 10 o'clock Monday, please.")  # as the ASR wrote it
    outcome = await tools.run(
        "book_appointment",
        {"appointment_type": "cleaning", "when": "ten o'clock Monday", "name": "10 o'clock Monday, please"},
    )
    assert outcome.ok and outcome.result.get("already_booked") is True, outcome
    booked = store.find_by_phone(CALLER)
    assert [(a.caller_name, a.start.hour, a.start.minute) for a in booked] == [("Riley Stone", 10, 0)]


async def test_a_correction_after_the_booking_moves_it(agent: Agent, store: SchedulingStore) -> None:
    tools = tools_for(agent, store)
    tools.caller_said("Hi, I'm Dana Kim, I need a filling on Monday at eleven.")
    args = {"appointment_type": "filling", "when": "Monday at eleven", "name": "Dana Kim"}
    assert (await tools.run("book_appointment", args)).ok
    tools.caller_said("Actually no, make that one in the afternoon.")
    outcome = await tools.run("book_appointment", {**args, "when": "one in the afternoon"})
    assert outcome.ok and outcome.spoken.startswith("I've changed your booking"), outcome.spoken
    booked = store.find_by_phone(CALLER)
    assert [(a.caller_name, a.start.hour) for a in booked] == [("Dana Kim", 13)]

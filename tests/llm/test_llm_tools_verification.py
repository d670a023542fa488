"""Caller verification through the dialog's tool adapter: the reference is taken from what the
caller said (never a number they said as identity, never one the model made up), asked for and
resumed in code, kept out of the call record, and a verification outlives a replica takeover."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from phoneagent.agents.agent import Agent
from phoneagent.devtools.llm_eval import NOW  # the store's clock too: Monday 9:30 am in New York
from phoneagent.llm.dialog_state import DialogState
from phoneagent.llm.domain.booking_access import ASK_BIRTH_DATE, ASK_REFERENCE, ASK_REFERENCE_OR_BIRTH, LOCKED
from phoneagent.llm.domain.scheduling import SchedulingStore
from phoneagent.llm.domain.tool_result import CallContext
from phoneagent.llm.domain.tools import ToolExecutor
from phoneagent.llm.domain.verification import MAX_FAILURES, VERIFICATION_FAILURES
from phoneagent.llm.tools import Tools

ANN = "+15552013344"
MALLORY = "+15550009999"


@pytest.fixture(autouse=True)
def references(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bookings get known, distinct references, so a "wrong" one in a test is never right by chance."""
    drawn = iter(["471209", "308512", "650274", "119834", "902746"])
    monkeypatch.setattr("phoneagent.llm.domain.scheduling.new_reference", lambda: next(drawn))


def adapter(agent: Agent, store: SchedulingStore, caller: str, records: list[Any] | None = None) -> Tools:
    async def record(msg: Any) -> None:
        if records is not None:
            records.append(msg)

    executor = ToolExecutor(agent, SchedulingStore(store.db, agent, store.now))
    return Tools(executor, CallContext(f"call-{caller}", caller), lambda: NOW, record)


def book(store: SchedulingStore, agent: Agent) -> tuple[str, str]:
    r = store.book("cleaning", store.free_slots("cleaning", [NOW.date()], limit=1)[0].start, "Ann", ANN)
    return r.id, r.reference


async def test_a_number_said_on_the_call_is_not_looked_up(agent: Agent, store: SchedulingStore) -> None:
    appt_id, reference = book(store, agent)
    tools = adapter(agent, store, MALLORY)
    tools.caller_said(f"My number is 555 201 3344 and my reference is {reference}, when is my appointment?")
    outcome = await tools.run("find_appointments", {"phone": "555 201 3344", "reference": reference})
    assert outcome.result["status"] == "needs_input" and "appointments" not in outcome.result
    assert appt_id not in str(outcome.result) and outcome.final


async def test_the_reference_is_asked_for_and_the_answer_runs_the_tool_in_code(
    agent: Agent, store: SchedulingStore
) -> None:
    _, reference = book(store, agent)
    tools = adapter(agent, store, ANN)
    tools.caller_said("when is my appointment")
    outcome = await tools.run("find_appointments", {})
    assert outcome.spoken == ASK_REFERENCE and outcome.final
    answer = "it's " + " ".join(reference)
    tools.caller_said(answer)
    resumed = tools.resume(answer)
    assert resumed == {"name": "find_appointments", "arguments": {"reference": reference}}
    outcome = await tools.run(resumed["name"], resumed["arguments"])
    assert outcome.ok and outcome.spoken == "You have cleaning on Monday 23 November at 10:30 am."
    tools.caller_said("can you move it to friday at 10:30")
    outcome = await tools.run("move_appointment", {"new_when": "friday at 10:30"})  # no second ask
    assert outcome.ok and outcome.spoken == "Done: your appointment is now on Friday 27 November at 10:30 am."


async def test_a_reference_the_model_made_up_is_dropped(agent: Agent, store: SchedulingStore) -> None:
    book(store, agent)
    tools = adapter(agent, store, ANN)
    tools.caller_said("I need to cancel my appointment")
    before = float(VERIFICATION_FAILURES.labels(reason="no_match")._value.get())
    outcome = await tools.run("cancel_appointment", {"reference": "123456"})
    assert outcome.spoken == ASK_REFERENCE  # asked for, not a wasted try
    assert float(VERIFICATION_FAILURES.labels(reason="no_match")._value.get()) == before


async def test_a_verification_and_the_failed_tries_survive_a_takeover(
    agent: Agent, store: SchedulingStore
) -> None:
    _, reference = book(store, agent)
    first = adapter(agent, store, ANN)
    first.caller_said("the reference is 000000")
    assert (await first.run("find_appointments", {"reference": "000000"})).result["status"] == "needs_input"
    first.caller_said(f"sorry, it is {reference}")
    assert (await first.run("find_appointments", {"reference": reference})).ok
    saved = DialogState.from_json(DialogState(tools=first.snapshot()).to_json())

    second = adapter(agent, store, ANN)  # another replica, a fresh context for the same call
    second.restore(saved.tools)
    assert second.ctx.verification.failures == 1
    second.caller_said("please cancel it")
    outcome = await second.run("cancel_appointment", {})
    assert outcome.ok and outcome.spoken.startswith("Your appointment on Monday 23 November")

    locked = adapter(agent, store, ANN)
    locked.restore({"verification": {"verified": [], "failures": MAX_FAILURES}})
    locked.caller_said(f"my reference is {reference}")
    outcome = await locked.run("find_appointments", {"reference": reference})
    assert outcome.spoken.startswith(LOCKED)


def test_a_malformed_saved_verification_is_dropped(agent: Agent, store: SchedulingStore) -> None:
    tools = adapter(agent, store, ANN)
    for saved in ({"verification": "yes"}, {"verification": {"verified": "all", "failures": -3}}):
        tools.restore(saved)
        assert tools.ctx.verification.verified == set() and tools.ctx.verification.failures == 0
    tools.restore({"verification": {"verified": ["abc", 7, ""], "failures": True}})
    assert tools.ctx.verification.verified == {"abc"} and tools.ctx.verification.failures == 0


async def test_the_call_record_never_holds_the_reference(agent: Agent, store: SchedulingStore) -> None:
    records: list[Any] = []
    tools = adapter(agent, store, ANN, records)
    tools.caller_said("a cleaning next tuesday at 9, my name is Ann Lee")
    booked = await tools.run(
        "book_appointment", {"appointment_type": "cleaning", "when": "next tuesday at 9", "name": "Ann Lee"}
    )
    reference = booked.result["reference"]
    assert booked.ok and reference in booked.spoken
    tools.caller_said(f"what do I have booked? my reference is {reference}")
    assert (await tools.run("find_appointments", {"reference": reference})).ok
    recorded = [getattr(m, "arguments_json", "") + getattr(m, "result_json", "") for m in records]
    assert len(recorded) == 4 and all(reference not in text for text in recorded)
    assert '"reference": "[reference]"' in recorded[1] + recorded[2]


async def test_the_date_of_birth_is_asked_for_at_booking_and_proves_the_booking_later(
    agent: Agent, store: SchedulingStore
) -> None:
    collecting = dataclasses.replace(agent, collect_date_of_birth=True)
    records: list[Any] = []
    tools = adapter(collecting, store, ANN, records)
    tools.caller_said("a cleaning next tuesday at 9, my name is Ann Lee")
    model = {"appointment_type": "cleaning", "when": "next tuesday at 9", "name": "Ann Lee"}
    outcome = await tools.run("book_appointment", {**model, "date_of_birth": "1970-01-01"})  # made up
    assert outcome.spoken == ASK_BIRTH_DATE
    tools.caller_said("It's March 14th, 1980.")
    resumed = tools.resume("It's March 14th, 1980.")
    assert resumed is not None and resumed["arguments"]["date_of_birth"] == "1980-03-14"
    booked = await tools.run(resumed["name"], resumed["arguments"])
    assert booked.ok and booked.spoken.startswith("You're booked for cleaning on Tuesday 1 December at 9 am.")
    recorded = " ".join(getattr(m, "arguments_json", "") + getattr(m, "result_json", "") for m in records)
    assert "1980" not in recorded and '"date_of_birth": "[date_of_birth]"' in recorded

    later = adapter(collecting, store, ANN)
    later.caller_said("I'd like to cancel my cleaning")
    assert (await later.run("cancel_appointment", {})).spoken == ASK_REFERENCE_OR_BIRTH
    later.caller_said("the fourteenth of March nineteen eighty")
    resumed = later.resume("the fourteenth of March nineteen eighty")
    assert resumed == {"name": "cancel_appointment", "arguments": {"date_of_birth": "1980-03-14"}}
    outcome = await later.run(resumed["name"], resumed["arguments"])
    assert outcome.ok and outcome.spoken == "Your appointment on Tuesday 1 December at 9 am is cancelled."


async def test_a_wrong_reference_said_before_is_not_tried_again(agent: Agent, store: SchedulingStore) -> None:
    _, reference = book(store, agent)
    tools = adapter(agent, store, ANN)
    tools.caller_said("my reference is 000000")
    assert (await tools.run("find_appointments", {"reference": "000000"})).result["attempts_left"] == 2
    tools.caller_said("hmm, can you just move it to friday at 10:30")
    outcome = await tools.run("move_appointment", {"new_when": "friday at 10:30", "reference": "000000"})
    assert outcome.spoken == ASK_REFERENCE and tools.ctx.verification.failures == 1
    tools.caller_said(f"oh, it's {reference}")
    resumed = tools.resume(f"oh, it's {reference}")
    assert resumed is not None and resumed["arguments"]["reference"] == reference
    outcome = await tools.run(resumed["name"], resumed["arguments"])
    assert outcome.ok and outcome.spoken == "Done: your appointment is now on Friday 27 November at 10:30 am."

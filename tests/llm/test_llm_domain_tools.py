"""Tool execution: argument checks, dates resolved in code, real SQLite appointment book."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from phoneagent.agents.agent import Agent
from phoneagent.llm.domain.calendar_facts import asks_for_hours, calendar_facts, hours_answer, hours_summary
from phoneagent.llm.domain.scheduling import SchedulingStore
from phoneagent.llm.domain.schema_check import validate
from phoneagent.llm.domain.tool_schemas import TOOL_SCHEMAS
from phoneagent.llm.domain.tools import CallContext, ToolExecutor
from phoneagent.runtime.errors import ErrorKind

NOW = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)  # Monday 9:30 am in New York
CALLER = "+15552013344"


@pytest.fixture
def ctx() -> CallContext:
    """A fresh call from CALLER (each call has its own verification state)."""
    return CallContext(call_id="call-1", caller_number=CALLER)


@pytest.fixture
def tools(agent: Agent, store: SchedulingStore) -> ToolExecutor:
    return ToolExecutor(agent, store)


async def test_check_then_book_then_move_then_cancel(
    tools: ToolExecutor, store: SchedulingStore, ctx: CallContext
) -> None:
    r = await tools.execute(
        "check_availability", {"appointment_type": "cleaning", "when": "next Tuesday morning"}, ctx
    )
    assert r.ok and r.say.startswith("For cleaning I can offer Tuesday 1 December at 9 am")
    assert [s["start"] for s in r.data["slots"]] == [
        "2026-12-01T09:00:00-05:00",
        "2026-12-01T09:15:00-05:00",
        "2026-12-01T09:30:00-05:00",
    ]
    r = await tools.execute(
        "book_appointment",
        json.dumps({"appointment_type": "cleaning", "when": "next Tuesday at 9", "name": "Dana"}),
        ctx,
    )
    assert r.ok and r.say.startswith("You're booked for cleaning on Tuesday 1 December at 9 am.")
    appt_id = r.data["appointment_id"]
    assert store.get(appt_id).phone == CALLER  # caller ID used when no number given
    # Booked in this call: the caller may look it up, move and cancel it without the reference.
    r = await tools.execute("find_appointments", {}, ctx)
    assert r.ok and "cleaning on Tuesday 1 December at 9 am" in r.say
    r = await tools.execute("move_appointment", {"new_when": "friday at 10:30"}, ctx)
    assert r.ok and r.say == "Done: your appointment is now on Friday 27 November at 10:30 am."
    r = await tools.execute("cancel_appointment", {"appointment_id": appt_id}, ctx)
    assert r.ok and store.get(appt_id).status == "cancelled"
    # "Yes, cancel it." after that: the booking is already cancelled, no reference is asked for.
    r = await tools.execute("cancel_appointment", {"appointment_id": appt_id}, ctx)
    assert r.ok and r.data["already_cancelled"] and r.say.endswith("is already cancelled.")
    other = CallContext(call_id="call-2", caller_number=CALLER)  # another call: not proved there
    r = await tools.execute("cancel_appointment", {"appointment_id": appt_id}, other)
    assert r.status == "needs_input" and "already" not in r.say


async def test_an_id_that_names_no_booking_gives_way_to_the_day_and_time(
    tools: ToolExecutor, store: SchedulingStore, ctx: CallContext
) -> None:
    # Over SIP the 0.5B model cancelled with the booking reference as the appointment id; the
    # day and time it gave named the booking made in this call.
    args = {"appointment_type": "cleaning", "when": "next Tuesday at 9", "name": "Dana"}
    booked = await tools.execute("book_appointment", args, ctx)
    other = await tools.execute(
        "book_appointment", {**args, "appointment_type": "exam", "when": "next Wednesday at 10"}, ctx
    )
    assert booked.ok and other.ok
    r = await tools.execute(
        "cancel_appointment", {"appointment_id": "606483", "when": "next Tuesday at 9"}, ctx
    )
    assert r.ok and r.data["appointment_id"] == booked.data["appointment_id"]
    assert store.get(booked.data["appointment_id"]).status == "cancelled"
    assert store.get(other.data["appointment_id"]).status != "cancelled"
    # Without a day the unknown id stays unknown: nothing is cancelled on a guess.
    r = await tools.execute("cancel_appointment", {"appointment_id": "606483"}, ctx)
    assert r.status == "needs_input" and store.get(other.data["appointment_id"]).status != "cancelled"
    # A day that names no booking of theirs is not one either.
    r = await tools.execute("cancel_appointment", {"appointment_id": "606483", "when": "Thursday at 4"}, ctx)
    assert r.status == "needs_input" and store.get(other.data["appointment_id"]).status != "cancelled"


async def test_taken_slot_offers_alternatives(
    tools: ToolExecutor, store: SchedulingStore, ctx: CallContext
) -> None:
    args = {"appointment_type": "exam", "when": "tomorrow at 10", "name": "Dana"}
    assert (await tools.execute("book_appointment", args, ctx)).ok
    other = CallContext("call-2", "+15550009999")
    r = await tools.execute("book_appointment", {**args, "name": "Sam"}, other)
    assert r.status == "error" and r.error_kind is ErrorKind.INVALID_ARGUMENT
    assert r.say.startswith("Sorry, that time has just been taken. I can offer Tuesday 24 November at 9 am")
    r = await tools.execute(
        "check_availability", {"appointment_type": "exam", "when": "tomorrow at 10"}, other
    )
    assert (
        r.ok and r.data["requested_free"] is False and r.say.startswith("Nothing is free Tuesday 24 November")
    )
    assert "The nearest times for new patient exam are" in r.say


async def test_a_day_the_practice_is_closed_is_said_as_closed(tools: ToolExecutor, ctx: CallContext) -> None:
    # An emergency asked for on a Sunday (a scripted call over SIP, run on a Sunday).
    args = {"appointment_type": "emergency", "when": "Sunday 29 November"}
    r = await tools.execute("check_availability", args, ctx)
    assert r.ok and r.data["requested_free"] is False
    assert r.say.startswith(
        "We are closed Sunday 29 November. The nearest times for emergency visit are Monday"
    )


@pytest.mark.parametrize(
    ("name", "args", "status", "say"),
    [
        (
            "book_appointment",
            {"appointment_type": "cleaning", "when": "next week", "name": "D"},
            "needs_input",
            "Which exact day and time",
        ),
        (
            "book_appointment",
            {"appointment_type": "cleaning", "when": "sometime", "name": "D"},
            "needs_input",
            "Could you tell me the day and time again?",
        ),
        (
            "book_appointment",
            {"appointment_type": "cleaning", "when": "yesterday at 10", "name": "D"},
            "needs_input",
            "that date is in the past",
        ),
        (
            "book_appointment",
            {"appointment_type": "cleaning", "when": "saturday at 10", "name": "D"},
            "error",
            "Sorry, that time is outside opening hours",
        ),
        (
            "book_appointment",
            {"appointment_type": "root canal", "when": "tomorrow at 10", "name": "D"},
            "error",
            "Sorry, I could not do that: unknown appointment type",
        ),
        ("book_appointment", {"appointment_type": "cleaning", "name": "D"}, "error", "when: is required"),
        (
            "book_appointment",
            {"appointment_type": "cleaning", "when": 10, "name": "D"},
            "error",
            "when: expected a string",
        ),
        (
            "check_availability",
            {"appointment_type": "cleaning", "colour": "red"},
            "error",
            "colour: is not an accepted argument",
        ),
        ("launch_rocket", {}, "error", "that tool is not available"),
        ("take_message", "{not json", "error", "not valid JSON"),
    ],
)
async def test_bad_or_unclear_requests_become_results(
    tools: ToolExecutor, ctx: CallContext, name: str, args: object, status: str, say: str
) -> None:
    r = await tools.execute(name, args, ctx)  # type: ignore[arg-type]
    assert r.status == status, r
    assert say in f"{r.say} {r.data.get('problems', '')}"  # a schema problem is logged and kept, not said
    assert ": is" not in r.say and "expected a" not in r.say and "JSON" not in r.say
    assert json.loads(r.content())["status"] == status


async def test_no_caller_id_asks_for_a_number(tools: ToolExecutor) -> None:
    anonymous = CallContext("call-3", None)
    r = await tools.execute(
        "book_appointment",
        {"appointment_type": "cleaning", "when": "tomorrow at 10", "name": "Dana"},
        anonymous,
    )
    assert r.status == "needs_input" and "number" in r.say


async def test_message_transfer_and_end_call(
    tools: ToolExecutor, store: SchedulingStore, agent: Agent, ctx: CallContext
) -> None:
    r = await tools.execute("take_message", {"name": "Dana", "message": "Call me back", "urgent": True}, ctx)
    assert r.ok and store.messages()[0].urgent
    r = await tools.execute("transfer_to_human", {"reason": "billing"}, ctx)
    assert r.action == "transfer" and r.data["transferred"] is True  # Monday 9:30 am: staffed
    closed = ToolExecutor(agent, store, clock=lambda: datetime(2026, 11, 28, 15, tzinfo=UTC))  # Saturday
    r = await closed.execute("transfer_to_human", {}, ctx)
    assert r.action is None and r.data["transferred"] is False and "take a message" in r.say
    r = await tools.execute("end_call", {}, ctx)
    assert r.action == "end_call"


async def test_a_crash_inside_a_tool_is_contained(
    agent: Agent, store: SchedulingStore, ctx: CallContext
) -> None:
    tools = ToolExecutor(agent, store)
    store.db.close()  # the database is gone: the tool fails, the call goes on
    r = await tools.execute("find_appointments", {}, ctx)
    assert r.status == "error" and r.error_kind is ErrorKind.INTERNAL
    assert r.say == "Sorry, something went wrong on my side."


async def test_knowledge_tool_without_documents_is_unavailable(tools: ToolExecutor, ctx: CallContext) -> None:
    r = await tools.execute("lookup_knowledge", {"question": "Do you take Delta Dental?"}, ctx)
    assert r.status == "error" and r.error_kind is ErrorKind.UNAVAILABLE


def test_schema_subset_validator() -> None:
    schema = TOOL_SCHEMAS["take_message"]["parameters"]
    assert validate({"name": "D", "message": "hi", "urgent": False}, schema) == []
    assert validate({"name": "D", "message": "hi", "urgent": "yes"}, schema) == ["urgent: expected a boolean"]
    assert validate({"name": "D", "message": "hi", "phone": "call me"}, schema) == [
        "phone: has the wrong format"
    ]
    assert validate([], schema) == ["arguments: expected an object"]
    assert validate({"name": " ", "message": "x" * 1001}, schema) == [
        "name: is too short",
        "message: is longer than 1000 characters",
    ]


def test_calendar_facts(agent: Agent, store: SchedulingStore) -> None:
    assert hours_summary(agent) == (
        "Monday and Tuesday 9 am to 5 pm; Wednesday 9 am to noon and 1 pm to 7 pm; Thursday 9 am to 5 pm; "
        "Friday 9 am to 3 pm; closed Saturday and Sunday"
    )
    text = calendar_facts(agent, NOW, store)
    lines = text.splitlines()
    assert lines[0] == "Today is Monday 23 November 2026. The time now is 9:30 am, New York time."
    assert "Closed Thursday 26 November (Thanksgiving)." in lines
    # Every closure a caller could book into (90 days ahead), not only the next two weeks'.
    assert "Closed Thursday 24 December to Saturday 26 December (Christmas holidays)." in lines
    assert "Closed Friday 1 January (New Year's Day)." in lines
    assert (
        "Next free slots for cleaning (45 min): Mon 23 Nov 10:30 am, Mon 23 Nov 10:45 am, Mon 23 Nov 11 am."
        in lines
    )
    saturday = calendar_facts(agent, datetime(2026, 11, 28, 15, tzinfo=UTC))
    assert "The business is closed today." in saturday


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("What are your opening hours on Monday?", "Today we are open 9 am to 5 pm."),
        ("are you open wednesdays", "On Wednesday 25 November we are open 9 am to noon and 1 pm to 7 pm."),
        ("Are you open on Thursday?", "On Thursday 26 November we are closed for Thanksgiving."),
        ("When do you open tomorrow?", "Tomorrow we are open 9 am to 5 pm."),
        ("Are you open on Sunday?", "On Sunday 29 November we are closed."),
        ("What are your opening hours?", None),
        # Days known by name: the next one, with the closure configured for it.
        ("Are you open on Christmas Eve?", "On Thursday 24 December we are closed for Christmas holidays."),
        ("Are you open on New Year's Eve?", "On Thursday 31 December we are open 9 am to 5 pm."),
        ("what about new years day", "On Friday 1 January we are closed for New Year's Day."),
        ("Are you open on Thanksgiving?", "On Thursday 26 November we are closed for Thanksgiving."),
        ("Are you open on the fourth of July?", "On Sunday 4 July we are closed."),
    ],
)
def test_hours_answer_names_the_day_asked_about(agent: Agent, question: str, answer: str | None) -> None:
    assert hours_answer(agent, question, NOW) == answer


def test_hours_answer_without_opening_hours(agent: Agent) -> None:
    import dataclasses

    closed = dataclasses.replace(agent, business_hours={})
    assert hours_answer(closed, "open on friday?", NOW) == "On Friday 27 November we are closed."


@pytest.mark.parametrize(
    ("text", "asks"),
    [
        ("Sorry, are you open on Saturday?", True),
        ("What are your opening hours on Monday?", True),
        ("what time do you close today", True),
        ("When does the office open on Friday?", True),
        ("I'd like to book a cleaning, are you open Saturday?", False),  # a booking: the model and tools
        ("What time is my appointment?", False),
        ("Can you open a new file for me?", False),
        # Anything more than the hours question goes to the model with the facts.
        ("When are you open, and do you take Delta Dental?", False),
        ("when are you open, my gum is bleeding badly", False),
        ("Are you open on Saturday? I think I cracked a tooth.", False),
        ("Hi, um, what are your hours on Saturdays?", True),
        ("Are you open on Christmas Eve?", True),
        ("Are you open on Christmas Eve? I need a cleaning.", False),
    ],
)
def test_asks_for_hours(text: str, asks: bool) -> None:
    assert asks_for_hours(text) is asks


async def test_a_second_booking_in_the_call_changes_the_first(
    tools: ToolExecutor, store: SchedulingStore, ctx: CallContext
) -> None:
    """A caller who corrects the time after the booking was made ("sorry, I meant ten") or says
    it again has the call's own booking changed: one appointment, at the time said last."""
    args = {"appointment_type": "cleaning", "when": "next Monday at nine", "name": "Riley Stone"}
    first = await tools.execute("book_appointment", args, ctx)
    assert first.ok
    r = await tools.execute("book_appointment", {**args, "when": "next Monday at ten"}, ctx)
    assert r.ok and r.say == (
        "I've changed your booking: you're booked for cleaning on Monday 30 November at 10 am "
        "instead of Monday 30 November at 9 am, with the same booking reference."
    )
    booked = store.find_by_phone(CALLER)
    assert [(a.id, a.start.hour) for a in booked] == [(first.data["appointment_id"], 10)]
    # Said again (the caller confirms after the booking): nothing changes, nothing is added.
    r = await tools.execute(
        "book_appointment", {**args, "when": "Monday 30 November at 10", "name": "riley  stone"}, ctx
    )
    assert r.ok and r.data["already_booked"] is True
    assert r.say == "You're booked for cleaning on Monday 30 November at 10 am."
    assert len(store.find_by_phone(CALLER)) == 1
    # A time that is taken: the booking stands and alternatives are offered.
    other = CallContext("call-2", "+15550009999")
    taken = {"appointment_type": "cleaning", "when": "next Monday at 11", "name": "Sam"}
    assert (await tools.execute("book_appointment", taken, other)).ok
    r = await tools.execute("book_appointment", {**args, "when": "next Monday at 11"}, ctx)
    assert r.status == "error" and "Your booking on Monday 30 November at 10 am stands." in r.say
    assert [a.start.hour for a in store.find_by_phone(CALLER)] == [10]


async def test_another_person_or_type_in_the_same_call_is_a_booking_of_its_own(
    tools: ToolExecutor, store: SchedulingStore, ctx: CallContext
) -> None:
    args = {"appointment_type": "cleaning", "when": "next Monday at nine", "name": "Riley Stone"}
    assert (await tools.execute("book_appointment", args, ctx)).ok
    assert (
        await tools.execute(
            "book_appointment", {**args, "when": "next Monday at ten", "name": "Robin Stone"}, ctx
        )
    ).ok
    assert (
        await tools.execute(
            "book_appointment", {**args, "appointment_type": "filling", "when": "next Tuesday at ten"}, ctx
        )
    ).ok
    # A booking from an earlier call is not this call's to change.
    later = CallContext("call-2", CALLER)
    assert (await tools.execute("book_appointment", {**args, "when": "next Wednesday at ten"}, later)).ok
    assert len(store.find_by_phone(CALLER)) == 4

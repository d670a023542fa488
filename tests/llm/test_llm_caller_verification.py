"""Callers are verified before a booking is shown or changed: the caller ID must be the number it
was made with and the caller must give its booking reference (said at booking). A number said on
the call is never looked up, a wrong reference sounds exactly like no booking at all, and a call
gets three tries."""

from __future__ import annotations

import dataclasses
import itertools
import re
from datetime import date
from typing import Any

import pytest
from phoneagent.agents.agent import Agent
from phoneagent.llm.domain.booking_access import (
    ASK_BIRTH_DATE,
    ASK_REFERENCE,
    ASK_REFERENCE_OR_BIRTH,
    LOCKED,
    NO_CALLER_ID,
    NO_MATCH,
    SAY_AGAIN,
)
from phoneagent.llm.domain.scheduling import SchedulingStore
from phoneagent.llm.domain.tool_result import CallContext, ToolResult
from phoneagent.llm.domain.tools import ToolExecutor
from phoneagent.llm.domain.verification import (
    MAX_FAILURES,
    VERIFICATION_FAILURES,
    read_birth_date,
    read_reference,
)
from phoneagent.runtime.errors import ErrorKind

ANN = "+15552013344"
MALLORY = "+15550009999"


@pytest.fixture(autouse=True)
def references(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bookings get known, distinct references, so a "wrong" one in a test is never right by chance."""
    drawn = iter(["471209", "308512", "650274", "119834", "902746"])
    monkeypatch.setattr("phoneagent.llm.domain.scheduling.new_reference", lambda: next(drawn))


CLEANING = {"appointment_type": "cleaning", "when": "next Tuesday at 9", "name": "Ann Lee"}


@pytest.fixture
def tools(agent: Agent, store: SchedulingStore) -> ToolExecutor:
    return ToolExecutor(agent, store)  # the store's clock: Monday 23 November 2026, 9:30 am


def failures(reason: str) -> float:
    return float(VERIFICATION_FAILURES.labels(reason=reason)._value.get())


BOOKING_CALLS = itertools.count(1)


async def book(tools: ToolExecutor, caller: str = ANN, **changes: str) -> ToolResult:
    """A booking made in a call of its own (a second booking in the same call changes the first)."""
    call = CallContext(f"booking-call-{next(BOOKING_CALLS)}", caller)
    r = await tools.execute("book_appointment", {**CLEANING, **changes}, call)
    assert r.ok, r
    return r


async def test_the_booking_result_says_the_reference_and_the_database_keeps_only_a_hash(
    tools: ToolExecutor, store: SchedulingStore
) -> None:
    r = await book(tools)
    reference = r.data["reference"]
    assert re.fullmatch(r"\d{6}", reference)
    assert f"Your booking reference is {reference};" in r.say
    assert f'"reference": "{reference}"' in r.content()  # the model sees it too
    with store.db.transaction() as tx:
        (row,) = tx.query("SELECT * FROM appointments WHERE id = ?", (r.data["appointment_id"],))
    assert not any(reference in str(value) for value in row)
    assert reference not in repr(store.get(r.data["appointment_id"]))


async def test_another_callers_booking_cannot_be_found_moved_or_cancelled(
    tools: ToolExecutor, store: SchedulingStore
) -> None:
    booked = await book(tools)
    appt_id, reference = booked.data["appointment_id"], booked.data["reference"]
    mallory = CallContext("call-m", MALLORY)  # knows Ann's number and even her reference
    r = await tools.execute("find_appointments", {"reference": reference}, mallory)
    assert r.status == "needs_input" and r.say.startswith(NO_MATCH) and "appointments" not in r.data
    r = await tools.execute("find_appointments", {"phone": ANN, "reference": reference}, mallory)
    assert r.status == "error" and "appointments" not in r.data  # a spoken number is not an argument
    r = await tools.execute(
        "move_appointment",
        {"appointment_id": appt_id, "new_when": "friday at 10:30", "reference": reference},
        mallory,
    )
    assert r.status == "needs_input" and r.say.startswith(NO_MATCH)
    r = await tools.execute("cancel_appointment", {"appointment_id": appt_id}, mallory)
    assert r.status == "needs_input" and r.say == ASK_REFERENCE
    claim = {"appointment_id": appt_id, "reference": reference}
    r = await tools.execute("cancel_appointment", claim, mallory)
    assert r.status == "error" and r.say.startswith(NO_MATCH) and r.error_kind is ErrorKind.POLICY_DENIED
    r = await tools.execute("cancel_appointment", claim, mallory)
    assert r.status == "error" and r.say.startswith(LOCKED)  # three tries used up
    after = store.get(appt_id)
    assert after.status == "booked" and after.start.isoformat() == booked.data["start"]


async def test_a_wrong_reference_sounds_exactly_like_no_booking(tools: ToolExecutor) -> None:
    booked = await book(tools)
    wrong = f"{(int(booked.data['reference']) + 1) % 1_000_000:06d}"
    before = failures("no_match")
    with_booking = await tools.execute("find_appointments", {"reference": wrong}, CallContext("c1", ANN))
    without = await tools.execute("find_appointments", {"reference": wrong}, CallContext("c2", MALLORY))
    assert with_booking.status == without.status == "needs_input"
    assert with_booking.say == without.say == NO_MATCH + SAY_AGAIN
    assert with_booking.content() == without.content()
    assert failures("no_match") == before + 2


async def test_the_right_reference_finds_moves_and_cancels_without_asking_again(
    tools: ToolExecutor, store: SchedulingStore
) -> None:
    booked = await book(tools)
    call = CallContext("call-later", ANN)  # another call from Ann's phone
    r = await tools.execute("find_appointments", {}, call)
    assert r.status == "needs_input" and r.say == ASK_REFERENCE and r.data["needs"] == "reference"
    assert "booking reference" in r.data["next_step"] and "appointments" not in r.data
    r = await tools.execute("move_appointment", {"new_when": "friday at 10:30"}, call)
    assert r.status == "needs_input" and r.say == ASK_REFERENCE  # not "which one": nothing is revealed
    spoken = " ".join(booked.data["reference"])  # "4 7 1 2 0 9", as speech recognition may write it
    r = await tools.execute("find_appointments", {"reference": spoken}, call)
    assert r.ok and r.say == "You have cleaning on Tuesday 1 December at 9 am."
    r = await tools.execute("move_appointment", {"new_when": "friday at 10:30"}, call)
    assert r.ok and r.say == "Done: your appointment is now on Friday 27 November at 10:30 am."
    r = await tools.execute("cancel_appointment", {}, call)
    assert r.ok and store.get(booked.data["appointment_id"]).status == "cancelled"


async def test_a_reference_opens_its_own_booking_only(tools: ToolExecutor) -> None:
    first = await book(tools)
    second = await book(tools, when="next Wednesday at 9")
    call = CallContext("call-2", ANN)
    r = await tools.execute("find_appointments", {"reference": first.data["reference"]}, call)
    assert r.ok and [a["appointment_id"] for a in r.data["appointments"]] == [first.data["appointment_id"]]
    r = await tools.execute("cancel_appointment", {"appointment_id": second.data["appointment_id"]}, call)
    assert r.status == "needs_input" and r.data["needs"] == "reference"  # asks for that one's reference
    r = await tools.execute(
        "cancel_appointment",
        {"appointment_id": second.data["appointment_id"], "reference": second.data["reference"]},
        call,
    )
    assert r.ok and r.data["appointment_id"] == second.data["appointment_id"]


async def test_attempts_are_limited_then_a_person_is_offered(tools: ToolExecutor, agent: Agent) -> None:
    booked = await book(tools)
    call = CallContext("call-3", ANN)
    before = {reason: failures(reason) for reason in ("no_match", "malformed", "locked")}
    r = await tools.execute("find_appointments", {"reference": "my birthday"}, call)
    assert r.status == "needs_input" and r.data["attempts_left"] == MAX_FAILURES - 1
    r = await tools.execute("find_appointments", {"reference": "000000"}, call)
    assert r.status == "needs_input" and r.data["attempts_left"] == MAX_FAILURES - 2
    r = await tools.execute("find_appointments", {"reference": "999999"}, call)
    assert r.status == "error" and r.error_kind is ErrorKind.POLICY_DENIED
    assert r.say == NO_MATCH + " I can put you through to the front desk."  # Monday 9:30: staffed
    r = await tools.execute("find_appointments", {"reference": booked.data["reference"]}, call)
    assert r.status == "error" and r.say.startswith(LOCKED) and "appointments" not in r.data
    assert "transfer" in r.data["next_step"]
    assert failures("malformed") == before["malformed"] + 1
    assert failures("no_match") == before["no_match"] + 2
    assert failures("locked") == before["locked"] + 1
    fresh = CallContext("call-4", ANN)  # the limit is per call
    assert (await tools.execute("find_appointments", {"reference": booked.data["reference"]}, fresh)).ok


async def test_a_withheld_caller_id_is_refused(tools: ToolExecutor) -> None:
    booked = await book(tools)
    before = failures("no_caller_id")
    for caller in (None, "anonymous"):
        r = await tools.execute(
            "find_appointments", {"reference": booked.data["reference"]}, CallContext("c", caller)
        )
        assert r.status == "error" and r.say.startswith(NO_CALLER_ID) and "appointments" not in r.data
    assert failures("no_caller_id") == before + 2


@pytest.mark.parametrize(
    ("said", "reference"),
    [
        ("471209", "471209"),
        ("it's 471 209", "471209"),
        ("four seven one, two oh nine", "471209"),
        ("double four one, triple nine", "441999"),
        ("Yes, the reference is 0 4 7 1 2 0.", "047120"),
        ("my number is 555 201 3344", None),  # a phone number is not a reference
        ("tuesday at 9", None),
        ("47120", None),
        ("471209, sorry, 471208", "471208"),  # the last one said
    ],
)
def test_reading_a_reference_from_what_was_said(said: str, reference: str | None) -> None:
    assert read_reference(said) == reference


def test_the_tool_schemas_take_a_reference_and_no_phone_number_for_existing_bookings() -> None:
    from phoneagent.llm.domain.tool_schemas import TOOL_SCHEMAS

    for name in ("find_appointments", "move_appointment", "cancel_appointment"):
        props: dict[str, Any] = TOOL_SCHEMAS[name]["parameters"]["properties"]
        assert "reference" in props and "phone" not in props


@pytest.mark.parametrize(
    ("said", "born"),
    [
        ("March 14th, 1980", date(1980, 3, 14)),
        ("I was born on the fourteenth of March nineteen eighty", date(1980, 3, 14)),
        ("14 March 1980", date(1980, 3, 14)),
        ("1980-03-14", date(1980, 3, 14)),
        ("march the third nineteen eighty-two", date(1982, 3, 3)),
        ("the 3rd of May two thousand five", date(2005, 5, 3)),
        ("next Tuesday at 9", None),  # an appointment day has no year
        ("December 1st 2026", None),  # not yet born
        ("February 30th 1980", None),
    ],
)
def test_reading_a_date_of_birth_from_what_was_said(said: str, born: date | None) -> None:
    assert read_birth_date(said, date(2026, 11, 23)) == born


@pytest.fixture
def birth_tools(agent: Agent, store: SchedulingStore) -> ToolExecutor:
    """An agent file with ``caller_verification: {date_of_birth: true}``, on the same book."""
    collecting = dataclasses.replace(agent, collect_date_of_birth=True)
    return ToolExecutor(collecting, SchedulingStore(store.db, collecting, store.now))


async def test_where_collected_the_date_of_birth_proves_a_booking_like_its_reference(
    birth_tools: ToolExecutor, store: SchedulingStore
) -> None:
    booking = CallContext("booking-call", ANN)
    r = await birth_tools.execute("book_appointment", CLEANING, booking)
    assert r.status == "needs_input" and r.say == ASK_BIRTH_DATE and r.data["needs"] == "date_of_birth"
    born = {**CLEANING, "date_of_birth": "March 14th, 1980"}
    r = await birth_tools.execute("book_appointment", born, booking)
    assert r.ok and r.data["reference"] == "471209"
    with store.db.transaction() as tx:
        (row,) = tx.query("SELECT * FROM appointments WHERE id = ?", (r.data["appointment_id"],))
    assert not any("1980" in str(value) for value in row)

    call = CallContext("call-later", ANN)
    r = await birth_tools.execute("find_appointments", {}, call)
    assert r.status == "needs_input" and r.say == ASK_REFERENCE_OR_BIRTH
    wrong = await birth_tools.execute("find_appointments", {"date_of_birth": "March 15th, 1980"}, call)
    nobody = await birth_tools.execute(
        "find_appointments", {"date_of_birth": "March 14th, 1980"}, CallContext("c", MALLORY)
    )
    assert wrong.content() == nobody.content() and wrong.say == NO_MATCH + SAY_AGAIN
    r = await birth_tools.execute("find_appointments", {"date_of_birth": "the 14th of March 1980"}, call)
    assert r.ok and r.say == "You have cleaning on Tuesday 1 December at 9 am."
    r = await birth_tools.execute("cancel_appointment", {}, call)
    assert r.ok and store.get(r.data["appointment_id"]).status == "cancelled"


async def test_without_the_setting_a_date_of_birth_proves_nothing(
    tools: ToolExecutor, birth_tools: ToolExecutor
) -> None:
    r = await birth_tools.execute(
        "book_appointment", {**CLEANING, "date_of_birth": "March 14th, 1980"}, CallContext("b", ANN)
    )
    assert r.ok
    r = await tools.execute("find_appointments", {"date_of_birth": "March 14th, 1980"}, CallContext("c", ANN))
    assert r.status == "needs_input" and r.say == ASK_REFERENCE

"""What the real small model gets wrong in tool calls, fixed in code: cut-off JSON is read up to
its last whole member (never spoken), and booking arguments come from the caller's own words
(invented names, numbers and notes are dropped; days and times are resolved in code)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from phoneagent.agents import example_agent_path
from phoneagent.agents.agent import Agent, load_agent
from phoneagent.devtools.llm_eval import NOW
from phoneagent.llm.dialog import Dialog
from phoneagent.llm.dialog_state import DialogConfig, Sentence
from phoneagent.llm.domain.scheduling import SchedulingStore
from phoneagent.llm.domain.tool_result import CallContext
from phoneagent.llm.domain.tools import ToolExecutor
from phoneagent.llm.engines.base import Delta
from phoneagent.llm.prompting import ASK_NAME, caller_name, normalise_arguments
from phoneagent.llm.replies import APOLOGY
from phoneagent.llm.tools import Tools
from prometheus_client import REGISTRY

CUT_OFF = (
    '{"name": "book_appointment", "arguments": {"appointment_type": "cleaning", '
    '"when": "next Tuesday at 10", "name": "Maria Lopez", "phone": "123-456-7890", '
    '"notes": "Call-back number; leave out'
)


@pytest.fixture(scope="module")
def agent() -> Agent:
    return load_agent(example_agent_path())


class OneShot:
    """An engine that writes one fixed completion per request (what the model wrote, replayed)."""

    name = "replay"

    def __init__(self, *texts: str) -> None:
        self.texts = list(texts)

    async def abort(self, request_id: str) -> None: ...

    async def stream(self, messages, *, request_id, max_tokens, temperature, tools=None, json_schema=None):
        text = self.texts.pop(0)
        for i in range(0, len(text), 7):
            yield Delta(text=text[i : i + 7])
        yield Delta(finish_reason="length")


async def _run(
    agent: Agent, tmp_path: Path, turns: list[str], *completions: str
) -> tuple[list[str], SchedulingStore]:
    store = SchedulingStore.open(f"sqlite:///{tmp_path / 'book.db'}", agent, lambda: NOW)
    out: list[Sentence] = []

    async def publish(s: Sentence) -> None:
        out.append(s)

    async def save(_: object) -> None: ...

    tools = Tools(
        ToolExecutor(agent, store, None, lambda: NOW), CallContext("c1", "+15552013344"), lambda: NOW
    )
    dialog = Dialog(
        "c1",
        OneShot(*completions),
        system_prompt=lambda: "sys",
        greeting="",
        publish=publish,
        save=save,
        tools=tools,
        config=DialogConfig(filler_after_s=5.0),
    )
    for i, text in enumerate(turns, 1):
        await dialog.on_user_turn(i, text)
        assert dialog.reply is not None and dialog.reply.task is not None
        await dialog.reply.task
        await dialog.on_playback_done(dialog.reply.generation)
    await dialog.close()
    return [s.text for s in out if s.text], store


def confirmation(words: str) -> str:
    """A booking confirmation as spoken: the words, then the booking reference (6 random digits)."""
    reference = r" Your booking reference is \d{6}; you'll need it to change or cancel the booking\."
    return re.escape(words) + reference


async def test_cut_off_call_with_invented_number_books_the_callers_slot(agent: Agent, tmp_path: Path) -> None:
    said, store = await _run(
        agent, tmp_path, ["I'd like a cleaning next Tuesday at 10. My name is Maria Lopez."], CUT_OFF
    )
    booked = "You're booked for cleaning on Tuesday 1 December at 10 am."
    assert re.fullmatch(confirmation(booked), " ".join(said))
    (appt,) = store.find_by_phone("+15552013344")
    assert (appt.type_id, appt.caller_name, appt.notes) == ("cleaning", "Maria Lopez", "")
    store.db.close()


async def test_unreadable_call_is_never_spoken(agent: Agent, tmp_path: Path) -> None:
    said, store = await _run(agent, tmp_path, ["Book me in please."], '{"name": "book_app')
    assert " ".join(said) == APOLOGY
    store.db.close()


def test_the_day_comes_from_the_callers_words_and_invented_names_are_asked_for(agent: Agent) -> None:
    model = {"appointment_type": "cleaning", "when": "11 am", "name": "Emma Brown"}
    fixed = normalise_arguments(
        agent,
        "book_appointment",
        model,
        ["Could I get a teeth cleaning tomorrow at 11 am? This is Emma Brown."],
        NOW,
    )
    assert fixed.arguments["when"].startswith("Could I get") and not fixed.ask
    invented = {"appointment_type": "new_patient_exam", "when": "Wednesday at 3 pm", "name": "John Doe"}
    fixed = normalise_arguments(
        agent, "book_appointment", invented, ["I need a new patient exam on Wednesday at 3 pm."], NOW
    )
    assert fixed.ask == ASK_NAME and fixed.arguments["appointment_type"] == "exam"
    two_turns = ["I need a new patient exam on Wednesday at 3 pm.", "It's David Kim."]
    fixed = normalise_arguments(agent, "book_appointment", {**invented, "when": "David Kim"}, two_turns, NOW)
    assert fixed.arguments["name"] == "David Kim" and fixed.arguments["when"] == " ".join(two_turns)


def test_caller_name_ignores_days() -> None:
    assert caller_name(["It's Friday at 2 pm."]) is None
    assert caller_name(["Sure, it's Omar Ali."]) == "Omar Ali"
    assert caller_name(["Tom Baker."]) == "Tom Baker"
    assert caller_name(["Tomorrow."]) is None and caller_name(["I'm looking for a dentist."]) is None


async def test_answer_to_the_name_question_books_in_code(agent: Agent, tmp_path: Path) -> None:
    invented = (
        '<tool_call>{"name": "check_availability", "arguments": {"appointment_type": "new_patient_exam", '
        '"when": "Wednesday at 3 pm", "name": "John Doe"}}</tool_call>'
    )
    turns = ["Hi, I need a new patient exam on Wednesday at 3 pm.", "It's David Kim."]
    said, store = await _run(agent, tmp_path, turns, invented)  # one completion: turn 2 is code only
    booked = "You're booked for new patient exam on Wednesday 25 November at 3 pm."
    assert re.fullmatch(confirmation(f"{ASK_NAME} {booked}"), " ".join(said))
    (appt,) = store.find_by_phone("+15552013344")
    assert (appt.type_id, appt.caller_name) == ("exam", "David Kim")
    store.db.close()


def test_an_availability_check_with_the_callers_name_and_exact_time_is_a_booking(agent: Agent) -> None:
    args = {"appointment_type": "cleaning", "when": "tomorrow morning at 9:30 am, 10:30 am, 10:45 am"}
    said = ["Could I get a teeth cleaning tomorrow at 11 am? This is Emma Brown."]
    fixed = normalise_arguments(agent, "check_availability", args, said, NOW)
    assert fixed.tool == "book_appointment" and not fixed.ask
    assert fixed.arguments["when"] == said[0] and fixed.arguments["name"] == "Emma Brown"
    asking = normalise_arguments(
        agent, "check_availability", args, ["Is anything free tomorrow morning?"], NOW
    )
    assert asking.tool == "check_availability"  # no name, no exact time: still a question


def test_a_booking_with_a_day_but_no_time_and_no_name_is_an_availability_check(agent: Agent) -> None:
    """Over SIP the 0.5B model booked for "Can someone see me today?" and the caller in pain
    heard "What day and time would you like, and may I have your name?"; the free times of the
    day they named answer them. With a name the booking goes on (the tool offers that day's
    times); with no day at all the caller is still asked."""
    args = {"appointment_type": "emergency", "when": "today at 2 pm"}
    pain = "I have a really bad toothache and my cheek is swollen. Can someone see me today?"
    fixed = normalise_arguments(agent, "book_appointment", args, [pain], NOW)
    assert (fixed.tool, fixed.ask, fixed.arguments) == (
        "check_availability",
        "",
        {"appointment_type": "emergency", "when": pain},
    )
    named = normalise_arguments(
        agent, "book_appointment", {**args, "name": "Ann Lee"}, [f"I'm Ann Lee. {pain}"], NOW
    )
    assert named.tool == "book_appointment" and named.arguments["name"] == "Ann Lee"
    vague = normalise_arguments(
        agent, "book_appointment", args, ["I'd like to book an emergency visit."], NOW
    )
    assert vague.tool == "book_appointment" and vague.missing == ("when", "name")


def test_questions_are_not_bookings_and_asking_for_a_person_transfers(agent: Agent) -> None:
    booking = {"appointment_type": "cleaning", "when": "next Tuesday at 10", "name": "Ann Lee"}
    for question in ("Do you take insurance?", "How much is a cleaning?"):
        assert normalise_arguments(agent, "book_appointment", booking, [question], NOW).declined
    fixed = normalise_arguments(agent, "lookup_knowledge", {}, ["Can I talk to a real person, please?"], NOW)
    assert (fixed.tool, fixed.declined) == ("transfer_to_human", False)
    fixed = normalise_arguments(agent, "lookup_knowledge", {}, ["Where are you located?"], NOW)
    assert fixed.arguments == {"question": "Where are you located?"}


def test_a_yes_to_an_offered_time_is_a_booking_and_a_question_after_it_is_not(agent: Agent) -> None:
    """Over SIP the 0.5B model booked on "Yes, go ahead." after the offer; the call was declined
    (no booking words in it) and the caller heard an apology."""
    booking = {"appointment_type": "cleaning", "when": "next Tuesday at 1 pm", "name": "Ann Lee"}
    asked = "Hi, I'm Ann Lee. I'd like to book a cleaning on Tuesday at one in the afternoon."
    for yes in ("Yes, go ahead.", "Yes, please do.", "Sure.", "That works, thanks.", "Okay."):
        fixed = normalise_arguments(agent, "book_appointment", booking, [asked, yes], NOW)
        assert not fixed.declined and fixed.tool == "book_appointment", yes
    for other in ("Yes, how much will it cost?", "Okay, and do you take Delta Dental insurance plans?"):
        assert normalise_arguments(agent, "book_appointment", booking, [asked, other], NOW).declined
    # A yes to something else (no booking in the turn before) is no booking either.
    assert normalise_arguments(
        agent, "book_appointment", booking, ["Do you take insurance?", "Yes, go ahead."], NOW
    ).declined


def test_the_call_ends_only_when_the_caller_takes_leave(agent: Agent) -> None:
    for said in ("Hi, sorry, quick question.", "Do you accept Medicaid?", "Thanks, and one more thing?"):
        assert normalise_arguments(agent, "end_call", {}, [said], NOW).declined, said
    assert normalise_arguments(agent, "end_call", {}, [], NOW).declined  # nothing said yet
    for said in (
        "No, that's all. Bye!",
        "Okay, goodbye.",
        "No, thank you.",
        "Thank you so much.",
        "That’s it.",
    ):
        fixed = normalise_arguments(agent, "end_call", {"reason": "done"}, [said], NOW)
        assert not fixed.declined and fixed.tool == "end_call", said


@pytest.mark.parametrize(
    ("said", "name"),
    [
        ("hey there could i book a cleaning for this friday at ten thirty name is carla diaz", "Carla Diaz"),
        ("i chipped a tooth can i come in tomorrow at noon my names rosa gomez", "Rosa Gomez"),
        ("her name is lily moss and she needs a cleaning", "Lily Moss"),
        (
            "book me a checkup on tuesday at three actually make that three thirty im paula grant",
            "Paula Grant",
        ),
        ("thanks its amy o\u2019brien", "Amy O'Brien"),
        ("i'm not sure", None),
        ("it's for a cleaning", None),
        ("this is fine", None),
        ("its three pm", None),
        ("what name is the booking under", None),
        ("i am available on friday", None),
        ("henry ford", None),  # a bare name counts only as the answer to the name question
    ],
)
def test_a_transcript_without_capitals_gives_the_name_after_its_cue(said: str, name: str | None) -> None:
    assert caller_name([said]) == name


def test_a_bare_uncased_name_answers_the_name_question() -> None:
    assert caller_name(["henry ford"], asked=True) == "Henry Ford"
    assert caller_name(["tomorrow"], asked=True) is None and caller_name(["yes please"], asked=True) is None


def test_an_uncased_booking_is_made_under_the_callers_name_not_the_models(agent: Agent) -> None:
    said = ["can i get a checkup tomorrow morning at nine thirty its dave miller"]
    args = {"appointment_type": "cleaning", "when": "23 November 2026 at 9:30 am, New York time"}
    fixed = normalise_arguments(agent, "check_availability", args, said, NOW)
    assert (fixed.tool, fixed.arguments["name"], fixed.ask) == ("book_appointment", "Dave Miller", "")
    garbled = {"appointment_type": "filling", "when": "Wednesday", "name": "Jones, Jones, Jones, J.J"}
    said = ["i need to get a cavity filled wednesday december ninth at four pm its mark jones"]
    fixed = normalise_arguments(agent, "book_appointment", garbled, said, NOW)
    assert (fixed.arguments["name"], fixed.arguments["when"], fixed.ask) == ("Mark Jones", said[0], "")


def test_pain_in_the_callers_words_books_an_emergency_visit(agent: Agent) -> None:
    args = {"appointment_type": "filling", "when": "today at 3 pm", "name": "Ben Carter"}
    for said in (
        "my tooth is killing me can i come in this afternoon at three my name is ben carter",
        "I chipped a tooth, can I come in today at 3 pm? My name is Ben Carter.",
    ):
        fixed = normalise_arguments(agent, "book_appointment", args, [said], NOW)
        assert fixed.arguments["appointment_type"] == "emergency", said


async def test_an_uncased_name_given_when_asked_books_in_code(agent: Agent, tmp_path: Path) -> None:
    nameless = (
        '<tool_call>{"name": "book_appointment", "arguments": {"appointment_type": "cleaning", '
        '"when": "thursday december tenth at one pm"}}</tool_call>'
    )
    turns = ["can i book a cleaning please thursday december tenth at one pm", "henry ford"]
    said, store = await _run(agent, tmp_path, turns, nameless)  # turn 2 is code only
    booked = "You're booked for cleaning on Thursday 10 December at 1 pm."
    assert re.fullmatch(confirmation(f"{ASK_NAME} {booked}"), " ".join(said))
    (appt,) = store.find_by_phone("+15552013344")
    assert (appt.type_id, appt.caller_name) == ("cleaning", "Henry Ford")
    store.db.close()


async def test_arguments_taken_from_the_callers_words_are_counted(agent: Agent, tmp_path: Path) -> None:
    def replaced(argument: str) -> float:
        labels = {"tool": "book_appointment", "argument": argument}
        return REGISTRY.get_sample_value("pa_llm_tool_arguments_replaced_total", labels) or 0.0

    before = {a: replaced(a) for a in ("name", "when", "appointment_type")}
    garbled = (
        '<tool_call>{"name": "book_appointment", "arguments": {"appointment_type": "cleaning", '
        '"when": "23 November 2026 at 9:30 am", "name": "Jones, Jones"}}</tool_call>'
    )
    said = ["i need a cleaning wednesday december ninth at four pm its mark jones"]
    _, store = await _run(agent, tmp_path, said, garbled)
    store.db.close()
    assert {a: replaced(a) - before[a] for a in before} == {"name": 1, "when": 1, "appointment_type": 0}


def test_a_move_takes_the_new_day_and_time_from_the_callers_latest_words(agent: Agent) -> None:
    booked = "Hi, this is Ann Lee. Please book a cleaning next Tuesday at 11 in the morning."
    move = "Actually, can you move it to Wednesday at 9 in the morning instead?"
    model = {"new_when": "9:00 am", "appointment_id": "a1"}  # the 0.5B model's call over SIP
    fixed = normalise_arguments(agent, "move_appointment", model, [booked, "Yes, book it.", move], NOW)
    assert fixed.arguments == {"new_when": move, "appointment_id": "a1"} and not fixed.ask
    # A latest turn without a day and time leaves the model's words (the turn before names the
    # booking's present time, not the new one).
    model = {"new_when": "Wednesday at 9 am"}
    fixed = normalise_arguments(agent, "move_appointment", model, [booked, "Yes, please move it."], NOW)
    assert fixed.arguments == model


def test_a_move_confirmed_in_a_later_turn_takes_the_time_asked_for_not_the_present_one(agent: Agent) -> None:
    booked = "Hi, I'm Taylor Reed. Book me a cleaning on Thursday 3 December at 11 in the morning please."
    offered = ["You're booked for cleaning on Thursday 3 December at 11 am."]
    instead = "Hmm, could we do Thursday at two in the afternoon instead?"
    model = {"new_when": "2026-12-03T12:00:00-05:00"}  # the 0.5B model's noon, over SIP
    said = [booked, instead, "Yes, move it please."]
    fixed = normalise_arguments(agent, "move_appointment", model, said, NOW, offered)
    assert fixed.arguments == {"new_when": instead}
    # The turn before names the booking's present time: the model's words stay.
    said = [booked, "Can you move it, please?"]
    assert normalise_arguments(agent, "move_appointment", model, said, NOW, offered).arguments == model

"""The LLM call session on a real bus, with the real tools and a scripted engine standing in for
the model: an out-of-hours transfer request offers a message instead of transferring, a late
barge-in cuts the history to what the caller heard, a backchannel while the agent talks is not a
turn, and a call's conversation (history and a booking waiting for the caller's name) moves to
another LlmService replica through the dialog key-value bucket."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from phoneagent.agents.agent import load_agent
from phoneagent.llm.dialog_state import DialogState
from phoneagent.llm.domain.scheduling import SchedulingStore
from phoneagent.llm.domain.tools import ToolExecutor
from phoneagent.llm.service import LlmCallSession, LlmService
from phoneagent.llm.settings import LlmSettings
from phoneagent.runtime import approvals, streams, subjects
from phoneagent.runtime.approvals import Verifier
from phoneagent.runtime.bus import Bus
from phoneagent.runtime.settings import CommonSettings, load
from phoneagent.v1 import control_pb2
from support.call_probe import CallProbe
from support.common import PUBLIC_KEY_FILE, wait_for
from support.llm import ScriptEngine, open_session
from support.policy_stack import running_policy

SUNDAY_NOON = datetime(2026, 11, 29, 17, 0, tzinfo=UTC)  # 12:00 in New York: the clinic is closed
TUESDAY_TEN = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)  # 10:00 in New York: open
TRANSFER_CALL = '<tool_call>{"name": "transfer_to_human", "arguments": {}}</tool_call>'


async def ask_for_a_person(bus: Bus, now: datetime) -> tuple[CallProbe, LlmCallSession]:
    _, call, session = await open_session(bus, ScriptEngine([[TRANSFER_CALL]]), now)
    await call.transcript(1, "Can I talk to a person please?")
    await wait_for(lambda: call.finished(1), timeout=5)
    await call.settle(1)
    return call, session


async def test_out_of_hours_a_person_is_not_available_and_a_message_is_offered(bus: Bus) -> None:
    call, session = await ask_for_a_person(bus, SUNDAY_NOON)
    try:
        assert "take a message" in call.spoken(1)
        assert not call.kinds("transfer"), "a transfer was requested while the clinic is closed"
    finally:
        await session.close("test")


async def test_in_hours_a_person_is_put_through(bus: Bus, nats_url: str, tmp_path: Path) -> None:
    """The transfer goes to the edge with policy's signed approval for this call and the human."""
    async with running_policy(nats_url, tmp_path / "policy.sqlite3", common={"replica_id": "policy-llm-t"}):
        call, session = await ask_for_a_person(bus, TUESDAY_TEN)
        try:
            assert "put you through" in call.spoken(1)
            transfers = await wait_for(lambda: call.kinds("transfer"), timeout=5)
            assert transfers[0].target == "sip:frontdesk@brightsmile.example.org"
            Verifier.from_files([PUBLIC_KEY_FILE]).check(
                transfers[0].approval,
                action=approvals.TRANSFER,
                call_id=call.call_id,
                target=transfers[0].target,
            )
        finally:
            await session.close("test")


async def test_no_transfer_goes_out_without_policy(bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    """Nobody answers the transfer check: the dialog sends no Transfer at all (fail closed)."""
    call, session = await ask_for_a_person(bus, TUESDAY_TEN)
    try:
        assert "put you through" in call.spoken(1)
        await wait_for(
            lambda: any(r.getMessage().startswith("transfer not approved") for r in caplog.records),
            timeout=10,
        )
        assert not call.kinds("transfer")
    finally:
        await session.close("test")


async def test_a_barge_in_reported_after_the_next_turn_still_cuts_the_history(bus: Bus) -> None:
    engine = ScriptEngine(
        [["Our opening hours are nine to five. ", "On Saturdays we are closed."], ["Sure."]]
    )
    stage, call, session = await open_session(bus, engine)
    try:
        await call.transcript(1, "When are you open?")
        await wait_for(lambda: call.finished(1), timeout=5)
        # The edge's real order for a short interruption: ASR's final transcript reaches the LLM
        # first, and the edge's BargeIn for the old generation (sent on that same transcript) after.
        await call.transcript(2, "Do you take new patients?")
        await wait_for(lambda: call.finished(2), timeout=5)
        await call.send(
            barge_in=control_pb2.BargeIn(
                interrupted_generation_id=1, heard_sentence_seq=0, heard_text_chars=18
            )
        )
        await wait_for(
            lambda: any(m.get("content") == "Our opening hours..." for m in stage.saved[-1].history)
        )
        history = stage.saved[-1].history
        assert all("Saturdays" not in str(m.get("content")) for m in history)
        assert [m["role"] for m in history] == ["user", "assistant", "user"]  # reply 2 still playing
        # A second report for the same generation changes nothing.
        await call.send(barge_in=control_pb2.BargeIn(interrupted_generation_id=1, heard_sentence_seq=0))
        await call.settle(99)
        assert session.dialog is not None and session.dialog.state.history[:3] == history
    finally:
        await session.close("test")


async def test_a_backchannel_while_the_agent_talks_is_not_a_turn_but_is_one_when_it_is_silent(
    bus: Bus,
) -> None:
    engine = ScriptEngine([["We are open nine to five."], ["Great, what day suits you?"]])
    _, call, session = await open_session(bus, engine)
    try:
        await call.answered()
        await wait_for(lambda: call.finished(1), timeout=5)  # the greeting, still playing
        await call.transcript(1, "mm-hmm", backchannel=True)
        await call.transcript(2, "When are you open?")
        await wait_for(lambda: call.finished(2), timeout=5)
        assert len(engine.requests) == 1
        assert "mm-hmm" not in json.dumps(engine.requests[0])
        assert [r.meta.turn_id for r in call.replies if r.meta.generation_id == 2][0] == 2

        await call.send(playback_done=control_pb2.PlaybackDone(generation_id=2))
        await wait_for(lambda: session.agent_speaking is None, timeout=5)
        # The agent is silent: a short "yeah" answers it and is a turn of its own.
        await call.transcript(3, "yeah", backchannel=True)
        await wait_for(lambda: call.finished(3), timeout=5)
        assert engine.requests[1][-1]["content"] == "yeah"
    finally:
        await session.close("test")


# --- a call moving to another replica --------------------------------------------------------------
def replica(bus: Bus, kv: Any, store: SchedulingStore, engine: ScriptEngine) -> LlmService:
    svc = LlmService(load(CommonSettings), load(LlmSettings))
    svc.bus, svc._kv, svc.engine, svc.store = bus, kv, engine, store  # type: ignore[assignment]
    svc.executor = ToolExecutor(svc.agent, store)
    return svc


async def test_a_call_continues_on_another_replica_with_its_history_and_pending_booking(
    js_bus: Bus, tmp_path: Path
) -> None:
    kv = await streams.dialog_kv(js_bus.jetstream())
    agent = load_agent(load(CommonSettings).agent_path)
    store = SchedulingStore.open(f"sqlite:///{tmp_path / 'appts.sqlite3'}", agent)
    booking = (
        '<tool_call>{"name": "book_appointment", "arguments": '
        '{"appointment_type": "cleaning", "when": "next Tuesday at 10"}}</tool_call>'
    )
    first = replica(js_bus, kv, store, ScriptEngine([[booking]]))
    second = replica(js_bus, kv, store, ScriptEngine([]))
    call = CallProbe(js_bus)
    await call.listen()
    one = await first.new_session(call.claim(), taken_over=False)
    await one.start()
    await call.transcript(1, "I'd like a cleaning next Tuesday at 10")
    await wait_for(lambda: call.finished(1), timeout=5)
    assert "your name" in call.spoken(1)
    await one.close("replica stopped")

    two = await second.new_session(call.claim(), taken_over=True)
    await two.start()
    try:
        assert two.dialog is not None
        assert two.dialog.state.history[0]["content"].endswith("I'd like a cleaning next Tuesday at 10")
        await call.transcript(2, "It's Ann Lee.")
        await wait_for(lambda: call.finished(2), timeout=5)
        assert "booked" in call.spoken(2), call.spoken(2)
        booked = store.find_by_phone("+14155550134")
        assert [(a.caller_name, a.type_id) for a in booked] == [("Ann Lee", "cleaning")]
        assert not second.engine.requests  # the booking resumed in code, from the saved state
    finally:
        await two.close("test")


async def test_an_unreadable_saved_state_starts_the_call_fresh(js_bus: Bus, tmp_path: Path) -> None:
    kv = await streams.dialog_kv(js_bus.jetstream())
    agent = load_agent(load(CommonSettings).agent_path)
    store = SchedulingStore.open(f"sqlite:///{tmp_path / 'appts.sqlite3'}", agent)
    svc = replica(js_bus, kv, store, ScriptEngine([]))
    for bad in (b"[]", b'{"turn": null, "generation": "x"}', b'{"history": {}}', b"\xff", b'{"tools": 3}'):
        call_id = subjects.new_call_id()
        await kv.put(call_id, bad)
        assert await svc.load_state(call_id) is None, bad
    assert await svc.load_state(subjects.new_call_id()) is None  # nothing saved yet
    good = DialogState(
        history=[{"role": "user", "content": "hi"}], turn=1, generation=2, tools={"said": ["hi"]}
    )
    await kv.put("c-good", good.to_json())
    assert await svc.load_state("c-good") == good


@pytest.mark.parametrize(
    ("action", "answered_by_model"),
    [(control_pb2.DIRECTIVE_ACTION_SAY_AS_ANSWER, False), (control_pb2.DIRECTIVE_ACTION_SAY, True)],
)
async def test_policy_words_said_as_the_answer_are_the_whole_turn_and_plain_ones_are_not(
    bus: Bus, action: int, answered_by_model: bool
) -> None:
    """ "Am I talking to a robot?" gets policy's exact answer, and the model's reply it cut is
    not started again; policy words on a turn that asked more (SAY) are followed, in the same
    generation, by the model's answer."""
    engine = ScriptEngine([[None], ["We open at nine on Monday."]])
    stage, call, session = await open_session(bus, engine, SUNDAY_NOON)
    try:
        said = "I am an AI assistant, not a person."
        await call.transcript(1, "Wait, am I talking to a robot? When do you open on Monday?")
        await wait_for(lambda: engine.requests, timeout=5)  # the model's reply is under way
        await call.send(
            directive=control_pb2.PolicyDirective(
                action=action, text=said, rule="identity_question", turn_id=1
            )
        )
        spoken = await wait_for(
            lambda: next(
                (call.spoken(g) for g in range(1, 4) if call.finished(g) and said in call.spoken(g)), None
            ),
            timeout=5,
        )
        await asyncio.sleep(0.3)
        if answered_by_model:
            assert spoken == f"{said} We open at nine on Monday." and len(engine.requests) == 2
        else:
            assert spoken == said and len(engine.requests) == 1
    finally:
        await session.close("test")


async def test_policy_words_that_arrive_before_the_final_they_answer_are_not_cut_by_a_reply(
    bus: Bus,
) -> None:
    """Policy hears a final on the data lane and answers on the control lane, so under load its
    message offer can reach the LLM before the final does. That final is the turn policy
    answered: it joins the history, no reply is generated, and the offer plays out whole (a
    newer generation would cut its second sentence at the edge)."""
    engine = ScriptEngine([["Let me see."], ["Of course, Ana. Our team will call you back."]])
    stage, call, session = await open_session(bus, engine, SUNDAY_NOON)
    try:
        offer = "I am sorry, nobody is available. I can take a message: please tell me your name."
        await call.send(
            directive=control_pb2.PolicyDirective(
                action=control_pb2.DIRECTIVE_ACTION_TAKE_MESSAGE, text=offer, rule="escalation", turn_id=1
            )
        )
        await wait_for(lambda: call.finished(1), timeout=5)
        await call.transcript(1, "Please put me through to a person.")
        # The offer's playout may be reported before or after the final is taken: either way
        # the caller's words come first in the history.
        await call.send(playback_done=control_pb2.PlaybackDone(generation_id=1))
        await wait_for(lambda: stage.saved and len(stage.saved[-1].history) == 2, timeout=5)
        await call.settle(1)
        assert call.spoken(1) == offer
        assert not engine.requests, "the answered turn started a reply"
        assert not [r for r in call.replies if r.meta.generation_id > 1]
        assert [(m["role"], m["content"]) for m in stage.saved[-1].history] == [
            ("user", "Please put me through to a person."),
            ("assistant", offer),
        ]
        # The caller's next words are a turn of their own, answered by the model.
        await call.transcript(2, "It is Ana, about my crown.")
        await wait_for(lambda: call.finished(2), timeout=5)
        assert engine.requests[0][-1]["content"].endswith("It is Ana, about my crown.")
    finally:
        await session.close("test")

"""Live call rules in the running policy service (real nats-server, the real SessionHost):
opt-out, escalation and recording consent arrive as directives on the call's control lane and
as records in the audit stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from phoneagent.agents.words import CONSENT_PROMPT, NOTICE_TEXT, TAKE_MESSAGE_TEXT, TRANSFER_TEXT
from phoneagent.policy.call_rules import IDENTITY_ANSWER, OPT_OUT_CONFIRMATION
from phoneagent.policy.service import PolicyService
from phoneagent.runtime import approvals, subjects
from phoneagent.runtime.approvals import Verifier
from phoneagent.runtime.audit_query import AuditFilter, query_audit
from phoneagent.runtime.bus import Bus
from phoneagent.v1 import control_pb2, policy_pb2
from support.common import PUBLIC_KEY_FILE, wait_for
from support.policy_stack import CLOSED, OPEN, running_policy, start_call

CALLER_CA = "+14155550134"  # San Francisco: California is an all-party consent state
CALLER_NY = "+12125550123"  # New York: one-party consent


@pytest.fixture(scope="module")
async def policy(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolicyService]:
    db = tmp_path_factory.mktemp("policy-live") / "policy.sqlite3"
    # the front desk is open: a request for a person is transferred
    async with running_policy(nats_url, db, common={"replica_id": "policy-live-t"}, now=OPEN) as svc:
        yield svc


async def audit_of(bus: Bus, call_id: str, subject: str, count: int = 1) -> list[policy_pb2.PolicyDecision]:
    """The call's audit records about ``subject``, once at least ``count`` are in the stream."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while True:
        found = await query_audit(bus.jetstream(), AuditFilter(call_id=call_id, subject=subject))
        if len(found) >= count or loop.time() > deadline:
            assert len(found) >= count, f"no {subject} audit record for the call"
            return found
        await asyncio.sleep(0.05)  # poll the stream until the deadline


async def test_opt_out_adds_to_dnc_hangs_up_and_denies_later_dials(policy: PolicyService, bus: Bus) -> None:
    call = await start_call(bus, CALLER_CA)
    call_id = call.call_id
    await call.caller(1, "Please stop calling me. My card is 4111 1111 1111 1111 by the way.")

    found = await wait_for(lambda: call.directives(), timeout=5)
    assert found[0].action == control_pb2.DIRECTIVE_ACTION_SAY_AND_HANG_UP
    assert found[0].text == OPT_OUT_CONFIRMATION and found[0].rule == "opt_out" and found[0].turn_id == 1
    assert policy.stores is not None and policy.stores.dnc.lookup(CALLER_CA) is not None

    (record,) = await audit_of(bus, call_id, "opt_out")
    assert record.decision == policy_pb2.DECISION_DENY and record.rule == "internal_dnc"
    assert record.number_hint.endswith("34") and CALLER_CA not in record.SerializeToString().decode("latin-1")
    assert "stop calling me" in record.details["caller_said"] and "4111" not in record.details["caller_said"]

    # After the opt-out nothing else is acted on in this call ...
    await call.caller(2, "actually let me speak to a real person")
    check = policy_pb2.DialCheck(number=CALLER_CA, purpose="reminder", time_zone="America/Los_Angeles")
    decision = await bus.request(subjects.dial_check(), check, policy_pb2.PolicyDecision, timeout=5)
    # ... and the number can no longer be dialled.
    assert decision.decision == policy_pb2.DECISION_DENY and decision.rule == "internal_dnc"
    assert len(call.directives()) == 1


async def test_request_for_a_person_transfers(policy: PolicyService, bus: Bus) -> None:
    call = await start_call(bus, CALLER_NY)
    call_id = call.call_id
    await call.caller(1, "Can I talk to a real person please?")
    found = await wait_for(lambda: call.directives(), timeout=5)
    assert found[0].action == control_pb2.DIRECTIVE_ACTION_SAY_AND_TRANSFER
    assert found[0].text == TRANSFER_TEXT and found[0].rule == "human_requested"
    assert found[0].target == "sip:frontdesk@brightsmile.example.org"  # the agent's configured human
    (record,) = await audit_of(bus, call_id, "escalation")
    assert record.decision == policy_pb2.DECISION_ALLOW and record.details["action"] == "transfer"


async def test_a_caller_who_asks_if_they_are_talking_to_a_robot_is_told_it_is_an_ai(
    policy: PolicyService, bus: Bus
) -> None:
    """The 0.5B model answered "Wait, am I talking to a robot?" with "I'm sorry, but I can't
    assist with that.": policy answers it, as the whole answer when that was all the caller
    asked, and before the model answers the rest when it was not."""
    call = await start_call(bus, CALLER_NY)
    await call.caller(1, "Wait, am I talking to a robot?")
    found = await wait_for(lambda: call.directives(), timeout=5)
    assert found[0].action == control_pb2.DIRECTIVE_ACTION_SAY_AS_ANSWER
    assert found[0].text == IDENTITY_ANSWER and found[0].rule == "identity_question" and found[0].turn_id == 1
    (record,) = await audit_of(bus, call.call_id, "disclosure")
    assert record.decision == policy_pb2.DECISION_ALLOW and record.rule == "identity_question"
    assert record.details["whole_turn"] == "true"

    await call.caller(2, "Are you a computer? I need to move my cleaning.")
    found = await wait_for(lambda: len(call.directives()) == 2 and call.directives(), timeout=5)
    assert found[1].action == control_pb2.DIRECTIVE_ACTION_SAY and found[1].text == IDENTITY_ANSWER
    # Asking for a person in the same breath is an escalation: its words say enough.
    await call.caller(3, "Is this a robot? Let me speak to a real person.")
    found = await wait_for(lambda: len(call.directives()) == 3 and call.directives(), timeout=5)
    assert found[2].action == control_pb2.DIRECTIVE_ACTION_SAY_AND_TRANSFER
    await asyncio.sleep(0.2)
    assert len(call.directives()) == 3


async def test_repeated_misunderstanding_takes_a_message_when_nobody_is_free(
    policy: PolicyService, bus: Bus
) -> None:
    policy.transfer_available = False  # e.g. the front desk is marked unavailable
    try:
        call = await start_call(bus, CALLER_NY)
        call_id, said = call.call_id, call.said
        assert policy.sessions is not None
        rules = policy.sessions.sessions[call_id].session.rules  # type: ignore[attr-defined]
        for turn in (1, 2, 3):
            await call.agent(turn, "Sorry, I didn't understand that. Could you repeat it?")
            await wait_for(lambda t=turn: len(said) >= 2 * t, timeout=5)  # type: ignore[misc]
            await call.caller(turn, "mumble grumble")
            if turn < 3:  # the reply to this turn must come after it
                await wait_for(lambda t=turn: rules.escalation.misunderstood_turns == t, timeout=5)  # type: ignore[misc]
        found = await wait_for(lambda: call.directives(), timeout=5)
        assert (
            found[0].action == control_pb2.DIRECTIVE_ACTION_TAKE_MESSAGE
            and found[0].text == TAKE_MESSAGE_TEXT
        )
        assert found[0].rule == "repeated_misunderstanding" and found[0].turn_id == 3
    finally:
        policy.transfer_available = True


async def test_all_party_state_asks_consent_and_audits_refusal(policy: PolicyService, bus: Bus) -> None:
    call = await start_call(bus, CALLER_CA)
    call_id, said = call.call_id, call.said
    await call.agent(1, "Hello, Bright Smile Dental, how can I help?")
    first = await wait_for(lambda: said, timeout=5)
    assert first[0].text.startswith("You are speaking with an AI assistant.")
    assert not call.directives()  # nothing is asked over the greeting
    await call.played(1)
    found = await wait_for(lambda: call.directives(), timeout=5)
    assert found[0].action == control_pb2.DIRECTIVE_ACTION_SAY and found[0].text == CONSENT_PROMPT
    assert found[0].rule == "recording_consent"

    await call.caller(1, "No, I'd rather you didn't.")
    (record,) = await audit_of(bus, call_id, "recording")
    assert record.decision == policy_pb2.DECISION_DENY and record.rule == "consent_refused"
    assert len(call.directives()) == 1


async def test_one_party_state_gets_the_notice(policy: PolicyService, bus: Bus) -> None:
    call = await start_call(bus, CALLER_NY)
    call_id, said = call.call_id, call.said
    await call.agent(1, "Hello, Bright Smile Dental.")
    await wait_for(lambda: said, timeout=5)
    await call.played(1)
    found = await wait_for(lambda: call.directives(), timeout=5)
    assert found[0].action == control_pb2.DIRECTIVE_ACTION_SAY and found[0].text == NOTICE_TEXT
    (record,) = await audit_of(bus, call_id, "recording")
    assert record.decision == policy_pb2.DECISION_ALLOW and record.rule == "one_party_notice"
    verifier = Verifier.from_files([PUBLIC_KEY_FILE])  # what the edge checks before recording
    verifier.check(
        record.approval,
        action=approvals.RECORDING,
        call_id=call_id,
        decision=approvals.recording_decision(record),
    )
    assert record.approval.decision_id == record.decision_id
    await call.played(2)  # the notice itself played: it is not repeated
    await call.caller(1, "Please stop recording this call.")
    records = await audit_of(bus, call_id, "recording", count=2)
    assert records[1].decision == policy_pb2.DECISION_DENY and records[1].rule == "caller_stopped"
    assert approvals.recording_decision(records[1]) == "deny/caller_stopped"
    verifier.check(
        records[1].approval, action=approvals.RECORDING, call_id=call_id, decision="deny/caller_stopped"
    )
    assert len(call.directives()) == 1


def test_party_numbers_from_uris(tmp_path: Path) -> None:
    from phoneagent.policy.live import party_number

    assert party_number("sip:+14155550134@10.0.0.1:5060;transport=udp") == CALLER_CA
    assert party_number("tel:415-555-0134") == CALLER_CA
    assert party_number("sip:agent@127.0.0.1") is None and party_number("") is None


async def test_request_for_a_person_after_hours_takes_a_message(policy: PolicyService, bus: Bus) -> None:
    policy.clock = lambda: CLOSED  # 20:00 in New York: the front desk has gone home
    try:
        call = await start_call(bus, CALLER_NY)
        call_id = call.call_id
        await call.caller(1, "Can I talk to a real person please?")
        found = await wait_for(lambda: call.directives(), timeout=5)
        assert (
            found[0].action == control_pb2.DIRECTIVE_ACTION_TAKE_MESSAGE
            and found[0].text == TAKE_MESSAGE_TEXT
        )
        assert found[0].target == ""
        (record,) = await audit_of(bus, call_id, "escalation")
        assert record.details["action"] == "take_message"
        assert record.details["unavailable"] == "outside_business_hours"
    finally:
        policy.clock = lambda: OPEN

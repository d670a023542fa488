"""The AI disclosure counts as given only once the caller heard it (real nats-server, the running
policy service): an audit failure says nothing, a barge-in that cut the disclosure or a newer
generation that replaced it (AMD leaving a voicemail message) gets it said again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from phoneagent.agents.disclosure import DISCLOSURE_CORE
from phoneagent.edge.amd import AmdGate
from phoneagent.policy.call_rules import DisclosureGuard
from phoneagent.policy.service import PolicyService
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus
from phoneagent.v1 import call_pb2, common_pb2, speech_pb2
from support.common import wait_for
from support.policy_stack import Call, running_policy, start_call

CALLER = "+12125550123"  # New York
ADDITION = "I'm calling for Acme Dental."
DISCLOSURE = f"{DISCLOSURE_CORE} {ADDITION}"


@pytest.fixture(scope="module")
async def policy(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolicyService]:
    db = tmp_path_factory.mktemp("policy-disclosure") / "policy.sqlite3"
    async with running_policy(
        nats_url, db, disclosure_addition=ADDITION, common={"replica_id": "policy-disclosure-t"}
    ) as svc:
        yield svc


def guard_of(policy: PolicyService, call: Call) -> DisclosureGuard:
    assert policy.sessions is not None
    return policy.sessions.sessions[call.call_id].session.guard  # type: ignore[attr-defined,no-any-return]


async def test_failed_audit_says_nothing_and_the_next_sentence_still_discloses(
    policy: PolicyService, bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_audit = policy.audit
    failures = [RuntimeError("JetStream publish timed out")]

    async def flaky_audit(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real_audit(*args, **kwargs)

    monkeypatch.setattr(policy, "audit", flaky_audit)
    call = await start_call(bus, CALLER)
    await call.agent(1, "Hello, Bright Smile Dental.", "How can I help you today?")
    await wait_for(lambda: len(call.said) >= 2, timeout=5)  # the second sentence and the final marker
    assert call.texts() == [f"{DISCLOSURE} How can I help you today?"]


async def test_barge_in_before_the_disclosure_was_heard_repeats_it(policy: PolicyService, bus: Bus) -> None:
    call = await start_call(bus, CALLER)
    await call.agent(1, "Hello, Bright Smile Dental.")
    await wait_for(lambda: call.texts(), timeout=5)
    guard = guard_of(policy, call)
    await call.barged_in(1, 0, len(DISCLOSURE_CORE) - 5)  # cut inside the disclosure
    await wait_for(lambda: guard.pending_generation is None, timeout=5)
    await call.agent(2, "Sure, what day suits you?")
    await wait_for(lambda: len(call.texts()) == 2, timeout=5)
    assert call.texts()[1] == f"{DISCLOSURE} Sure, what day suits you?"
    assert not guard.disclosed

    # This time the caller heard all of it before talking: later replies go out as they are.
    await call.barged_in(2, 0, len(DISCLOSURE) + 3)
    await wait_for(lambda: guard.disclosed, timeout=5)
    await call.agent(3, "Tuesday works.")
    await wait_for(lambda: len(call.texts()) == 3, timeout=5)
    assert call.texts()[2] == "Tuesday works."


async def test_played_greeting_counts_and_later_replies_pass(policy: PolicyService, bus: Bus) -> None:
    call = await start_call(bus, CALLER)
    await call.agent(1, "Hello.", "How can I help?")
    await wait_for(lambda: len(call.texts()) == 2, timeout=5)
    assert call.texts() == [f"{DISCLOSURE} Hello.", "How can I help?"]  # once per generation
    await call.played(1)
    await wait_for(lambda: guard_of(policy, call).disclosed, timeout=5)
    await call.agent(2, "Goodbye.")
    await wait_for(lambda: len(call.texts()) == 3, timeout=5)
    assert call.texts()[2] == "Goodbye."


async def test_how_a_sentence_was_answered_reaches_speech_with_the_disclosure_added(
    policy: PolicyService, bus: Bus
) -> None:
    """Policy approves a copy of the dialog's sentence: the tag and the prompt-token count ride on
    to the say subject, also when the disclosure is put in front of the words."""
    call = await start_call(bus, CALLER)
    meta = common_pb2.EventMeta(call_id=call.call_id, generation_id=1)
    for msg in (
        speech_pb2.AgentText(meta=meta, text="We open at nine.", answered_by=speech_pb2.ANSWERED_MODEL),
        speech_pb2.AgentText(
            meta=meta,
            sentence_seq=1,
            final=True,
            answered_by=speech_pb2.ANSWERED_MODEL,
            prompt_tokens_evaluated=41,
        ),
    ):
        await bus.publish(subjects.reply(call.call_id), msg)
    await wait_for(lambda: len(call.said) == 2, timeout=5)
    first, end = call.said
    assert first.text == f"{DISCLOSURE} We open at nine."
    assert first.answered_by == end.answered_by == speech_pb2.ANSWERED_MODEL
    assert not first.HasField("prompt_tokens_evaluated") and end.prompt_tokens_evaluated == 41


async def test_voicemail_message_after_the_unplayed_greeting_starts_with_the_disclosure(
    policy: PolicyService, bus: Bus
) -> None:
    call = await start_call(bus, CALLER, outbound=True)
    await call.agent(1, "Hi, this is Bright Smile Dental.")  # held by AMD, then dropped unplayed
    await wait_for(lambda: call.texts(), timeout=5)
    # The edge's leave-message directive, spoken by the dialog as generation 2.
    gate = AmdGate(_EdgeCallStub(), "leave-message", "Your order is ready.")
    await call.agent(2, gate.message)
    await wait_for(lambda: len(call.texts()) == 2, timeout=5)
    assert call.texts()[1] == f"{DISCLOSURE} Your order is ready."


def test_amd_message_starts_with_the_disclosure_core() -> None:
    assert AmdGate(_EdgeCallStub(), "leave-message", "Your order is ready.").message == (
        f"{DISCLOSURE_CORE} Your order is ready."
    )
    already = f"{DISCLOSURE_CORE} Your order is ready."
    assert AmdGate(_EdgeCallStub(), "leave-message", already).message == already
    assert AmdGate(_EdgeCallStub(), "leave-message", "").message.startswith(DISCLOSURE_CORE)


def test_cancelled_generation_is_disclosed_again() -> None:
    guard = DisclosureGuard(DISCLOSURE)
    assert guard.needs_disclosure(1)
    guard.published(1, 0, guard.apply("Hello."))
    assert not guard.needs_disclosure(1)
    guard.on_playback_done(7)  # another generation's playback says nothing about this one
    guard.on_cancel(1)
    assert guard.needs_disclosure(2) and not guard.disclosed


class _EdgeCallStub:
    """The two attributes AmdGate reads at construction."""

    rate = 8000
    call_id = "c-amd"
    started = call_pb2.CallStarted(direction=call_pb2.DIRECTION_OUTBOUND)

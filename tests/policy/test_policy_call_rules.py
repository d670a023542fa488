"""Every-call rules: disclosure, escalation, opt-out (recording has its own file)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from phoneagent.agents.disclosure import DISCLOSURE_CORE, build_disclosure, enforce_disclosure
from phoneagent.policy.call_rules import (
    OPT_OUT_CONFIRMATION,
    DisclosureGuard,
    EscalationAction,
    EscalationConfig,
    EscalationDetector,
    detect_identity_question,
    detect_opt_out,
    handle_opt_out,
    only_identity_question,
)
from phoneagent.policy.stores import PolicyStores
from phoneagent.runtime.errors import InvalidArgument

NOW = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)


@pytest.fixture
def stores() -> Iterator[PolicyStores]:
    s = PolicyStores(":memory:")
    yield s
    s.close()


# --- disclosure ----------------------------------------------------------------------------


def test_disclosure_core_is_always_first() -> None:
    text = build_disclosure("I'm calling on behalf of Acme Dental.")
    assert text == f"{DISCLOSURE_CORE} I'm calling on behalf of Acme Dental."
    out = enforce_disclosure("Hi! I'm calling about your appointment tomorrow.", text)
    assert out.startswith(text) and out.endswith("appointment tomorrow.")
    assert build_disclosure() == DISCLOSURE_CORE
    assert build_disclosure(f"  {DISCLOSURE_CORE}  ") == DISCLOSURE_CORE


@pytest.mark.parametrize("value", ["", "   ", "\n"])
def test_disclosure_cannot_be_blanked(value: str) -> None:
    with pytest.raises(InvalidArgument, match="cannot be blanked"):
        build_disclosure(value)


@pytest.mark.parametrize(
    "value",
    [
        "I'm a real person from Acme.",
        "This is not an AI.",
        "Don't worry, I am not a robot.",
        "You're talking to a human being.",
    ],
)
def test_disclosure_addition_cannot_contradict_the_core(value: str) -> None:
    with pytest.raises(InvalidArgument, match="contradicts"):
        build_disclosure(value)


def test_disclosure_enforced_even_with_a_tampered_text() -> None:
    # A disclosure text that lost its core (built by hand, edited config) still gets the core first.
    out = enforce_disclosure("Hello there.", "Hi from Acme.")
    assert out == f"{DISCLOSURE_CORE} Hi from Acme. Hello there."
    assert enforce_disclosure("", "") == DISCLOSURE_CORE


def test_disclosure_not_duplicated_and_only_on_first_utterance() -> None:
    text = build_disclosure("This is Acme Dental.")
    already = f"{text.lower()}  How can I help?"
    assert enforce_disclosure(already, text) == " ".join(already.split())
    guard = DisclosureGuard(text)
    assert guard.needs_disclosure(1) and guard.apply("How can I help?").startswith(DISCLOSURE_CORE)
    guard.published(1, 0, guard.apply("How can I help?"))
    assert not guard.needs_disclosure(1) and not guard.disclosed  # sent, not yet heard
    guard.on_playback_done(1)
    assert guard.disclosed and not guard.needs_disclosure(2)
    # A message that starts with the core alone (an AMD voicemail message) gets the addition once.
    assert enforce_disclosure(f"{DISCLOSURE_CORE} Bye.", text) == f"{text} Bye."


# --- escalation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Can I talk to a person?",
        "I want to speak with a representative please.",
        "REPRESENTATIVE!",
        "um, agent",
        "Operator.",
        "uh I need a real person",
        "Let me speak to someone.",
        "Could you transfer me to a human?",
        "get me a human",
        "human please",
        "No, I want a live agent.",
        "can i speak to your customer service representative",
        "I'd like to talk to a manager",
        "This is ridiculous, get me a manager right now.",
        "I want your supervisor.",
        "can I have the office manager please",
        "I can't hear you, get me a person.",
    ],
)
def test_human_request_escalates(text: str) -> None:
    d = EscalationDetector().on_turn(text)
    assert d is not None and d.reason == "human_requested" and d.action is EscalationAction.TRANSFER


@pytest.mark.parametrize(
    "text",
    [
        "I don't need to talk to a person, you're doing fine.",
        "No need for a representative.",
        "I'm a travel agent and I want to move my booking.",
        "Are you a real person?",
        "My insurance agent told me to call.",
        "I never asked to speak to a human.",
        "The human resources department sent me.",
        "I want to reschedule my appointment.",
        "I need the manager's email address.",
        "The office manager told me to call about my bill.",
    ],
)
def test_no_escalation_on_negated_or_unrelated_mentions(text: str) -> None:
    assert EscalationDetector().on_turn(text) is None


def test_take_message_when_nobody_is_available() -> None:
    d = EscalationDetector().on_turn("put me through to an operator", humans_available=False)
    assert d is not None and d.action is EscalationAction.TAKE_MESSAGE


def test_repeated_misunderstanding_escalates_after_n_consecutive_turns() -> None:
    det = EscalationDetector(EscalationConfig(max_misunderstood=3))
    assert det.on_turn("blargh", understood=False) is None
    assert det.on_turn("hmm what", understood=False) is None
    assert det.on_turn("yes that one", understood=True) is None  # resets the count
    assert det.on_turn("flibber", understood=False) is None
    assert det.on_turn("zzz", understood=False) is None
    d = det.on_turn("...", understood=False)
    assert d is not None and d.reason == "repeated_misunderstanding"
    assert det.on_turn("??", understood=False) is None  # count restarts after escalating


def test_configured_trigger_words() -> None:
    det = EscalationDetector(EscalationConfig(trigger_words=("lawyer", "file a complaint")))
    d = det.on_turn("I'm going to call my LAWYER.")
    assert d is not None and d.reason == "trigger_word" and d.matched == "lawyer"
    assert det.on_turn("I want to, uh, file a complaint") is not None
    assert det.on_turn("I don't want to file a complaint, it's fine") is None
    assert det.on_turn("what time is it") is None
    with pytest.raises(InvalidArgument):
        EscalationConfig(trigger_words=("  ",))


# --- opt-out -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Stop calling me!",
        "please take me off your list",
        "Put me on your do not call list.",
        "DO NOT CALL",
        "remove my number",
        "Unsubscribe.",
        "um, uh, stop calling",
        "Don't call me again.",
        "dont call this number",
        "Never call me again",
        "No. Stop calling me.",
        "take my number off your list",
        "I want to opt out",
        "Please remove me from your calling list",
        "Lose my number",
        "Could you not call me anymore?",
    ],
)
def test_opt_out_phrases_detected(text: str) -> None:
    assert detect_opt_out(text) is not None, text


@pytest.mark.parametrize(
    "text",
    [
        "Don't stop, this is helpful.",
        "Please don't stop calling me, I like the reminders.",
        "I didn't say stop calling.",
        "I do not want you to stop calling.",
        "Can you call me back later?",
        "Why did you not call me back?",
        "Why did you not call me yesterday?",
        "Please remove the late fee.",
        "I don't want to unsubscribe.",
        "stop, you are talking too fast",
        "Do not remove my number!",
        "Please don\u2019t stop calling me.",
    ],
)
def test_opt_out_not_fired_by_negations_or_other_contexts(text: str) -> None:
    assert detect_opt_out(text) is None, text


def test_handle_opt_out_adds_to_dnc_and_confirms(stores: PolicyStores) -> None:
    assert handle_opt_out("what are your hours", "+12125550123", stores.dnc, NOW) is None
    assert stores.dnc.lookup("+12125550123") is None
    r = handle_opt_out("Take me off your list.", "+1 (212) 555-0123", stores.dnc, NOW, source="call c-42")
    assert r is not None and r.recorded and r.confirmation == OPT_OUT_CONFIRMATION
    entry = stores.dnc.lookup("+12125550123")
    assert entry is not None and entry.source == "call c-42" and entry.added_at == NOW


def test_handle_opt_out_without_a_number_does_not_claim_removal(stores: PolicyStores) -> None:
    r = handle_opt_out("stop calling me", None, stores.dnc, NOW)
    assert r is not None and not r.recorded and "removed" not in r.confirmation
    broken = PolicyStores(":memory:")
    broken.close()
    r = handle_opt_out("stop calling me", "+12125550123", broken.dnc, NOW)
    assert r is not None and not r.recorded


@pytest.mark.parametrize(
    ("text", "whole"),
    [
        ("Wait, am I talking to a robot?", True),
        ("Are you a real person?", True),
        ("Is this a recording?", True),
        ("Are you human or a machine?", True),
        ("Hmm, are you real?", True),
        ("Am I speaking with an AI? What time do you open on Monday?", False),
        ("Are you a computer? Because I need to move my cleaning.", False),
    ],
)
def test_a_question_whether_the_agent_is_a_person_is_found(text: str, whole: bool) -> None:
    assert detect_identity_question(text) is not None
    assert only_identity_question(text) is whole


@pytest.mark.parametrize(
    "text",
    [
        "Are you open on Monday?",
        "Are you the dentist's office?",
        "Is this Bright Smile Dental?",
        "I want to talk to a real person.",
        "Are you able to book me in on Friday?",
        "Is it a long appointment?",
    ],
)
def test_other_questions_are_not_identity_questions(text: str) -> None:
    assert detect_identity_question(text) is None and not only_identity_question(text)

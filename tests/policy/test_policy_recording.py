"""Recording: jurisdiction decides notice vs consent; only a yes starts recording."""

from __future__ import annotations

import pytest
from phoneagent.policy.recording import (
    RecordingConfig,
    RecordingMode,
    RecordingSession,
    RecordingState,
    classify_answer,
    plan_recording,
)
from phoneagent.runtime.errors import InvalidArgument

NY = "+12125550123"  # one-party state
TX = "+15125550123"  # one-party state
CA = "+14155550123"  # all-party state
FL_PANHANDLE = "+18505550123"  # all-party state


def test_one_party_states_get_a_notice_only() -> None:
    plan = plan_recording([NY, TX])
    assert plan.mode is RecordingMode.NOTICE_ONLY and "recorded" in plan.text
    assert plan.regions == ("US-NY", "US-TX")
    session = RecordingSession(plan)
    assert session.may_record


@pytest.mark.parametrize(
    "numbers,extra",
    [
        ([NY, CA], ()),
        ([FL_PANHANDLE], ()),
        ([NY], ("US-WA",)),
        (["+442079460958"], ()),
        (["+18005550123"], ()),
        ([], ()),
    ],
)
def test_all_party_or_unknown_jurisdiction_asks_consent(numbers: list[str], extra: tuple[str, ...]) -> None:
    plan = plan_recording(numbers, extra)
    assert plan.mode is RecordingMode.ASK_CONSENT
    assert not RecordingSession(plan).may_record


def test_all_party_list_is_configurable() -> None:
    cfg = RecordingConfig(all_party_states=frozenset({"NY"}))
    assert plan_recording([NY], config=cfg).mode is RecordingMode.ASK_CONSENT
    assert plan_recording([CA], config=cfg).mode is RecordingMode.NOTICE_ONLY
    with pytest.raises(InvalidArgument):
        RecordingConfig(all_party_states=frozenset({"XX"}))


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Yes.", True),
        ("yeah sure", True),
        ("Okay, go ahead", True),
        ("No problem.", True),
        ("I don't mind", True),
        ("No.", False),
        ("nope", False),
        ("I'd rather not", False),
        ("yes, but please don't record it", False),
        ("I'm not sure", False),
        ("what?", None),
        ("", None),
    ],
)
def test_answer_classification(text: str, expected: bool | None) -> None:
    assert classify_answer(text) is expected


def test_consent_flow_yes_records_and_no_or_silence_stops() -> None:
    plan = plan_recording([CA])
    yes = RecordingSession(plan)
    assert yes.on_answer("Sure, that's fine.") is RecordingState.RECORDING and yes.may_record
    no = RecordingSession(plan)
    assert no.on_answer("No thanks") is RecordingState.NOT_RECORDING and not no.may_record
    silent = RecordingSession(plan)
    assert silent.on_no_answer() is RecordingState.NOT_RECORDING


def test_unclear_answer_asks_again_then_stops() -> None:
    session = RecordingSession(plan_recording([CA]), RecordingConfig(max_prompts=2))
    assert session.on_answer("what was that?") is RecordingState.AWAITING_CONSENT
    assert session.ask_again and not session.may_record
    assert session.on_answer("hmm") is RecordingState.NOT_RECORDING


def test_caller_can_stop_recording_mid_call() -> None:
    session = RecordingSession(plan_recording([NY]))
    assert session.on_utterance("I'd like to reschedule") is RecordingState.RECORDING
    assert session.on_utterance("Please stop the recording.") is RecordingState.NOT_RECORDING
    assert session.on_answer("yes") is RecordingState.NOT_RECORDING  # a later yes does not restart it
    session = RecordingSession(plan_recording([NY]))
    assert session.on_utterance("don't record this part") is RecordingState.NOT_RECORDING

"""The scripted-caller evaluation: its sets, and the expectations it adds to the harness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from phoneagent.agents import example_agent_path
from phoneagent.agents.agent import load_agent
from phoneagent.devtools import sip_eval
from phoneagent.devtools.harness.buswatch import CallTrace
from phoneagent.devtools.harness.caller import AgentTurn, CallResult, Utterance
from phoneagent.devtools.harness.checks import MISHEARD, check_all, free_the_book
from phoneagent.devtools.harness.scenario import ScenarioError, parse_scenario
from phoneagent.llm.domain.scheduling import SchedulingStore
from phoneagent.v1 import speech_pb2


def test_the_sets_hold_thirty_distinct_scenarios_with_a_held_out_part() -> None:
    tune, held, held2 = (sip_eval.load_set(name) for name in ("tune", "heldout", "heldout2"))
    assert len(tune) + len(held) >= 30 and len(held) >= 10 and len(held2) >= 12
    names = [s.name for s in tune + held + held2]
    assert len(set(names)) == len(names)
    # every scenario checks something beyond the disclosure
    assert all(len(s.expect) >= 2 for s in tune + held + held2)
    for one in (tune + held, held2):
        kinds = {e.kind for s in one for e in s.expect}
        assert {"mentions", "appointment_at", "appointment_cancelled", "escalated", "opted_out"} <= kinds
    # no set's phrasings are another's, and no caller number is used by two sets (an opt-out
    # puts its number on the do-not-call list)

    def said(scenarios: list[Any]) -> set[str]:
        return {st.text for s in scenarios for st in s.steps if hasattr(st, "text")}

    def callers(scenarios: list[Any]) -> set[str]:
        return {s.caller for s in scenarios}

    for a, b in ((tune, held), (tune, held2), (held, held2)):
        assert not said(a) & said(b)
    assert not callers(held2) & (callers(tune) | callers(held))
    with pytest.raises(ScenarioError, match="unknown evaluation set"):
        sip_eval.load_set("all")


def test_appointment_at_is_a_weekday_and_a_time() -> None:
    sc = parse_scenario({"name": "t", "steps": ["hangup"], "expect": [{"appointment_at": "Tuesday 9:30"}]})
    assert sc.expect[0].value == "tuesday 09:30"
    for bad in ("tuesday", "someday 10:00", "tuesday 25:00", "tuesday 10", "tuesday 10:5"):
        with pytest.raises(ScenarioError, match="weekday and a 24-hour time"):
            parse_scenario({"name": "t", "steps": ["hangup"], "expect": [{"appointment_at": bad}]})


def test_not_mentions() -> None:
    expect = [{"not_mentions": "we accept medicaid"}]
    sc = parse_scenario({"name": "t", "steps": ["hangup"], "expect": expect})
    res = CallResult(sc, "+12125550100")
    res.agent_turns = [AgentTurn(0, 2, "Sorry, we do not accept Medicaid.")]
    assert check_all(res, None)[0].passed
    res.agent_turns = [AgentTurn(0, 2, "Yes, we accept Medicaid.")]
    assert not check_all(res, None)[0].passed


def test_appointment_checks_read_the_calls_bookings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'appointments.sqlite3'}"
    monkeypatch.setenv("PA_DATABASE_URL", url)
    monkeypatch.delenv("PA_AGENT_FILE", raising=False)
    agent = load_agent(example_agent_path())
    now = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)  # Monday 9:30 in New York
    store = SchedulingStore.open(url, agent, clock=lambda: now)
    tuesday_ten = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # 10:00 in New York
    moved = store.book("cleaning", tuesday_ten, "Jordan Lee", "+12125550143", call_id="call-moved")
    store.move(moved.id, datetime(2026, 11, 25, 14, 0, tzinfo=UTC))  # Wednesday 9:00
    gone = store.book("cleaning", tuesday_ten, "Lee Park", "+12125550148", call_id="call-cancelled")
    store.cancel(gone.id)
    store.db.close()

    sc = parse_scenario(
        {
            "name": "t",
            "steps": ["hangup"],
            "expect": [
                {"appointment_booked": True},
                {"appointment_at": "wednesday 09:00"},
                {"appointment_cancelled": True},
            ],
        }
    )

    def verdicts(call_id: str) -> list[bool]:
        trace = CallTrace(call_id=call_id)
        return [c.passed for c in check_all(CallResult(sc, "+12125550100"), trace)]

    assert verdicts("call-moved") == [True, True, False]
    assert verdicts("call-cancelled") == [True, False, True]
    assert verdicts("call-none") == [False, False, False]


def test_each_scenario_finds_the_book_free_of_earlier_scenarios_bookings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A held-out scenario moved a booking to Thursday 2 pm, which a tuning scenario had booked
    earlier in the same run: the agent rightly said the time was taken, and the scenario failed
    on the order the two ran in."""
    url = f"sqlite:///{tmp_path / 'appointments.sqlite3'}"
    monkeypatch.setenv("PA_DATABASE_URL", url)
    agent = load_agent(example_agent_path())
    now = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)  # Monday 9:30 in New York
    store = SchedulingStore.open(url, agent, clock=lambda: now)
    thursday_two = datetime(2026, 12, 3, 19, 0, tzinfo=UTC)
    store.book("cleaning", thursday_two, "Sam Ortiz", "+12125550171", call_id="earlier")
    assert free_the_book() == 1
    later = store.book("cleaning", thursday_two, "Casey Li", "+12125550179", call_id="later")
    assert later.status == "booked"
    assert [a.call_id for a in store.appointments_between(now, now + timedelta(days=30))] == ["later"]
    assert free_the_book() == 1 and free_the_book() == 0
    store.db.close()


def test_mentions_are_looked_for_in_the_replies_not_in_the_greeting() -> None:
    """The greeting ends "How can I help you today?": a toothache scenario that expects "today"
    passed whatever the agent answered."""
    sc = parse_scenario(
        {"name": "t", "steps": ["hangup"], "expect": [{"mentions": "today"}, {"not_mentions": "help you"}]}
    )
    res = CallResult(sc, "+12125550100", media_start_mono=100.0)
    res.agent_turns = [
        AgentTurn(0.5, 4.0, "You are speaking with an AI assistant. How can I help you today?"),
        AgentTurn(9.0, 12.0, "Please call the on-call dentist at the number on our voicemail."),
    ]
    res.utterances = [Utterance("Can someone see me today?", 105.0, 107.5, 0)]
    assert [c.passed for c in check_all(res, None)] == [False, True]
    res.agent_turns.append(AgentTurn(13.0, 15.0, "We can see you today at 2 pm."))
    assert [c.passed for c in check_all(res, None)] == [True, True]
    # A caller who never spoke: whatever the agent said is what there is to check.
    res.utterances = []
    assert [c.passed for c in check_all(res, None)] == [True, False]


def _reply(
    text: str, *, from_policy: bool = False, generation: int = 3, seq: int = 0
) -> speech_pb2.AgentText:
    reply = speech_pb2.AgentText(text=text, from_policy=from_policy, sentence_seq=seq)
    reply.meta.generation_id = generation
    return reply


def test_a_name_the_harness_misheard_is_judged_on_the_words_the_agent_sent() -> None:
    """The agent said "Dr. Priya Shah sees kids and teenagers."; the harness's own recogniser
    wrote "Priasha", and the scenario failed on the harness's ears."""
    sc = parse_scenario(
        {"name": "t", "steps": ["hangup"], "expect": [{"mentions": "shah"}, {"not_mentions": "teeth"}]}
    )
    res = CallResult(sc, "+12125550100")
    res.agent_turns = [AgentTurn(0, 2, "Dr. Priasha, sees kids and teenagers.")]
    assert [c.passed for c in check_all(res, None)] == [False, True]
    trace = CallTrace(call_id="c")
    trace.replies = [_reply("Dr. Priya Shah sees kids and teenagers.")]
    first, second = check_all(res, trace)
    assert first.passed and MISHEARD in first.detail and "Priya Shah" in first.detail
    assert second.passed
    # The reply as the agent sent it: its first phrase, then the rest (over SIP: "Dr. Priya Shah"
    # alone was too short to tell it was heard), pieces of another reply apart.
    trace.replies = [
        _reply("sees kids and teenagers.", seq=1),
        _reply("Dr. Priya Shah", seq=0),
        _reply("Please hold.", generation=4),
    ]
    first = check_all(res, trace)[0]
    assert first.passed and "Dr. Priya Shah sees kids and teenagers." in first.detail
    # A sentence the agent sent that the caller never heard (thrown away, or cut off) is no
    # evidence: too few of its other words were heard.
    trace.replies = [_reply("Dr. Shah is on holiday this week, call back on Monday.")]
    assert [c.passed for c in check_all(res, trace)] == [False, True]
    # Policy's words are not the agent's reply.
    trace.replies = [_reply("Dr. Priya Shah sees kids and teenagers.", from_policy=True)]
    assert not check_all(res, trace)[0].passed
    # The other way round: words the agent must not say fail on its sent words too.
    res.agent_turns = [AgentTurn(0, 2, "We clean teas and check gums for kids.")]
    trace.replies = [_reply("We clean teeth and check gums for kids.")]
    nm = check_all(res, trace)[1]
    assert not nm.passed and MISHEARD in nm.detail


def test_the_summary_counts_checks_decided_on_the_agents_sent_words() -> None:
    results = [
        sip_eval.ScenarioResult("qwen-0.5b", "heldout", "a", True, [], [900.0], "", ["mentions shah: x"]),
        sip_eval.ScenarioResult("qwen-0.5b", "heldout", "b", False, ["mentions 7: no"], [1100.0], ""),
    ]
    table = sip_eval.summary(results)
    assert "| qwen-0.5b | heldout | 1 of 2 (50 %) | 1000 / 1100 ms | 1 |" in table

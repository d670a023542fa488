"""The booking eval's phrasings: every expected appointment must be one the example agent can
book at the eval's fixed clock, or a phrasing would count the model wrong for a slot nobody
could book."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from phoneagent.agents import example_agent_path
from phoneagent.agents.agent import load_agent
from phoneagent.devtools.llm_eval import NOW
from phoneagent.devtools.llm_eval_phrasings import SETS, Phrasing

AGENT = load_agent(example_agent_path())
ALL = [(name, p) for name, phrasings in SETS.items() for p in phrasings]


@pytest.mark.parametrize(("set_name", "phrasing"), ALL, ids=[f"{n}:{p.key}" for n, p in ALL])
def test_each_expected_appointment_is_bookable_at_the_eval_clock(set_name: str, phrasing: Phrasing) -> None:
    kind = next((t for t in AGENT.appointment_types if t.id == phrasing.type_id), None)
    assert kind is not None, f"{phrasing.type_id} is not one of the agent's appointment types"
    start = datetime.fromisoformat(phrasing.local_start).replace(tzinfo=AGENT.tz)
    end = start + timedelta(minutes=kind.duration_minutes)
    assert start >= NOW + timedelta(minutes=AGENT.min_notice_minutes), "inside the minimum notice"
    assert start <= NOW + timedelta(days=AGENT.booking_horizon_days), "beyond the booking horizon"
    assert start.minute % AGENT.slot_minutes == 0, "not on the slot grid"
    intervals = AGENT.hours_on(start.date())
    assert any(i.start <= start.time() and end.time() <= i.end for i in intervals), (
        f"{start:%a %d %b %H:%M}-{end:%H:%M} is outside the opening hours {[str(i) for i in intervals]}"
    )


def test_sets_have_unique_keys_and_the_second_held_out_set_has_twelve_phrasings() -> None:
    keys = [p.key for _, p in ALL]
    assert len(keys) == len(set(keys))
    assert len(SETS["held-out-2"]) == 12

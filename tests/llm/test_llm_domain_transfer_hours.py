"""When people take transfers: the transfer target keeps the business's hours by default, or
answers around the clock (``transfer.hours: always``). The LLM's transfer tool and the policy
service both ask ``Agent.staffed_at``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from phoneagent.agents import example_agent_path
from phoneagent.agents.agent import Agent, AgentConfigError, parse_agent

OPEN = datetime(2026, 6, 2, 15, 0, tzinfo=UTC)  # Tuesday 11:00 in New York
EVENING = datetime(2026, 6, 3, 0, 0, tzinfo=UTC)  # Tuesday 20:00 in New York
SUNDAY = datetime(2026, 6, 7, 16, 0, tzinfo=UTC)  # no hours on Sundays


def agent_with(**transfer: Any) -> Agent:
    raw = yaml.safe_load(example_agent_path().read_text())
    raw["transfer"] = {"target": "sip:frontdesk@example.org", "available": True, **transfer}
    return parse_agent(raw, base_dir=example_agent_path().parent)


def test_business_hours_by_default() -> None:
    agent = agent_with()
    assert agent.transfer is not None and agent.transfer.hours == "business"
    assert [agent.staffed_at(t) for t in (OPEN, EVENING, SUNDAY)] == [True, False, False]


def test_always_staffed_line() -> None:
    agent = agent_with(hours="always")
    assert [agent.staffed_at(t) for t in (OPEN, EVENING, SUNDAY)] == [True, True, True]


def test_unavailable_target_is_never_staffed() -> None:
    agent = agent_with(hours="always", available=False)
    assert not agent.staffed_at(OPEN)


def test_bad_hours_value_names_the_field() -> None:
    with pytest.raises(AgentConfigError, match=r"transfer\.hours"):
        agent_with(hours="weekends")

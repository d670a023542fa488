"""Loading and validating the agent YAML file."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path
from typing import Any

import pytest
import yaml
from phoneagent.agents import example_agent_path
from phoneagent.agents.agent import AgentConfigError, load_agent, parse_agent
from phoneagent.agents.tools import TOOL_NAMES
from phoneagent.llm.domain.tool_schemas import tool_definitions


def base() -> dict[str, Any]:
    return yaml.safe_load(example_agent_path().read_text())


def test_example_agent_loads() -> None:
    agent = load_agent(example_agent_path())
    assert agent.business_name == "Bright Smile Dental"
    assert agent.timezone == "America/New_York"
    assert [str(i) for i in agent.business_hours[2]] == ["9:00-12:00", "13:00-19:00"]  # Wednesday
    assert 5 not in agent.business_hours and 6 not in agent.business_hours
    assert agent.hours_on(date(2026, 11, 26)) == ()  # Thanksgiving closure
    assert agent.hours_on(date(2026, 12, 25)) == ()  # inside the 24-26 December range
    assert agent.is_open_at(date(2026, 11, 24), time(16, 59))
    assert not agent.is_open_at(date(2026, 11, 24), time(17, 0))
    assert agent.find_type("check-up").id == "cleaning"
    assert agent.find_type("Toothache").id == "emergency"
    assert agent.find_type("root canal") is None
    assert all(p.is_file() and p.is_absolute() for p in agent.knowledge)
    assert agent.transfer is not None and agent.transfer.kind == "sip" and agent.transfer.available
    assert (agent.voice.engine, agent.voice.voice) == ("kokoro", "af_heart")
    assert agent.tools == frozenset(TOOL_NAMES)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"business_hours": {"monday": "9-17"}}, "business_hours.monday: '9-17' is not HH:MM-HH:MM"),
        ({"business_hours": {"monday": "17:00-09:00"}}, "business_hours.monday: '17:00-09:00' ends before"),
        ({"business_hours": {"funday": "09:00-17:00"}}, "business_hours.funday: is not a weekday name"),
        (
            {"business_hours": {"monday": "09:00-13:00, 12:00-17:00"}},
            "business_hours.monday: 9:00-13:00 overlaps",
        ),
        ({"business_hours": {"monday": "09:07-17:00"}}, "business_hours.monday: '09:07-17:00': minutes"),
        ({"timezone": "Mars/Olympus"}, "timezone: 'Mars/Olympus' is not an IANA time zone"),
        ({"timezone": None}, "timezone: is required"),
        ({"closures": [{"date": "2026-02-30"}]}, "closures[0].date: '2026-02-30' is not a date"),
        ({"closures": [{"from": "2026-12-26", "to": "2026-12-24"}]}, "closures[0].to: is before from"),
        (
            {"appointment_types": [{"id": "x", "name": "X", "duration_minutes": 0}]},
            "appointment_types[0].duration_minutes: 0 is outside 5..480",
        ),
        (
            {"appointment_types": [{"id": "x", "name": "X", "duration_minutes": 45.5}]},
            "appointment_types[0].duration_minutes: 45.5 is not a whole number",
        ),
        (
            {"appointment_types": [{"id": "Bad Id", "name": "X", "duration_minutes": 30}]},
            "appointment_types[0].id: 'Bad Id' is not valid",
        ),
        ({"knowledge": ["knowledge/missing.md"]}, "knowledge[0]: 'knowledge/missing.md' does not exist"),
        ({"tools": ["book_appointment", "launch_rocket"]}, "tools[1]: unknown tool 'launch_rocket'"),
        ({"transfer": {"target": "front desk", "available": True}}, "transfer.target: must be a SIP URI"),
        (
            {"transfer": {"target": "+15551234567", "available": "yes"}},
            "transfer.available: must be true or false",
        ),
        ({"voice": {"engine": "Kokoro!", "voice": "af_heart"}}, "voice.engine: 'Kokoro!' is not valid"),
        ({"slot_minutes": 7}, "slot_minutes: 7 is not a multiple of 5"),
        ({"language": "english"}, "language: 'english' is not valid"),
        ({"greeting": ""}, "greeting: must be a non-empty string"),
        ({"colour": "blue"}, "colour: unknown field"),
        ({"ai_disclosure": False}, "ai_disclosure: the AI disclosure is added by policy"),
        ({"disclose_ai": "never"}, "disclose_ai: the AI disclosure is added by policy"),
    ],
)
def test_validation_errors_name_the_field(change: dict[str, Any], message: str) -> None:
    raw = base()
    raw.update(change)
    with pytest.raises(AgentConfigError) as info:
        parse_agent(raw, base_dir=example_agent_path().parent)
    assert any(e.startswith(message) for e in info.value.errors), info.value.errors


def test_every_problem_is_reported_at_once() -> None:
    raw = base()
    raw.update({"timezone": "Nowhere/City", "slot_minutes": 7, "greeting": None})
    with pytest.raises(AgentConfigError) as info:
        parse_agent(raw, base_dir=example_agent_path().parent)
    fields = sorted(e.split(":")[0] for e in info.value.errors)
    assert fields == ["greeting", "slot_minutes", "timezone"]
    assert "invalid_argument" in str(info.value)


def test_transfer_tool_needs_a_target() -> None:
    raw = base()
    del raw["transfer"]
    with pytest.raises(AgentConfigError, match="transfer_to_human is enabled but no transfer target"):
        parse_agent(raw, base_dir=example_agent_path().parent)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(AgentConfigError, match="file not found"):
        load_agent(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(AgentConfigError, match="not valid YAML at line"):
        load_agent(bad)
    bad.write_text("- a list\n")
    with pytest.raises(AgentConfigError, match="top level must be a mapping"):
        load_agent(bad)


def test_tool_definitions_follow_enabled_tools() -> None:
    raw = base()
    raw["tools"] = ["check_availability", "end_call"]
    agent = parse_agent(raw, base_dir=example_agent_path().parent)
    names = [d["function"]["name"] for d in tool_definitions(agent.tools)]
    assert names == ["check_availability", "end_call"]
    for d in tool_definitions():
        params = d["function"]["parameters"]
        assert params["type"] == "object" and params["additionalProperties"] is False


def test_caller_verification_collects_the_date_of_birth_only_when_asked_to() -> None:
    assert parse_agent(base(), base_dir=example_agent_path().parent).collect_date_of_birth is False
    raw = {**base(), "caller_verification": {"date_of_birth": True}}
    assert parse_agent(raw, base_dir=example_agent_path().parent).collect_date_of_birth is True
    for bad, problem in (
        ({"date_of_birth": "yes"}, "caller_verification.date_of_birth: must be true or false"),
        ({"pin": True}, "caller_verification.pin: unknown field"),
        ("date_of_birth", "caller_verification: must be a mapping"),
    ):
        with pytest.raises(AgentConfigError, match=problem):
            parse_agent({**base(), "caller_verification": bad}, base_dir=example_agent_path().parent)


def test_the_date_of_birth_argument_is_offered_only_where_it_is_collected() -> None:
    def arguments(date_of_birth: bool) -> dict[str, set[str]]:
        return {
            d["function"]["name"]: set(d["function"]["parameters"]["properties"])
            for d in tool_definitions(date_of_birth=date_of_birth)
        }

    without, with_birth = arguments(False), arguments(True)
    for name in ("book_appointment", "find_appointments", "move_appointment", "cancel_appointment"):
        assert "date_of_birth" not in without[name] and "date_of_birth" in with_birth[name]
    assert "reference" in without["find_appointments"] and "phone" not in without["find_appointments"]

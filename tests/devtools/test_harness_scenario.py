"""Scenario parsing and validation: every built-in scenario loads; bad input names the step."""

from __future__ import annotations

from pathlib import Path

import pytest
from phoneagent.devtools.harness.scenario import (
    BargeIn,
    Dtmf,
    Hangup,
    Say,
    ScenarioError,
    Wait,
    builtin_names,
    load_scenario,
    parse_scenario,
)


def test_builtin_scenarios_load() -> None:
    names = builtin_names()
    assert {"hours", "book", "human", "barge_in"} <= set(names)
    hours = load_scenario("hours")
    assert isinstance(hours.steps[0], Wait) and isinstance(hours.steps[-1], Hangup)
    assert [e.kind for e in hours.expect] == ["disclosure", "mentions"]


def test_full_step_set_parses() -> None:
    sc = parse_scenario(
        {
            "name": "all",
            "steps": [
                {"say": "Hello"},
                {"wait": {"timeout_s": 5, "silence_ms": 800}},
                {"barge_in": {"text": "Stop", "after_ms": 300}},
                {"dtmf": "12#"},
                {"pause": 200},
                "hangup",
            ],
            "expect": [{"mentions": "open"}, {"ended_by_agent": False}],
        }
    )
    assert sc.steps[0] == Say("Hello")
    assert sc.steps[1] == Wait(5.0, 800, 90.0)
    assert sc.steps[2] == BargeIn("Stop", 300, 60.0)
    assert sc.steps[3] == Dtmf("12#")
    assert sc.expect[1].describe() == "not ended_by_agent"


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([{"say": ""}], "step 1 (say): expected non-empty text"),
        ([{"wait": None}, {"wait": {"timeout_s": -1}}], "step 2 (wait): timeout_s must be"),
        ([{"say": "hi"}, {"dtmf": "12x"}], "step 2 (dtmf): digits"),
        ([{"jump": 1}], "step 1: unknown step 'jump'"),
        ([{"say": "a", "wait": None}], "step 1: expected a mapping with exactly one key"),
        ([{"barge_in": {"after_ms": 10}}], "step 1 (barge_in): expected non-empty text"),
        ([{"wait": {"timout_s": 3}}], "step 1 (wait): unknown option(s) timout_s"),
    ],
)
def test_bad_steps_name_the_step(steps: list[object], message: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenario({"name": "x", "steps": steps}, "x.yaml")
    assert message in str(err.value)


def test_bad_expectations_and_documents() -> None:
    with pytest.raises(ScenarioError, match=r"expectation 1 \(opted_out\): expected true or false"):
        parse_scenario({"name": "x", "steps": ["hangup"], "expect": [{"opted_out": "yes"}]})
    with pytest.raises(ScenarioError, match="expectation 2: unknown expectation 'smiles'"):
        parse_scenario({"name": "x", "steps": ["hangup"], "expect": [{"mentions": "a"}, {"smiles": True}]})
    with pytest.raises(ScenarioError, match="steps must be a non-empty list"):
        parse_scenario({"name": "x", "steps": []})
    with pytest.raises(ScenarioError, match="caller must be a phone number"):
        parse_scenario({"name": "x", "steps": ["hangup"], "caller": "bob"})


def test_load_from_file_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "mine.yaml"
    good.write_text("name: mine\nsteps:\n  - say: Hi there\n  - hangup:\n")
    assert load_scenario(str(good)).steps == (Say("Hi there"), Hangup())
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsteps: [\n")
    with pytest.raises(ScenarioError, match="bad.yaml: not valid YAML at line"):
        load_scenario(str(bad))
    with pytest.raises(ScenarioError, match="unknown scenario 'nope'"):
        load_scenario("nope")
    with pytest.raises(ScenarioError, match="not found"):
        load_scenario(str(tmp_path / "missing.yaml"))

"""The live rules take their configuration from the running service: the all-party-consent state
list from PA_ALL_PARTY_STATES and escalation from the agent file's ``escalation:`` block (real
nats-server, the running policy service)."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from phoneagent.agents import example_agent_path
from phoneagent.agents.agent import AgentConfigError, parse_agent
from phoneagent.agents.words import CONSENT_PROMPT, TRANSFER_TEXT
from phoneagent.policy.service import PolicyService
from phoneagent.policy.settings import PolicySettings
from phoneagent.runtime.bus import Bus
from phoneagent.runtime.settings import SettingsError, load
from phoneagent.v1 import control_pb2
from support.common import wait_for
from support.policy_stack import OPEN, running_policy, start_call

CALLER_NY = "+12125550123"  # New York: one-party consent by default


def _example() -> dict[str, Any]:
    raw = yaml.safe_load(example_agent_path().read_text(encoding="utf-8"))
    assert isinstance(raw, dict)
    return raw


@pytest.fixture(scope="module")
async def policy(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolicyService]:
    folder = tmp_path_factory.mktemp("policy-config")
    raw = _example()
    raw["knowledge"] = [str(example_agent_path().parent / k) for k in raw.get("knowledge", [])]
    raw["escalation"] = {"trigger_words": ["lawyer", "file a complaint"], "max_misunderstood": 1}
    agent = folder / "agent.yaml"
    agent.write_text(yaml.safe_dump(raw), encoding="utf-8")
    async with running_policy(
        nats_url,
        folder / "policy.sqlite3",
        all_party_states="ny, CA",
        common={"replica_id": "policy-config-t", "agent_file": str(agent)},
        now=OPEN,
    ) as svc:
        yield svc


async def test_configured_all_party_state_asks_for_consent(policy: PolicyService, bus: Bus) -> None:
    call = await start_call(bus, CALLER_NY)
    await call.agent(1, "Hello, Bright Smile Dental.")
    await wait_for(lambda: call.texts(), timeout=5)
    await call.played(1)
    found = await wait_for(lambda: call.directives(), timeout=5)
    assert found[0].text == CONSENT_PROMPT and found[0].rule == "recording_consent"


async def test_configured_trigger_word_transfers(policy: PolicyService, bus: Bus) -> None:
    call = await start_call(bus, CALLER_NY)
    await call.caller(1, "I want to file a complaint about my bill.")
    found = await wait_for(lambda: call.directives(), timeout=5)
    assert found[0].action == control_pb2.DIRECTIVE_ACTION_SAY_AND_TRANSFER and found[0].text == TRANSFER_TEXT
    assert found[0].rule == "trigger_word"


async def test_configured_misunderstanding_count_escalates(policy: PolicyService, bus: Bus) -> None:
    call = await start_call(bus, CALLER_NY)
    await call.agent(1, "Sorry, I didn't understand that. Could you repeat it?")
    await wait_for(lambda: call.texts(), timeout=5)
    await call.caller(1, "mumble grumble")
    found = await wait_for(lambda: call.directives(), timeout=5)
    assert found[0].rule == "repeated_misunderstanding"  # after one turn, as configured (default 3)


@pytest.mark.parametrize("value", ["", "CA,XX", "california"])
def test_bad_all_party_states_name_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="PA_ALL_PARTY_STATES"):
        load(PolicySettings, environ={"PA_ALL_PARTY_STATES": value})
    assert load(PolicySettings, environ={"PA_ALL_PARTY_STATES": "none"}).all_party_states == "none"


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"trigger_words": "lawyer"}, "escalation.trigger_words: must be a list"),
        ({"trigger_words": ["ok", "!!"]}, r"escalation.trigger_words\[1\]"),
        ({"max_misunderstood": 0}, "escalation.max_misunderstood"),
        ({"triggers": ["x"]}, "escalation.triggers: unknown field"),
        (["lawyer"], "escalation: must be a mapping"),
    ],
)
def test_agent_escalation_block_is_validated(block: Any, message: str) -> None:
    raw = copy.deepcopy(_example())
    raw["escalation"] = block
    with pytest.raises(AgentConfigError, match=message):
        parse_agent(raw, base_dir=example_agent_path().parent)


def test_agent_escalation_block_defaults(tmp_path: Path) -> None:
    agent = parse_agent(_example(), base_dir=example_agent_path().parent)
    assert agent.escalation.trigger_words == () and agent.escalation.max_misunderstood == 3

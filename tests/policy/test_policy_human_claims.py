"""The AI disclosure cannot be configured or talked away: claims to be a person are rejected in the
disclosure addition, the agent's persona and greeting (at load), and replaced in every sentence the
agent says (at run time, audited)."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml
from phoneagent.agents import example_agent_path
from phoneagent.agents.agent import AgentConfigError, parse_agent
from phoneagent.agents.disclosure import DISCLOSURE_CORE, build_disclosure
from phoneagent.agents.human_claims import HUMAN_CLAIM_REPLACEMENT, human_claim, persona_claim
from phoneagent.policy.service import PolicyService
from phoneagent.policy.settings import PolicySettings
from phoneagent.runtime.audit_query import AuditFilter, query_audit
from phoneagent.runtime.bus import Bus
from phoneagent.runtime.errors import InvalidArgument
from phoneagent.runtime.settings import CommonSettings, load
from phoneagent.v1 import policy_pb2
from support.common import wait_for
from support.policy_stack import running_policy, start_call

EXAMPLE = example_agent_path()

CLAIMS = [
    "Kidding! I am Sarah, a human receptionist.",
    "I'm a real person.",
    "I am human.",
    "Don't worry, I'm not a robot.",
    "No, this is not an automated call.",
    "This isn't an AI, it's Mike from the front desk.",
    "You're talking to a human being.",
]
NOT_CLAIMS = [
    "You are speaking with an AI assistant.",
    "Would you like to speak with a real person?",
    "I am getting a person for you now.",
    "I'm not a human, I am an AI assistant.",
    "I'll transfer you to a human.",
    "This call may be recorded for quality and training purposes.",
    "I am sorry, nobody is available to take your call right now.",
    HUMAN_CLAIM_REPLACEMENT,
]


@pytest.mark.parametrize("text", CLAIMS)
def test_claims_to_be_human_are_found(text: str) -> None:
    assert human_claim(text) is not None
    with pytest.raises(InvalidArgument, match="contradicts"):
        build_disclosure(text)


@pytest.mark.parametrize("text", NOT_CLAIMS)
def test_offers_of_a_person_and_honest_sentences_pass(text: str) -> None:
    assert human_claim(text) is None


def _example() -> dict[str, Any]:
    raw = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert isinstance(raw, dict)
    return raw


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("greeting", "Hi, this is Sarah, a real person at Bright Smile Dental. How can I help?"),
        ("persona", "You are Sarah, a human receptionist at Bright Smile Dental."),
        ("persona", "You are the receptionist. Never admit that you are an AI."),
        ("persona", "Pretend to be a real person and keep answers short."),
    ],
)
def test_agent_file_rejects_a_persona_or_greeting_that_claims_to_be_a_person(field: str, text: str) -> None:
    raw = copy.deepcopy(_example())
    raw[field] = text
    with pytest.raises(AgentConfigError, match=rf"{field}: claims the agent is a person"):
        parse_agent(raw, base_dir=EXAMPLE.parent)
    assert persona_claim(_example()["persona"]) is None  # the shipped example passes
    parse_agent(_example(), base_dir=EXAMPLE.parent)


def test_disclosure_addition_setting_error_names_the_variable(nats_url: str) -> None:
    settings = load(PolicySettings, disclosure_addition="Kidding! I am Sarah, a human receptionist.")
    with pytest.raises(InvalidArgument, match="PA_DISCLOSURE_ADDITION"):
        PolicyService(load(CommonSettings, nats_url=nats_url), settings)


@pytest.fixture(scope="module")
async def policy(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolicyService]:
    db = tmp_path_factory.mktemp("policy-claims") / "policy.sqlite3"
    async with running_policy(nats_url, db, common={"replica_id": "policy-claims-t"}) as svc:
        yield svc


async def test_sentence_claiming_to_be_human_is_replaced(policy: PolicyService, bus: Bus) -> None:
    call = await start_call(bus, "+12125550123")
    await call.agent(
        1, "Hello, Bright Smile Dental.", "Honestly, I'm a real person, not a machine.", "Go on."
    )
    await wait_for(lambda: len(call.texts()) == 3, timeout=5)
    assert call.texts()[0] == f"{DISCLOSURE_CORE} Hello, Bright Smile Dental."
    assert call.texts()[1:] == [HUMAN_CLAIM_REPLACEMENT, "Go on."]
    # The audit record is written before the replacement is published.
    found = await query_audit(bus.jetstream(), AuditFilter(call_id=call.call_id, subject="disclosure"))
    (record,) = [r for r in found if r.rule == "human_claim"]
    assert record.decision == policy_pb2.DECISION_DENY and record.details["claim"] == "self_is_human"
    assert "real person" not in record.SerializeToString().decode("latin-1")  # the text is not stored

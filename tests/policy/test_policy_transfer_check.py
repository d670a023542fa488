"""Transfer checks in the running policy service: the agent's transfer target and allow-list are
approved with a signature the edge accepts for that call and target only; a SIP target elsewhere
is refused, a number elsewhere only passes the dial rules; every decision is audited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from phoneagent.agents.agent import AgentConfigError, load_agent
from phoneagent.policy.service import PolicyService
from phoneagent.policy.settings import PolicySettings
from phoneagent.runtime import approvals, subjects
from phoneagent.runtime.approvals import NotApproved, Verifier
from phoneagent.runtime.bus import Bus
from phoneagent.runtime.dial_approvals import CALL_ID_HEADER
from phoneagent.runtime.errors import InvalidArgument
from phoneagent.runtime.settings import CommonSettings, load
from phoneagent.v1 import policy_pb2
from support.common import PUBLIC_KEY_FILE
from support.policy_stack import running_policy

HUMAN = "sip:frontdesk@brightsmile.example.org"  # the example agent's transfer target
BILLING = "tel:+1 (212) 555-0150"  # on the allow-list written below (as +1 212 555-0150)
CONSENTED = "+12125550160"
STRANGER = "+12125550199"


@pytest.fixture(scope="module")
def agent_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    example = load(CommonSettings).agent_path
    raw = yaml.safe_load(example.read_text(encoding="utf-8"))
    raw["knowledge"] = [str(example.parent / k) for k in raw.get("knowledge", [])]
    raw["transfer"]["allowed_targets"] = ["+1 212 555-0150", "sip:billing@brightsmile.example.org"]
    path = tmp_path_factory.mktemp("agent") / "agent.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
async def policy(
    nats_url: str, agent_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[PolicyService]:
    db = tmp_path_factory.mktemp("policy-transfer") / "policy.sqlite3"
    common = {"replica_id": "policy-transfer-t", "agent_file": str(agent_file)}
    async with running_policy(nats_url, db, common=common) as svc:
        assert svc.stores is not None
        svc.stores.consent.grant(CONSENTED, "transfer", "signed form", datetime(2026, 1, 1, tzinfo=UTC))
        yield svc


async def ask(bus: Bus, call_id: str, target: str) -> policy_pb2.PolicyDecision:
    decision: policy_pb2.PolicyDecision = await bus.request(
        subjects.transfer_check(),
        policy_pb2.TransferCheck(target=target, reason="test"),
        policy_pb2.PolicyDecision,
        timeout=5,
        headers={CALL_ID_HEADER: call_id} if call_id else {},
    )
    return decision


VERIFIER = Verifier.from_files([PUBLIC_KEY_FILE])


@pytest.mark.parametrize("target", [HUMAN, BILLING, "sip:billing@brightsmile.example.org", CONSENTED])
async def test_allowed_targets_come_with_a_signed_approval(
    policy: PolicyService, bus: Bus, target: str
) -> None:
    call_id = subjects.new_call_id()
    decision = await ask(bus, call_id, target)
    assert decision.decision == policy_pb2.DECISION_ALLOW and decision.subject == "transfer"
    assert decision.meta.call_id == call_id
    grant = VERIFIER.check(decision.approval, action=approvals.TRANSFER, call_id=call_id, target=target)
    assert grant.decision_id == decision.decision_id
    # The same approval is good for nothing else: another call, another target.
    with pytest.raises(NotApproved) as other_call:
        VERIFIER.check(
            decision.approval, action=approvals.TRANSFER, call_id=subjects.new_call_id(), target=target
        )
    assert other_call.value.reason == "wrong_call"
    with pytest.raises(NotApproved) as other_target:
        VERIFIER.check(decision.approval, action=approvals.TRANSFER, call_id=call_id, target=STRANGER)
    assert other_target.value.reason == "mismatch"


@pytest.mark.parametrize(
    "target,rule",
    [
        ("sip:premium@elsewhere.example.com", "transfer_allow_list"),
        (STRANGER, "consent"),  # a number elsewhere must pass the dial rules
        ("", "target"),
    ],
)
async def test_other_targets_are_denied_without_approval(
    policy: PolicyService, bus: Bus, target: str, rule: str
) -> None:
    call_id = subjects.new_call_id()
    decision = await ask(bus, call_id, target)
    assert decision.decision == policy_pb2.DECISION_DENY and decision.rule == rule
    assert not decision.HasField("approval")


async def test_a_check_without_a_call_id_is_denied(policy: PolicyService, bus: Bus) -> None:
    decision = await ask(bus, "", HUMAN)
    assert decision.decision == policy_pb2.DECISION_DENY and decision.rule == "call_id"
    assert not decision.HasField("approval")


async def test_without_a_signing_key_nothing_is_approved(nats_url: str, tmp_path: Path) -> None:
    async with running_policy(
        nats_url, tmp_path / "p.sqlite3", common={"replica_id": "policy-nokey-t"}, signing_key_file=""
    ) as svc:
        call_id = subjects.new_call_id()
        decision = await svc.decide_transfer(policy_pb2.TransferCheck(target=HUMAN), call_id)
        assert decision.decision == policy_pb2.DECISION_DENY and decision.rule == "signing_key"
        assert not decision.HasField("approval")


def test_a_bad_signing_key_stops_policy_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "key.pem"
    bad.write_text("not a key")
    with pytest.raises(InvalidArgument, match="PA_POLICY_SIGNING_KEY_FILE"):
        PolicyService(load(CommonSettings), load(PolicySettings, signing_key_file=str(bad)))


def test_the_allow_list_is_checked_when_the_agent_loads(tmp_path: Path) -> None:
    example = load(CommonSettings).agent_path
    raw = yaml.safe_load(example.read_text(encoding="utf-8"))
    raw["knowledge"] = [str(example.parent / k) for k in raw.get("knowledge", [])]
    raw["transfer"]["allowed_targets"] = ["+1 212 555-0150", "premium line"]
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(AgentConfigError, match=r"transfer.allowed_targets\[1\]: must be a SIP URI"):
        load_agent(path)
    raw["transfer"]["allowed_targets"] = ["+1 212 555-0150"]
    path.write_text(yaml.safe_dump(raw))
    assert load_agent(path).transfer.allowed_targets == ("+12125550150",)  # type: ignore[union-attr]

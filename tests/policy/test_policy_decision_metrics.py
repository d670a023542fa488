"""Every audited policy decision is counted in ``pa_policy_decisions_total`` (the dashboards' "policy
denials"), not only outbound dials: disclosure, opt-out and refused recording consent too (real
nats-server, the running policy service)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from phoneagent.policy.service import PolicyService
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus
from phoneagent.v1 import policy_pb2
from prometheus_client import REGISTRY
from support.common import wait_for
from support.policy_stack import running_policy, start_call

CALLER_CA = "+14155550134"  # California: all-party consent


def count(decision: str, rule: str) -> float:
    return REGISTRY.get_sample_value("pa_policy_decisions_total", {"decision": decision, "rule": rule}) or 0.0


@pytest.fixture(scope="module")
async def policy(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolicyService]:
    db = tmp_path_factory.mktemp("policy-metrics") / "policy.sqlite3"
    async with running_policy(nats_url, db, common={"replica_id": "policy-metrics-t"}) as svc:
        yield svc


async def test_call_decisions_are_counted(policy: PolicyService, bus: Bus) -> None:
    disclosed = count("allow", "disclosure/ai_disclosure")
    refused = count("deny", "recording/consent_refused")
    opted_out = count("deny", "opt_out/internal_dnc")
    call = await start_call(bus, CALLER_CA)
    await call.agent(1, "Hello, Bright Smile Dental.")
    await wait_for(lambda: call.texts(), timeout=5)
    assert count("allow", "disclosure/ai_disclosure") == disclosed + 1
    await call.played(1)
    await wait_for(lambda: call.directives(), timeout=5)  # the consent question
    await call.caller(1, "No, I'd rather you didn't.")
    await wait_for(lambda: count("deny", "recording/consent_refused") == refused + 1, timeout=5)
    await call.caller(2, "And stop calling me.")
    await wait_for(lambda: count("deny", "opt_out/internal_dnc") == opted_out + 1, timeout=5)


async def test_dial_decisions_are_counted_once(policy: PolicyService, bus: Bus) -> None:
    before = count("deny", "consent")
    check = policy_pb2.DialCheck(number="+12125550177", purpose="reminder", time_zone="America/New_York")
    decision = await bus.request(subjects.dial_check(), check, policy_pb2.PolicyDecision, timeout=5)
    assert decision.rule == "consent"
    assert count("deny", "consent") == before + 1

"""Policy's recording decisions as the edge's recorder receives them, signed with the tests' key."""

from __future__ import annotations

import time
from collections.abc import Callable

from phoneagent.runtime import approvals, subjects
from phoneagent.runtime.approvals import Verifier
from phoneagent.runtime.bus import Bus
from phoneagent.v1 import common_pb2, policy_pb2

from support.common import PUBLIC_KEY_FILE, repeat_until_seen, signed

CALL = "0123456789abcdef01234567"
VERIFIER = Verifier.from_files([PUBLIC_KEY_FILE])


def decision(decision: int, rule: str, subject: str = "recording") -> policy_pb2.PolicyDecision:
    """A decision as policy publishes it, signed with the tests' policy key."""
    record = policy_pb2.PolicyDecision(
        meta=common_pb2.EventMeta(call_id=CALL, ts_unix_ns=time.time_ns()),
        decision_id=f"d-{decision}-{rule}",
        decision=decision,  # type: ignore[arg-type]
        subject=subject,
        rule=rule,
    )
    record.approval.CopyFrom(
        signed(
            approvals.RECORDING,
            CALL,
            decision=approvals.recording_decision(record),
            decision_id=record.decision_id,
        )
    )
    return record


async def decide(bus: Bus, decision_: int, rule: str, subject: str = "recording") -> None:
    await bus.publish(subjects.audit(CALL), decision(decision_, rule, subject))


async def decide_until(bus: Bus, seen: Callable[[], bool], decision_: int, rule: str) -> None:
    """Publish a decision until the recorder has seen it."""
    await repeat_until_seen(lambda: decide(bus, decision_, rule), seen, "decision")

"""Asking for a transfer: policy approves it first, then the Transfer goes on the control lane.

The dialog (``transfer_to_human``, a policy escalation) and the CallControl API's TransferCall
both call :func:`request_transfer`: a ``TransferCheck`` to policy (``transfer_check``, the call
id in the ``Pa-Call-Id`` header), and only when policy allows it the call's ``Transfer`` event,
carrying policy's signed approval, which the edge requires (:mod:`.approvals`).
"""

from __future__ import annotations

from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Lane
from phoneagent.runtime.dial_approvals import CALL_ID_HEADER
from phoneagent.runtime.meta import new_meta
from phoneagent.v1 import control_pb2, policy_pb2

TRANSFER_CHECK_TIMEOUT_S = 3.0


async def request_transfer(
    bus: Bus,
    call_id: str,
    target: str,
    *,
    kind: int,
    reason: str,
    producer: str,
    summary: str = "",
    timeout: float = TRANSFER_CHECK_TIMEOUT_S,
) -> policy_pb2.PolicyDecision:
    """Policy's decision on transferring ``call_id`` to ``target``; when it allows, the Transfer
    event with its approval has been published. Raises PhoneAgentError when policy cannot be asked."""
    decision: policy_pb2.PolicyDecision = await bus.request(
        subjects.transfer_check(),
        policy_pb2.TransferCheck(target=target, reason=reason),
        policy_pb2.PolicyDecision,
        timeout=timeout,
        headers={CALL_ID_HEADER: call_id},
    )
    if decision.decision != policy_pb2.DECISION_ALLOW:
        return decision
    transfer = control_pb2.Transfer(
        target=target,
        kind=kind,  # type: ignore[arg-type]
        reason=reason,
        summary=summary,
        approval=decision.approval,
    )
    event = control_pb2.ControlEvent(meta=new_meta(call_id, producer), transfer=transfer)
    await bus.publish(subjects.control(call_id), event, lane=Lane.CONTROL)
    return decision

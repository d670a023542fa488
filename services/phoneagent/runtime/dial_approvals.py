"""One-time approvals of outbound dials: policy writes one, the edge consumes it before dialling.

When the policy service allows a dial (``decide``), it stores an approval in the
``pa_dial_approvals`` JetStream KV bucket, keyed by the decision id: policy's signed
:class:`~phoneagent.v1.policy_pb2.Approval` (:mod:`phoneagent.runtime.approvals`) of that call id
and normalised number, valid for :data:`~phoneagent.runtime.streams.DIAL_APPROVAL_TTL_S`, with the
campaign id. Whoever then asks an edge to dial puts the decision id into
``CallStarted.dial_decision_id`` and the call id policy was told into its meta. The edge calls
:func:`redeem`: the approval must exist, carry a signature by a key the edge trusts, name the
same call and the same number as the dial target, not have expired, and is marked used: its id
is created in the ``pa_dial_approvals_used`` bucket, a create that fails when the key exists, so
two edges cannot both use it. The edge reads the approvals and writes only the used marks; it
cannot write an approval (bus_auth: only policy may). Anything else, including a bucket that
cannot be read, refuses the dial: the edge fails closed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError

from phoneagent.runtime import approvals, streams
from phoneagent.runtime.approvals import DIAL, Grant, NotApproved, Signer, Verifier, dial_key
from phoneagent.runtime.errors import ErrorKind, PhoneAgentError

NOT_APPROVED = "dial not approved by policy"
__all__ = [
    "CALL_ID_HEADER",
    "NOT_APPROVED",
    "DialApproval",
    "DialNotApproved",
    "approve",
    "dial_key",
    "redeem",
]
# On a ``dial_check`` or ``transfer_check`` request: the call id (the one a dial will have), so
# the audit record is filed under the call and the signed approval names it; the edge dials or
# transfers only as that call. A dial check without it is audited under ``none`` and its approval
# is good for no call.
CALL_ID_HEADER = "Pa-Call-Id"
_UNKNOWN = "no such approval, or already used or expired"
_DECISION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class DialNotApproved(PhoneAgentError):
    """A dial without a usable approval; ``reason`` is a metric label (no personal data)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(ErrorKind.POLICY_DENIED, f"{NOT_APPROVED} ({detail or reason})")
        self.reason = reason


@dataclass(frozen=True)
class DialApproval:
    decision_id: str
    number: str  # dial key of the approved target, see approvals.dial_key
    campaign_id: str = ""


async def approve(
    js: Any, signer: Signer | None, decision_id: str, call_id: str, number: str, campaign_id: str = ""
) -> None:
    """Store the signed one-time approval of ``decision_id`` to dial ``number`` as call ``call_id``."""
    if not _DECISION_ID.match(decision_id):
        raise PhoneAgentError(ErrorKind.INVALID_ARGUMENT, "dial decision id is malformed")
    if signer is None:
        raise PhoneAgentError(
            ErrorKind.UNAVAILABLE, "dial approval cannot be signed (PA_POLICY_SIGNING_KEY_FILE is not set)"
        )
    expires = approvals.now_ms() + int(streams.DIAL_APPROVAL_TTL_S * 1000)
    approval = signer.sign(Grant(DIAL, decision_id, call_id, dial_key(number), "allow", expires))
    value = {"approval": approvals.encode_approval(approval), "campaign_id": campaign_id}
    try:
        kv = await streams.dial_approvals_kv(js)
        await kv.put(decision_id, json.dumps(value).encode())
    except Exception:  # the edge will not dial without it: report, do not pretend
        raise PhoneAgentError(ErrorKind.UNAVAILABLE, "dial approval could not be stored") from None


async def redeem(
    kv: Any, verifier: Verifier, decision_id: str, call_id: str, target: str, used: Any = None
) -> DialApproval:
    """Consume the approval ``decision_id`` for dialling ``target`` as call ``call_id``, or raise
    DialNotApproved.

    ``kv`` is the ``pa_dial_approvals`` bucket, ``used`` the ``pa_dial_approvals_used`` one
    (default: opened through ``kv``'s JetStream context). The signature, call and number are
    checked first; any failure to read or mark refuses, and so does an approval that is not
    policy's for this call and number.
    """
    if not decision_id:
        raise DialNotApproved("missing", "no decision id")
    if not _DECISION_ID.match(decision_id):
        raise DialNotApproved("malformed", "malformed decision id")
    try:
        entry = await kv.get(decision_id)
    except (KeyNotFoundError, KeyDeletedError):
        raise DialNotApproved("unknown", _UNKNOWN) from None
    except Exception:  # timeouts, a lost connection, the bucket gone: fail closed
        raise DialNotApproved("unavailable", "approvals could not be read") from None
    try:
        value = json.loads(entry.value or b"{}")
        signed = approvals.decode_approval(str(value.get("approval", "")))
        campaign_id = str(value.get("campaign_id", ""))
    except (ValueError, AttributeError, TypeError):
        raise DialNotApproved("unsigned", "unreadable or unsigned approval") from None
    try:
        verifier.check(signed, action=DIAL, call_id=call_id, target=target)
    except NotApproved as exc:
        detail = exc.detail.replace("another target", "another number")
        raise DialNotApproved(exc.reason, detail) from None
    if signed.decision_id != decision_id:
        raise DialNotApproved("mismatch", "approval is stored under another decision id")
    try:
        if used is None:
            used = await streams.dial_approvals_used_kv(kv._js)  # the approvals bucket's JetStream
        await used.create(decision_id, b"")  # fails when the key exists: one use only
    except KeyWrongLastSequenceError:  # used before (or by another request just now)
        raise DialNotApproved("unknown", _UNKNOWN) from None
    except Exception:
        raise DialNotApproved("unavailable", "approval could not be used") from None
    return DialApproval(decision_id, signed.target, campaign_id)

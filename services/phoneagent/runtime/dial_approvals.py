"""One-time approvals of outbound dials: policy writes one, the edge consumes it before dialling.

When the policy service allows a dial (``decide``), it stores an approval in the
``pa_dial_approvals`` JetStream KV bucket, keyed by the decision id, holding the normalised
number it approved and the campaign id. Whoever then asks an edge to dial puts the decision id
into ``CallStarted.dial_decision_id``. The edge calls :func:`redeem`: the approval must exist,
name the same number as the dial target, and is marked used: its id is created in the
``pa_dial_approvals_used`` bucket, a create that fails when the key exists, so two edges cannot
both use it. The edge reads the approvals and writes only the used marks; it cannot write an
approval (bus_auth: only policy may). Anything else, including a bucket that cannot be
read, refuses the dial: the edge fails closed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError

from phoneagent.runtime import streams
from phoneagent.runtime.errors import ErrorKind, PhoneAgentError

NOT_APPROVED = "dial not approved by policy"
# On a ``dial_check`` request: the call id the dial will have (PlaceCall), so the audit record
# of the decision is filed under the call; without it the decision is audited under ``none``.
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
    number: str  # dial key of the approved target, see dial_key
    campaign_id: str = ""


def dial_key(target: str) -> str:
    """The form in which an approved number and a dial target are compared.

    A number keeps its digits and a leading ``+`` (``tel:+1 (212) 555-0123`` ->
    ``+12125550123``); a SIP URI (``sip:``/``sips:``) is compared as written.
    """
    target = target.strip()
    if target.lower().startswith(("sip:", "sips:")):
        return target
    digits = "".join(ch for ch in target.removeprefix("tel:") if ch.isdigit())
    return ("+" if target.removeprefix("tel:").startswith("+") else "") + digits


async def approve(js: Any, decision_id: str, number: str, campaign_id: str = "") -> None:
    """Store the one-time approval of ``decision_id`` for ``number`` (expires with the bucket TTL)."""
    if not _DECISION_ID.match(decision_id):
        raise PhoneAgentError(ErrorKind.INVALID_ARGUMENT, "dial decision id is malformed")
    value = {"number": dial_key(number), "campaign_id": campaign_id}
    try:
        kv = await streams.dial_approvals_kv(js)
        await kv.put(decision_id, json.dumps(value).encode())
    except Exception:  # the edge will not dial without it: report, do not pretend
        raise PhoneAgentError(ErrorKind.UNAVAILABLE, "dial approval could not be stored") from None


async def redeem(kv: Any, decision_id: str, target: str, used: Any = None) -> DialApproval:
    """Consume the approval ``decision_id`` for dialling ``target``, or raise DialNotApproved.

    ``kv`` is the ``pa_dial_approvals`` bucket, ``used`` the ``pa_dial_approvals_used`` one
    (default: opened through ``kv``'s JetStream context). Any failure to read or mark refuses.
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
        approval = DialApproval(decision_id, str(value["number"]), str(value.get("campaign_id", "")))
    except (ValueError, KeyError, TypeError):
        raise DialNotApproved("unknown", "unreadable approval") from None
    if approval.number != dial_key(target):
        raise DialNotApproved("mismatch", "approval is for another number")
    try:
        if used is None:
            used = await streams.dial_approvals_used_kv(kv._js)  # the approvals bucket's JetStream
        await used.create(decision_id, b"")  # fails when the key exists: one use only
    except KeyWrongLastSequenceError:  # used before (or by another request just now)
        raise DialNotApproved("unknown", _UNKNOWN) from None
    except Exception:
        raise DialNotApproved("unavailable", "approval could not be used") from None
    return approval

"""Reading policy decisions back from the ``PA_AUDIT`` stream.

The audit stream is JetStream file storage: it is independent of the policy service and
survives its restarts. :func:`query_audit` reads it with a short-lived pull consumer (no
acks, filtered by call and start time on the server) and filters the rest in code;
``phone-agent audit`` prints the result and the records service's operator console shows it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from phoneagent.runtime import subjects
from phoneagent.runtime.enums import enum_name
from phoneagent.runtime.errors import InvalidArgument
from phoneagent.v1 import policy_pb2

_RELATIVE = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
DECISIONS = {"allow": policy_pb2.DECISION_ALLOW, "deny": policy_pb2.DECISION_DENY}
BATCH = 256


@dataclass(frozen=True)
class AuditFilter:
    call_id: str = ""
    since: datetime | None = None
    decision: int = policy_pb2.DECISION_UNSPECIFIED  # unspecified = any
    subject: str = ""  # "dial", "recording", "opt_out", ...
    campaign_id: str = ""
    limit: int = 1000


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``15m``, ``2h``, ``7d`` before now, or an ISO 8601 time (UTC when it names no zone)."""
    value = text.strip()
    m = _RELATIVE.match(value)
    if m:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument("--since must look like 30m, 2h, 7d or 2026-05-01T09:00+00:00") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def parse_decision(text: str) -> int:
    if not text:
        return policy_pb2.DECISION_UNSPECIFIED
    try:
        return DECISIONS[text.strip().lower()]
    except KeyError:
        raise InvalidArgument("--decision must be allow or deny") from None


def _matches(record: policy_pb2.PolicyDecision, flt: AuditFilter) -> bool:
    if flt.decision and record.decision != flt.decision:
        return False
    if flt.subject and record.subject != flt.subject:
        return False
    if flt.campaign_id and record.campaign_id != flt.campaign_id:
        return False
    if flt.since is not None and record.decided_unix_ns < int(flt.since.timestamp() * 1e9):
        return False
    return True


async def query_audit(js: Any, flt: AuditFilter, *, timeout: float = 2.0) -> list[policy_pb2.PolicyDecision]:
    """Decisions matching ``flt``, oldest first (at most ``flt.limit``)."""
    subject = subjects.audit(flt.call_id) if flt.call_id else subjects.ALL_AUDIT
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.BY_START_TIME if flt.since else DeliverPolicy.ALL,
        opt_start_time=flt.since,
        inactive_threshold=30.0,
    )
    sub = await js.pull_subscribe(subject, stream=subjects.AUDIT_STREAM, config=config)
    out: list[policy_pb2.PolicyDecision] = []
    info = await sub.consumer_info()
    try:
        pending = info.num_pending
        while pending > 0 and len(out) < flt.limit:
            try:
                msgs = await sub.fetch(min(BATCH, pending), timeout=timeout)
            except NatsTimeout:
                break
            for msg in msgs:
                pending = msg.metadata.num_pending
                record = policy_pb2.PolicyDecision()
                try:
                    record.ParseFromString(msg.data)
                except Exception:  # noqa: BLE001 - a bad record is skipped, not fatal
                    continue
                if _matches(record, flt) and len(out) < flt.limit:
                    out.append(record)
    finally:
        await sub.unsubscribe()
        try:
            await js.delete_consumer(subjects.AUDIT_STREAM, info.name)
        except Exception:  # noqa: BLE001 - it expires on its own after inactive_threshold
            pass
    return out


def format_record(r: policy_pb2.PolicyDecision) -> str:
    """One line per decision: time, verdict, what, rule, call, number hint, reason."""
    when = datetime.fromtimestamp(r.decided_unix_ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    verdict = enum_name(policy_pb2.Decision, r.decision, prefix="DECISION_").lower()
    parts = [when, verdict, r.subject or "-", r.rule or "-", r.meta.call_id or "-", r.number_hint or "-"]
    if r.campaign_id:
        parts.append(f"campaign={r.campaign_id}")
    return "  ".join(parts) + f"  {r.reason}"

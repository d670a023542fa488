"""Outbound dial policy: may we place this call now?

:func:`evaluate_dial` runs the rules below in order and returns the first denial, or an
allow decision once every rule has passed. It fails closed: missing data, a store error
or a bug in a rule all deny, with the rule name and a reason string. Rules:

1. ``caller_id``        a valid E.164 caller id is configured (no anonymous or spoofed-looking calls);
2. ``valid_number``     the callee number is a valid E.164 (and NANP-valid for +1) number;
3. ``internal_dnc``     not on our own do-not-call list;
4. ``imported_dnc``     not on any imported do-not-call list;
5. ``consent``          an unexpired, unrevoked consent record for the campaign's purpose exists;
6. ``calling_window``   the callee's local time is inside the window (default 08:00-21:00) in
                        every time zone the number may be in; an explicit zone overrides the area code;
7. ``attempts_per_day`` fewer than the cap of attempts since the callee's local midnight;
8. ``attempts_total``   fewer than the lifetime cap of attempts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any

from phoneagent.policy.stores import PolicyStores
from phoneagent.runtime.areacodes import AreaCodeTable, default_table, time_zones_for, zone
from phoneagent.runtime.errors import InvalidArgument, PhoneAgentError
from phoneagent.runtime.numbers import NANP_COUNTRY_CODE, is_valid_e164, normalize_e164
from phoneagent.runtime.redact import mask_number

log = logging.getLogger(__name__)

ALLOW_RULE = "all_rules"


@dataclass(frozen=True)
class DialRequest:
    number: str
    caller_id: str | None
    purpose: str
    campaign_id: str = ""
    time_zone: str | None = None


@dataclass(frozen=True)
class OutboundConfig:
    """Calling window (callee local time, start inclusive, end exclusive) and attempt caps."""

    window_start: time = time(8, 0)
    window_end: time = time(21, 0)
    max_attempts_per_day: int = 3
    max_attempts_total: int = 10
    default_country: str = NANP_COUNTRY_CODE

    def __post_init__(self) -> None:
        if not self.window_start < self.window_end:
            raise InvalidArgument("calling window start must be before its end")
        if self.max_attempts_per_day < 1 or self.max_attempts_total < 1:
            raise InvalidArgument("attempt caps must be at least 1")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str
    reason: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class _Ctx:
    request: DialRequest
    now: datetime
    stores: PolicyStores
    config: OutboundConfig
    table: AreaCodeTable
    number: str = ""
    zones: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)


Rule = Callable[[_Ctx], str | None]
"""A rule returns None when it passes, else the denial reason."""


def _caller_id(ctx: _Ctx) -> str | None:
    cid = ctx.request.caller_id
    if not cid or not cid.strip():
        return "no caller id configured"
    if not is_valid_e164(cid.strip()):
        return "caller id is not a valid E.164 number"
    return None


def _valid_number(ctx: _Ctx) -> str | None:
    try:
        ctx.number = normalize_e164(ctx.request.number, ctx.config.default_country)
    except InvalidArgument as exc:
        return exc.message
    ctx.details["number"] = mask_number(ctx.number)
    return None


def _internal_dnc(ctx: _Ctx) -> str | None:
    entry = ctx.stores.dnc.lookup(ctx.number)
    if entry is None:
        return None
    ctx.details.update(dnc_source=entry.source, dnc_added_at=entry.added_at.isoformat())
    return "number is on the internal do-not-call list"


def _imported_dnc(ctx: _Ctx) -> str | None:
    lists = ctx.stores.imported_dnc.lists_containing(ctx.number)
    if not lists:
        return None
    ctx.details["dnc_lists"] = lists
    return "number is on an imported do-not-call list"


def _consent(ctx: _Ctx) -> str | None:
    purpose = (ctx.request.purpose or "").strip()
    if not purpose:
        return "campaign has no purpose, so consent cannot be checked"
    records = ctx.stores.consent.records(ctx.number, purpose)
    if not records:
        return f"no consent record for purpose {purpose!r}"
    statuses = [(r, r.status_at(ctx.now)) for r in records]
    for record, status in statuses:
        if status == "valid":
            ctx.details.update(
                consent_id=record.id,
                consent_source=record.source,
                consent_granted_at=record.granted_at.isoformat(),
            )
            return None
    found = {status for _, status in statuses}
    for status in ("revoked", "expired", "not_yet_granted"):
        if status in found:
            return f"consent {status.replace('_', ' ')} for purpose {purpose!r}"
    return "no valid consent"


def _calling_window(ctx: _Ctx) -> str | None:
    try:
        ctx.zones = time_zones_for(ctx.number, ctx.request.time_zone, ctx.table)
    except InvalidArgument:
        return "unknown time zone (the explicit time zone is not recognised)"
    if not ctx.zones:
        return "unknown time zone (no explicit zone and the area code has none)"
    start, end = ctx.config.window_start, ctx.config.window_end
    ctx.details["window"] = f"{start:%H:%M}-{end:%H:%M}"  # the campaign runner waits for it to open
    local_times = {name: ctx.now.astimezone(zone(name)) for name in ctx.zones}
    ctx.details["local_times"] = {name: t.strftime("%Y-%m-%d %H:%M %Z") for name, t in local_times.items()}
    for name, local in local_times.items():
        if not start <= local.time().replace(tzinfo=None) < end:
            return f"outside calling window {start:%H:%M}-{end:%H:%M} in {name} (local time {local:%H:%M})"
    return None


def _local_day_start(ctx: _Ctx) -> datetime:
    """The earliest local midnight among the callee's zones: counts the most attempts (conservative)."""
    starts = []
    for name in ctx.zones:
        local = ctx.now.astimezone(zone(name))
        starts.append(datetime.combine(local.date(), time(0), tzinfo=zone(name)))
    return min(starts)


def _attempts_per_day(ctx: _Ctx) -> str | None:
    if not ctx.zones:
        return "unknown time zone"
    today = ctx.stores.attempts.count(ctx.number, since=_local_day_start(ctx))
    ctx.details["attempts_today"] = today
    if today >= ctx.config.max_attempts_per_day:
        return f"daily attempt cap reached ({today} of {ctx.config.max_attempts_per_day} today)"
    return None


def _attempts_total(ctx: _Ctx) -> str | None:
    total = ctx.stores.attempts.count(ctx.number)
    ctx.details["attempts_total"] = total
    if total >= ctx.config.max_attempts_total:
        return f"total attempt cap reached ({total} of {ctx.config.max_attempts_total})"
    return None


RULES: tuple[tuple[str, Rule], ...] = (
    ("caller_id", _caller_id),
    ("valid_number", _valid_number),
    ("internal_dnc", _internal_dnc),
    ("imported_dnc", _imported_dnc),
    ("consent", _consent),
    ("calling_window", _calling_window),
    ("attempts_per_day", _attempts_per_day),
    ("attempts_total", _attempts_total),
)


def evaluate_dial(
    request: DialRequest,
    now_utc: datetime,
    stores: PolicyStores,
    config: OutboundConfig | None = None,
    table: AreaCodeTable | None = None,
) -> Decision:
    """Decide whether ``request`` may be dialled at ``now_utc`` (timezone-aware). Never raises."""
    rule_name = "input"
    try:
        if not isinstance(now_utc, datetime) or now_utc.utcoffset() is None:
            return _finish(Decision(False, rule_name, "current time must be timezone-aware"), request)
        ctx = _Ctx(request, now_utc, stores, config or OutboundConfig(), table or default_table())
        for rule_name, rule in RULES:
            reason = rule(ctx)
            if reason is not None:
                return _finish(Decision(False, rule_name, reason, dict(ctx.details)), request)
        return _finish(Decision(True, ALLOW_RULE, "all rules passed", dict(ctx.details)), request)
    except PhoneAgentError as exc:
        log.warning("policy rule failed", extra={"rule": rule_name, "error_kind": exc.kind.name})
        return _finish(Decision(False, rule_name, f"policy check failed ({exc.kind.name.lower()})"), request)
    except Exception:  # noqa: BLE001 - fail closed on any internal error
        log.exception("policy rule crashed", extra={"rule": rule_name})
        return _finish(Decision(False, rule_name, "internal error while checking policy"), request)


def _finish(decision: Decision, request: DialRequest) -> Decision:
    outcome = "allow" if decision.allowed else "deny"  # counted once audited (PolicyService.audit)
    log.info(
        "dial decision",
        extra={
            "decision": outcome,
            "rule": decision.rule,
            "reason": decision.reason,
            "campaign_id": request.campaign_id,
        },
    )
    return decision

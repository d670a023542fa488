"""Field parsers for the agent file; each records problems as ``field: reason``."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_RANGE = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)\s*-\s*([01]?\d|2[0-4]):([0-5]\d)$")


class FieldErrors:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, field: str, reason: str) -> None:
        self.items.append(f"{field}: {reason}")

    def __bool__(self) -> bool:
        return bool(self.items)


@dataclass(frozen=True)
class Interval:
    """Opening hours on one day, local wall-clock time; ``end`` is exclusive."""

    start: time
    end: time

    def __str__(self) -> str:
        return f"{self.start.hour}:{self.start.minute:02d}-{self.end.hour}:{self.end.minute:02d}"


def _field(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def parse_str(
    raw: dict[str, Any],
    key: str,
    errs: FieldErrors,
    *,
    prefix: str = "",
    default: str | None = None,
    pattern: re.Pattern[str] | None = None,
    hint: str = "",
) -> str:
    value = raw.get(key, default)
    name = _field(prefix, key)
    if value is None:
        errs.add(name, "is required")
        return ""
    if not isinstance(value, str) or not value.strip():
        errs.add(name, "must be a non-empty string")
        return ""
    value = value.strip()
    if pattern is not None and not pattern.match(value):
        errs.add(name, f"{value!r} is not valid" + (f" ({hint})" if hint else ""))
    return value


def parse_int(
    raw: dict[str, Any],
    key: str,
    errs: FieldErrors,
    *,
    prefix: str = "",
    default: int | None = None,
    low: int,
    high: int,
    multiple: int = 1,
) -> int:
    value = raw.get(key, default)
    name = _field(prefix, key)
    if value is None:
        errs.add(name, "is required")
        return low
    if isinstance(value, bool) or not isinstance(value, int):
        errs.add(name, f"{value!r} is not a whole number")
        return low
    if not low <= value <= high:
        errs.add(name, f"{value} is outside {low}..{high}")
    elif value % multiple:
        errs.add(name, f"{value} is not a multiple of {multiple}")
    return value


def parse_timezone(value: Any, errs: FieldErrors) -> str:
    if not isinstance(value, str) or not value.strip():
        errs.add("timezone", "is required (an IANA name such as America/New_York)")
        return "UTC"
    try:
        ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError):
        errs.add("timezone", f"{value!r} is not an IANA time zone (such as America/New_York)")
        return "UTC"
    return value.strip()


def _parse_range(text: str, name: str, errs: FieldErrors) -> Interval | None:
    m = _RANGE.match(text.strip())
    if not m:
        errs.add(name, f"{text!r} is not HH:MM-HH:MM")
        return None
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if (h1 == 24 and m1) or (h2 == 24 and m2) or h1 == 24:
        errs.add(name, f"{text!r} is not a valid time range")
        return None
    if m1 % 5 or m2 % 5:
        errs.add(name, f"{text!r}: minutes must be multiples of 5")
        return None
    start = time(h1, m1)
    end = time(23, 59, 59, 999999) if h2 == 24 else time(h2, m2)
    if end <= start:
        errs.add(name, f"{text!r} ends before it starts")
        return None
    return Interval(start, end)


def _parse_day(value: Any, name: str, errs: FieldErrors) -> tuple[Interval, ...]:
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() == "closed"):
        return ()
    if isinstance(value, str):
        parts: list[Any] = [p for p in value.split(",") if p.strip()]
    elif isinstance(value, list):
        parts = value
    else:
        errs.add(name, f"{value!r} is not HH:MM-HH:MM, a list of those, or 'closed'")
        return ()
    out: list[Interval] = []
    for part in parts:
        if not isinstance(part, str):
            errs.add(name, f"{part!r} is not HH:MM-HH:MM")
            continue
        iv = _parse_range(part, name, errs)
        if iv:
            out.append(iv)
    out.sort(key=lambda i: i.start)
    for a, b in zip(out, out[1:], strict=False):
        if b.start < a.end:
            errs.add(name, f"{a} overlaps {b}")
    return tuple(out)


def parse_hours(raw: Any, errs: FieldErrors) -> dict[int, tuple[Interval, ...]]:
    if not isinstance(raw, dict):
        errs.add("business_hours", "is required: a mapping from weekday to HH:MM-HH:MM or 'closed'")
        return {}
    hours: dict[int, tuple[Interval, ...]] = {}
    for key, value in raw.items():
        day = str(key).strip().lower()
        if day not in WEEKDAYS:
            errs.add(f"business_hours.{key}", "is not a weekday name (monday..sunday)")
            continue
        intervals = _parse_day(value, f"business_hours.{day}", errs)
        if intervals:
            hours[WEEKDAYS.index(day)] = intervals
    if not hours and not errs:
        errs.add("business_hours", "the business is never open")
    return hours


def _parse_date(value: Any, name: str, errs: FieldErrors) -> date | None:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    errs.add(name, f"{value!r} is not a date (YYYY-MM-DD)")
    return None


def parse_closures(raw: Any, errs: FieldErrors) -> list[tuple[date, date, str]]:
    """Closures: ``{date: D, reason: R}`` or ``{from: D1, to: D2, reason: R}``."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        errs.add("closures", "must be a list")
        return []
    out: list[tuple[date, date, str]] = []
    for i, item in enumerate(raw):
        f = f"closures[{i}]"
        if not isinstance(item, dict):
            errs.add(f, "must be a mapping with date (or from/to) and reason")
            continue
        for key in item:
            if key not in {"date", "from", "to", "reason"}:
                errs.add(f"{f}.{key}", "unknown field")
        if "date" in item:
            start = end = _parse_date(item["date"], f"{f}.date", errs)
        else:
            start = _parse_date(item.get("from"), f"{f}.from", errs)
            end = _parse_date(item.get("to"), f"{f}.to", errs)
        reason = item.get("reason", "closed")
        if not isinstance(reason, str):
            errs.add(f"{f}.reason", "must be a string")
            reason = "closed"
        if start and end:
            if end < start:
                errs.add(f"{f}.to", "is before from")
            else:
                out.append((start, end, reason))
    return out


WEBHOOK_EVENTS = ("call.started", "call.ended", "transfer", "opt_out")
_WEBHOOK_KEYS = {"url", "secret", "secret_env", "events"}
_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")


@dataclass(frozen=True)
class Webhook:
    """A receiver of call-record events, signed with ``secret`` (HMAC-SHA256)."""

    url: str
    secret: str
    events: frozenset[str]


def _webhook_secret(item: dict[str, Any], field: str, errs: FieldErrors) -> str:
    if ("secret" in item) == ("secret_env" in item):
        errs.add(field, "needs exactly one of secret or secret_env")
        return ""
    if "secret_env" in item:
        name = item["secret_env"]
        value = os.environ.get(name, "") if isinstance(name, str) else ""
        if not value:
            errs.add(f"{field}.secret_env", f"environment variable {name!r} is not set")
        return value
    secret = item["secret"]
    if not isinstance(secret, str) or len(secret) < 16:
        errs.add(f"{field}.secret", "must be a string of at least 16 characters")
        return ""
    return secret


def _webhook_events(raw: Any, field: str, errs: FieldErrors) -> frozenset[str]:
    if raw is None:
        return frozenset(WEBHOOK_EVENTS)
    if not isinstance(raw, list) or not raw:
        errs.add(f"{field}.events", f"must be a non-empty list of {', '.join(WEBHOOK_EVENTS)}")
        return frozenset()
    for i, event in enumerate(raw):
        if event not in WEBHOOK_EVENTS:
            errs.add(f"{field}.events[{i}]", f"unknown event {event!r} (known: {', '.join(WEBHOOK_EVENTS)})")
    return frozenset(e for e in raw if e in WEBHOOK_EVENTS)


def parse_webhooks(raw: Any, errs: FieldErrors) -> tuple[Webhook, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        errs.add("webhooks", "must be a list of mappings with url, secret (or secret_env) and events")
        return ()
    out: list[Webhook] = []
    for i, item in enumerate(raw):
        field = f"webhooks[{i}]"
        if not isinstance(item, dict):
            errs.add(field, "must be a mapping with url, secret (or secret_env) and events")
            continue
        for key in item:
            if key not in _WEBHOOK_KEYS:
                errs.add(f"{field}.{key}", "unknown field")
        url = item.get("url")
        if not isinstance(url, str) or not _URL.match(url.strip()):
            errs.add(f"{field}.url", "must be an http:// or https:// URL")
            url = ""
        secret = _webhook_secret(item, field, errs)
        out.append(
            Webhook(url=url.strip(), secret=secret, events=_webhook_events(item.get("events"), field, errs))
        )
    return tuple(out)

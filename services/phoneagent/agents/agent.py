"""The agent: one YAML file describing a business and how its phone agent behaves.

Loaded into frozen dataclasses. Every problem is reported with the field it concerns
(``business_hours.monday: '9-17' is not HH:MM-HH:MM``); all problems are collected and
raised together in one :class:`AgentConfigError`.

The AI disclosure is deliberately not configurable here: the policy service adds it
to every call, a key that tries to change it is rejected, and a persona or greeting that
claims the agent is a person (or tells it to hide being an AI) is rejected too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from phoneagent.agents.fields import (
    WEEKDAYS,
    FieldErrors,
    Interval,
    Webhook,
    parse_closures,
    parse_hours,
    parse_int,
    parse_str,
    parse_timezone,
    parse_webhooks,
)
from phoneagent.agents.human_claims import persona_claim
from phoneagent.agents.tools import TOOL_NAMES
from phoneagent.runtime.errors import InvalidArgument

_TOP_KEYS = {
    "name",
    "business_name",
    "language",
    "timezone",
    "persona",
    "greeting",
    "business_hours",
    "closures",
    "appointment_types",
    "slot_minutes",
    "min_notice_minutes",
    "booking_horizon_days",
    "knowledge",
    "tools",
    "transfer",
    "voice",
    "webhooks",
    "escalation",
    "caller_verification",
}
_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_LANG = re.compile(r"^[a-z]{2,3}(-[A-Z]{2})?$")
_SIP = re.compile(r"^sips?:([^@\s]+@)?[A-Za-z0-9.-]+(:\d{1,5})?(;[^\s]*)?$")
_NUMBER = re.compile(r"^(tel:)?\+?[0-9]{3,15}$")
_ENGINE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class AgentConfigError(InvalidArgument):
    """The agent file is invalid; ``errors`` lists every problem as ``field: reason``."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__(f"agent file {source} is invalid: " + "; ".join(self.errors))


@dataclass(frozen=True)
class Closure:
    start: date
    end: date  # inclusive
    reason: str

    def covers(self, day: date) -> bool:
        return self.start <= day <= self.end


@dataclass(frozen=True)
class AppointmentType:
    id: str
    name: str
    duration_minutes: int
    aliases: tuple[str, ...] = ()

    def matches(self, text: str) -> bool:
        wanted = _simplify(text)
        return wanted in {_simplify(self.id), _simplify(self.name), *(_simplify(a) for a in self.aliases)}


TRANSFER_HOURS = ("business", "always")


@dataclass(frozen=True)
class Transfer:
    target: str
    kind: str  # "sip" or "number"
    available: bool
    hours: str = "business"  # when people take transfers: "business" (opening hours) or "always"
    # Other people calls may be transferred to (an operator's TransferCall), besides ``target``;
    # policy approves a transfer elsewhere only when the number passes its dial rules.
    allowed_targets: tuple[str, ...] = ()


@dataclass(frozen=True)
class Escalation:
    """When the policy service hands a caller to a person (besides an explicit request)."""

    trigger_words: tuple[str, ...] = ()  # phrases that escalate at once ("lawyer", "complaint")
    max_misunderstood: int = 3  # consecutive caller turns the agent could not make sense of


@dataclass(frozen=True)
class Voice:
    engine: str
    voice: str


@dataclass(frozen=True)
class Agent:
    name: str
    business_name: str
    language: str
    timezone: str
    persona: str
    greeting: str
    business_hours: dict[int, tuple[Interval, ...]]  # weekday (Monday=0) -> opening intervals
    closures: tuple[Closure, ...]
    appointment_types: tuple[AppointmentType, ...]
    slot_minutes: int
    min_notice_minutes: int
    booking_horizon_days: int
    knowledge: tuple[Path, ...]
    tools: frozenset[str]
    transfer: Transfer | None
    voice: Voice
    source: Path | None = None
    webhooks: tuple[Webhook, ...] = ()
    escalation: Escalation = Escalation()
    # Whether bookings ask for the caller's date of birth, which then proves a booking like its
    # reference (with the caller ID) when the caller calls about it.
    collect_date_of_birth: bool = False

    @property
    def public_words(self) -> tuple[str, ...]:
        """The business's own words, which name no caller: never masked as personal data."""
        return (self.business_name,) if self.business_name.strip() else ()

    def own_texts(self) -> list[str]:
        """What the business itself says (greeting, documents): the names and places in them
        are public (``redact.public_phrases``)."""
        return [self.greeting, *read_documents(self.knowledge)]

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def closure_on(self, day: date) -> Closure | None:
        return next((c for c in self.closures if c.covers(day)), None)

    def hours_on(self, day: date) -> tuple[Interval, ...]:
        """Opening intervals on a local date; empty when closed (weekday or closure)."""
        if self.closure_on(day):
            return ()
        return self.business_hours.get(day.weekday(), ())

    def is_open_at(self, day: date, at: time) -> bool:
        return any(i.start <= at < i.end for i in self.hours_on(day))

    def staffed_at(self, now: datetime) -> bool:
        """Whether a person can take a transfer at ``now``: a transfer target that is available,
        and either the business is open then (its hours and closures, in its time zone) or the
        target answers around the clock (``transfer.hours: always``)."""
        if self.transfer is None or not self.transfer.available:
            return False
        if self.transfer.hours == "always":
            return True
        local = now.astimezone(self.tz)
        return self.is_open_at(local.date(), time(local.hour, local.minute))

    def find_type(self, text: str) -> AppointmentType | None:
        return next((t for t in self.appointment_types if t.matches(text)), None)

    def tool_enabled(self, name: str) -> bool:
        return name in self.tools


def _simplify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def load_agent(path: str | Path) -> Agent:
    """Read and validate an agent YAML file."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AgentConfigError(p.name, ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AgentConfigError(p.name, [f"cannot be read ({type(exc).__name__})"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise AgentConfigError(p.name, [f"not valid YAML{where}"]) from None
    return parse_agent(raw, base_dir=p.parent, source=p)


def parse_agent(raw: Any, *, base_dir: Path, source: Path | None = None) -> Agent:
    """Validate an already-parsed mapping (paths in ``knowledge`` are relative to ``base_dir``)."""
    label = source.name if source else "<agent>"
    errs = FieldErrors()
    if not isinstance(raw, dict):
        raise AgentConfigError(label, ["top level must be a mapping"])
    for key in raw:
        if "disclos" in str(key).lower():
            errs.add(str(key), "the AI disclosure is added by policy and cannot be configured")
        elif key not in _TOP_KEYS:
            errs.add(str(key), "unknown field")
    name = parse_str(raw, "name", errs, pattern=_ID, hint="lower-case letters, digits and _")
    tz_name = parse_timezone(raw.get("timezone"), errs)
    agent = Agent(
        name=name,
        business_name=parse_str(raw, "business_name", errs),
        language=parse_str(raw, "language", errs, default="en", pattern=_LANG, hint="like en or en-US"),
        timezone=tz_name,
        persona=parse_str(raw, "persona", errs),
        greeting=parse_str(raw, "greeting", errs),
        business_hours=parse_hours(raw.get("business_hours"), errs),
        closures=tuple(Closure(*c) for c in parse_closures(raw.get("closures"), errs)),
        appointment_types=_parse_types(raw.get("appointment_types"), errs),
        slot_minutes=parse_int(raw, "slot_minutes", errs, default=15, low=5, high=240, multiple=5),
        min_notice_minutes=parse_int(raw, "min_notice_minutes", errs, default=60, low=0, high=60 * 24 * 14),
        booking_horizon_days=parse_int(raw, "booking_horizon_days", errs, default=90, low=1, high=730),
        knowledge=_parse_knowledge(raw.get("knowledge"), base_dir, errs),
        tools=_parse_tools(raw.get("tools"), errs),
        transfer=_parse_transfer(raw.get("transfer"), errs),
        voice=_parse_voice(raw.get("voice"), errs),
        source=source,
        webhooks=parse_webhooks(raw.get("webhooks"), errs),
        escalation=_parse_escalation(raw.get("escalation"), errs),
        collect_date_of_birth=_parse_caller_verification(raw.get("caller_verification"), errs),
    )
    for key, text in (("persona", agent.persona), ("greeting", agent.greeting)):
        claim = persona_claim(text)
        if claim is not None:
            errs.add(key, f"claims the agent is a person ({claim}); the AI disclosure cannot be undone")
    if "transfer_to_human" in agent.tools and agent.transfer is None:
        errs.add("tools", "transfer_to_human is enabled but no transfer target is set")
    if errs:
        raise AgentConfigError(label, errs.items)
    return agent


def _parse_types(raw: Any, errs: FieldErrors) -> tuple[AppointmentType, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        errs.add("appointment_types", "must be a list")
        return ()
    out: list[AppointmentType] = []
    for i, item in enumerate(raw):
        f = f"appointment_types[{i}]"
        if not isinstance(item, dict):
            errs.add(f, "must be a mapping with id, name and duration_minutes")
            continue
        for key in item:
            if key not in {"id", "name", "duration_minutes", "aliases"}:
                errs.add(f"{f}.{key}", "unknown field")
        aliases = item.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
            errs.add(f"{f}.aliases", "must be a list of non-empty strings")
            aliases = []
        out.append(
            AppointmentType(
                id=parse_str(
                    item, "id", errs, prefix=f, pattern=_ID, hint="lower-case letters, digits and _"
                ),
                name=parse_str(item, "name", errs, prefix=f),
                duration_minutes=parse_int(
                    item, "duration_minutes", errs, prefix=f, low=5, high=480, multiple=5
                ),
                aliases=tuple(aliases),
            )
        )
    ids = [t.id for t in out]
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        errs.add("appointment_types", f"id {dup!r} is used more than once")
    return tuple(out)


def _parse_knowledge(raw: Any, base_dir: Path, errs: FieldErrors) -> tuple[Path, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        errs.add("knowledge", "must be a list of file paths relative to the agent file")
        return ()
    out: list[Path] = []
    for i, item in enumerate(raw):
        if not isinstance(item, str) or not item.strip():
            errs.add(f"knowledge[{i}]", "must be a file path")
            continue
        path = (base_dir / item).resolve()
        if not path.is_file():
            errs.add(f"knowledge[{i}]", f"{item!r} does not exist next to the agent file")
            continue
        out.append(path)
    return tuple(out)


def _parse_tools(raw: Any, errs: FieldErrors) -> frozenset[str]:
    if raw is None:
        return frozenset(TOOL_NAMES)
    if not isinstance(raw, list):
        errs.add("tools", "must be a list of tool names")
        return frozenset()
    for i, name in enumerate(raw):
        if name not in TOOL_NAMES:
            errs.add(f"tools[{i}]", f"unknown tool {name!r} (known: {', '.join(TOOL_NAMES)})")
    return frozenset(n for n in raw if n in TOOL_NAMES)


def _parse_transfer(raw: Any, errs: FieldErrors) -> Transfer | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        errs.add("transfer", "must be a mapping with target and available")
        return None
    for key in raw:
        if key not in {"target", "available", "hours", "allowed_targets"}:
            errs.add(f"transfer.{key}", "unknown field")
    kind, target = _transfer_target(raw.get("target", ""), "transfer.target", errs)
    allowed = raw.get("allowed_targets", [])
    if not isinstance(allowed, list):
        errs.add("transfer.allowed_targets", "must be a list of SIP URIs or phone numbers")
        allowed = []
    allowed_targets = tuple(
        _transfer_target(t, f"transfer.allowed_targets[{i}]", errs)[1] for i, t in enumerate(allowed)
    )
    available = raw.get("available", True)
    if not isinstance(available, bool):
        errs.add("transfer.available", "must be true or false")
        available = False
    hours = str(raw.get("hours", "business"))
    if hours not in TRANSFER_HOURS:
        errs.add("transfer.hours", f"must be one of {', '.join(TRANSFER_HOURS)}")
        hours = "business"
    return Transfer(
        target=target, kind=kind, available=available, hours=hours, allowed_targets=allowed_targets
    )


def _transfer_target(raw: Any, field: str, errs: FieldErrors) -> tuple[str, str]:
    """(kind, target) of a transfer target: ``sip`` and the URI, or ``number`` and the digits."""
    target = str(raw).strip()
    if _SIP.match(target):
        return "sip", target
    if _NUMBER.match(target.replace(" ", "").replace("-", "")):
        return "number", target.replace(" ", "").replace("-", "")
    errs.add(field, "must be a SIP URI (sip:user@host) or a phone number (+15551234567)")
    return "number", target


def _parse_escalation(raw: Any, errs: FieldErrors) -> Escalation:
    if raw is None:
        return Escalation()
    if not isinstance(raw, dict):
        errs.add("escalation", "must be a mapping with trigger_words and max_misunderstood")
        return Escalation()
    for key in raw:
        if key not in {"trigger_words", "max_misunderstood"}:
            errs.add(f"escalation.{key}", "unknown field")
    words = raw.get("trigger_words", [])
    if not isinstance(words, list):
        errs.add("escalation.trigger_words", "must be a list of phrases")
        words = []
    for i, word in enumerate(words):
        if not isinstance(word, str) or not re.search(r"[A-Za-z0-9]", word) or len(word) > 100:
            errs.add(f"escalation.trigger_words[{i}]", "must be a phrase of words (at most 100 characters)")
    misunderstood = parse_int(raw, "max_misunderstood", errs, prefix="escalation", default=3, low=1, high=20)
    return Escalation(
        trigger_words=tuple(w.strip() for w in words if isinstance(w, str) and re.search(r"[A-Za-z0-9]", w)),
        max_misunderstood=misunderstood,
    )


def _parse_caller_verification(raw: Any, errs: FieldErrors) -> bool:
    """``caller_verification: {date_of_birth: true}``: whether bookings collect the date of birth."""
    if raw is None:
        return False
    if not isinstance(raw, dict):
        errs.add("caller_verification", "must be a mapping with date_of_birth")
        return False
    for key in raw:
        if key != "date_of_birth":
            errs.add(f"caller_verification.{key}", "unknown field")
    value = raw.get("date_of_birth", False)
    if not isinstance(value, bool):
        errs.add("caller_verification.date_of_birth", "must be true or false")
        return False
    return value


def _parse_voice(raw: Any, errs: FieldErrors) -> Voice:
    if raw is None:
        return Voice(engine="kokoro", voice="af_heart")
    if not isinstance(raw, dict):
        errs.add("voice", "must be a mapping with engine and voice")
        return Voice(engine="kokoro", voice="af_heart")
    for key in raw:
        if key not in {"engine", "voice"}:
            errs.add(f"voice.{key}", "unknown field")
    engine = parse_str(
        raw, "engine", errs, prefix="voice", pattern=_ENGINE, hint="an engine name like kokoro"
    )
    return Voice(engine=engine, voice=parse_str(raw, "voice", errs, prefix="voice"))


__all__ = [
    "WEEKDAYS",
    "Agent",
    "AgentConfigError",
    "AppointmentType",
    "Closure",
    "Interval",
    "Transfer",
    "Voice",
    "Webhook",
    "load_agent",
    "parse_agent",
]


def read_documents(paths: Iterable[Path]) -> list[str]:
    """The text of each readable document (one that cannot be read, or is not UTF-8, gives
    nothing: the agent file was validated when it was loaded)."""
    texts: list[str] = []
    for path in paths:
        try:
            texts.append(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
    return texts

"""Resolving spoken date/time expressions in code, in the business time zone.

``resolve("next Tuesday afternoon", now, tz, hours)`` returns a :class:`Resolution`:
a day or range of days, and an exact time or a time window, or why it could not be
resolved. Calendar arithmetic is done on local dates; conversion to instants goes
through :func:`to_aware`, which refuses wall-clock times skipped by a DST change.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from phoneagent.agents.fields import Interval
from phoneagent.llm.domain.dates_parse import Pieces, extract
from phoneagent.runtime.errors import InvalidArgument

HoursFn = Callable[[date], tuple[Interval, ...]]


class Status(enum.Enum):
    RESOLVED = "resolved"
    AMBIGUOUS = "ambiguous"  # a reading was chosen but others are plausible: confirm with the caller
    INVALID = "invalid"  # understood, but impossible (in the past, 30 February, skipped by DST)
    UNKNOWN = "unknown"  # no date or time found


@dataclass(frozen=True)
class TimeWindow:
    start: time
    end: time  # exclusive
    label: str

    def contains(self, at: time) -> bool:
        return self.start <= at < self.end


@dataclass(frozen=True)
class Resolution:
    status: Status
    text: str
    first_day: date | None = None
    last_day: date | None = None  # inclusive; equal to first_day for one day
    at: time | None = None
    window: TimeWindow | None = None
    alternatives: tuple[Resolution, ...] = ()
    note: str = ""
    earliest: bool = False  # "as soon as possible": first free slot in the range

    @property
    def ok(self) -> bool:
        return self.status in (Status.RESOLVED, Status.AMBIGUOUS)

    @property
    def single_day(self) -> date | None:
        return self.first_day if self.first_day is not None and self.first_day == self.last_day else None

    @property
    def is_exact(self) -> bool:
        return self.ok and self.single_day is not None and self.at is not None

    def days(self) -> list[date]:
        if self.first_day is None or self.last_day is None:
            return []
        return [self.first_day + timedelta(days=i) for i in range((self.last_day - self.first_day).days + 1)]

    def start(self, tz: ZoneInfo) -> datetime:
        """The exact instant (requires :attr:`is_exact`)."""
        if not self.is_exact or self.first_day is None or self.at is None:
            raise InvalidArgument("not an exact day and time")
        return to_aware(self.first_day, self.at, tz)

    def describe(self) -> str:
        """Short speakable form: ``Tuesday 1 December at 10:00``."""
        parts: list[str] = []
        if self.single_day:
            parts.append(speak_day(self.single_day))
        elif self.first_day and self.last_day:
            parts.append(f"between {speak_day(self.first_day)} and {speak_day(self.last_day)}")
        if self.at is not None:
            parts.append("at " + speak_time(self.at))
        elif self.window is not None:
            label = self.window.label
            parts.append(label if label.startswith(("between ", "after ", "before ")) else f"in the {label}")
        return " ".join(parts) or self.text


class NonexistentTime(InvalidArgument):
    def __init__(self, day: date, at: time) -> None:
        super().__init__(f"{speak_time(at)} does not exist on {speak_day(day)}: the clocks go forward")


def to_aware(day: date, at: time, tz: ZoneInfo) -> datetime:
    """Local wall-clock time as an aware datetime. A repeated hour (clocks going back)
    takes its first occurrence; a skipped one raises :class:`NonexistentTime`."""
    naive = datetime.combine(day, at)
    local = naive.replace(tzinfo=tz, fold=0)
    back = local.astimezone(ZoneInfo("UTC")).astimezone(tz).replace(tzinfo=None)
    if back != naive:
        raise NonexistentTime(day, at)
    return local


def speak_day(d: date) -> str:
    return f"{d.strftime('%A')} {d.day} {d.strftime('%B')}"


def speak_time(t: time) -> str:
    if t == time(12, 0):
        return "noon"
    hour = t.hour % 12 or 12
    suffix = "am" if t.hour < 12 else "pm"
    return f"{hour}:{t.minute:02d} {suffix}" if t.minute else f"{hour} {suffix}"


@dataclass
class _Ctx:
    text: str
    today: date
    now_local: datetime
    tz: ZoneInfo
    hours: HoursFn | None
    notes: list[str] = field(default_factory=list)


def resolve(text: str, now: datetime, tz: ZoneInfo, hours: HoursFn | None = None) -> Resolution:
    """Resolve ``text`` relative to ``now`` (an aware datetime) in time zone ``tz``.

    ``hours`` gives the opening intervals of a local date; it decides whether a bare
    "10" means 10 am or 10 pm.
    """
    if now.tzinfo is None:
        raise InvalidArgument("now must be timezone-aware")
    now_local = now.astimezone(tz)
    ctx = _Ctx(text=text, today=now_local.date(), now_local=now_local, tz=tz, hours=hours)
    try:
        pieces = _corrected(text, now_local) or extract(text, now_local)
    except ValueError as exc:
        return Resolution(Status.INVALID, text, note=str(exc))
    return _assemble(pieces, ctx)


# A caller correcting themselves: "Monday at nine. Sorry, I meant ten.", "on Monday at eleven,
# actually no, make that one in the afternoon". What follows the last such cue that names a day
# or a time replaces that part of what came before it.
_CORRECTION = re.compile(
    r"\b(?:sorry|i mean|i meant|actually|no wait|wait no|make (?:that|it)|scratch that|correction|"
    r"rather|change (?:that|it) to)\b",
    re.IGNORECASE,
)


def _corrected(text: str, now_local: datetime) -> Pieces | None:
    """The pieces of ``text`` with a self-correction applied, or None when it has none."""
    for cue in reversed(list(_CORRECTION.finditer(text))):
        later = extract(text[cue.end() :], now_local)
        if later.nothing_found():
            continue  # "Monday at nine, sorry for the trouble": nothing corrected
        earlier = extract(text[: cue.start()], now_local)
        if earlier.nothing_found():
            return later  # "Sorry, could I come Monday at nine?": the cue corrects nothing
        return _override(earlier, later)
    return None


def _override(earlier: Pieces, later: Pieces) -> Pieces:
    """``earlier`` with the day and/or the time that ``later`` names put in their place."""
    out = replace(earlier, notes=[*earlier.notes, *later.notes])
    if later.first_day is not None or later.conflict:
        out.first_day, out.last_day, out.conflict = later.first_day, later.last_day, later.conflict
        out.alternative_days, out.earliest = list(later.alternative_days), later.earliest
        out.ambiguous = later.ambiguous
    if later.hour is not None or later.exact_instant is not None:
        out.hour, out.minute, out.meridiem = later.hour, later.minute, later.meridiem
        out.exact_instant = later.exact_instant
        out.window = later.window or earlier.window
    elif later.window is not None:
        out.window, out.hour, out.minute, out.meridiem = later.window, None, 0, None
    return out


def _assemble(p: Pieces, ctx: _Ctx) -> Resolution:
    if p.nothing_found():
        return Resolution(Status.UNKNOWN, ctx.text, note="no date or time found")
    if p.exact_instant is not None:
        local = p.exact_instant.astimezone(ctx.tz)
        return Resolution(
            Status.RESOLVED,
            ctx.text,
            local.date(),
            local.date(),
            local.time().replace(second=0, microsecond=0, tzinfo=None),
        )
    if p.conflict:
        return Resolution(Status.AMBIGUOUS, ctx.text, note=p.conflict)
    first, last = p.first_day, p.last_day
    if first is not None and last is not None and last < ctx.today:
        return Resolution(Status.INVALID, ctx.text, first, last, note="that date is in the past")
    if first is not None and last is not None and first < ctx.today:
        first = ctx.today
    window = _window(p)
    at, alternatives = _pick_time(p, first if first == last else None, ctx)
    if at is not None and first is not None and first == last:
        problem = _check_instant(first, at, ctx)
        later = [d for d in p.alternative_days if d > first]
        if problem and later:  # "Monday at 9" said on a Monday after 9: next week's Monday
            first = last = later[0]
            p.alternative_days = []
            problem = _check_instant(first, at, ctx)
        if problem:
            return Resolution(Status.INVALID, ctx.text, first, last, at, note=problem)
    alt_days = tuple(Resolution(Status.RESOLVED, ctx.text, d, d, at, window) for d in p.alternative_days)
    alts = alternatives + alt_days
    status = Status.AMBIGUOUS if p.ambiguous or alternatives else Status.RESOLVED
    return Resolution(
        status,
        ctx.text,
        first,
        last,
        at,
        None if at else window,
        alts,
        note="; ".join(p.notes + ctx.notes),
        earliest=p.earliest,
    )


def _window(p: Pieces) -> TimeWindow | None:
    if p.window is None:
        return None
    start, end, label = p.window
    return TimeWindow(start, end, label)


def _check_instant(day: date, at: time, ctx: _Ctx) -> str:
    try:
        instant = to_aware(day, at, ctx.tz)
    except NonexistentTime as exc:
        return exc.message
    if instant <= ctx.now_local:
        return "that time has already passed"
    return ""


def _open_at(ctx: _Ctx, day: date | None, at: time) -> bool:
    if ctx.hours is None:
        return time(8, 0) <= at < time(18, 0)
    days = [day] if day is not None else [ctx.today + timedelta(days=i) for i in range(7)]
    return any(i.start <= at < i.end for d in days for i in ctx.hours(d))


def _pick_time(p: Pieces, day: date | None, ctx: _Ctx) -> tuple[time | None, tuple[Resolution, ...]]:
    """The time of day, deciding am/pm for a bare hour from the business hours."""
    if p.hour is None:
        return None, ()
    hour, minute = p.hour, p.minute
    if p.meridiem == "am":
        return time(0 if hour == 12 else hour, minute), ()
    if p.meridiem == "pm":
        return time(hour if hour == 12 else hour + 12, minute), ()
    if hour == 0 or hour > 12:
        return time(hour, minute), ()
    if hour == 12:
        return time(12, minute), ()
    if p.window is not None:  # "ten in the morning", "tuesday afternoon at 3"
        morning = p.window[0] < time(12, 0)
        return time(hour if morning else hour + 12, minute), ()
    am, pm = time(hour, minute), time(hour + 12, minute)
    am_open, pm_open = _open_at(ctx, day, am), _open_at(ctx, day, pm)
    if am_open != pm_open:
        return (am if am_open else pm), ()
    preferred, other = (am, pm) if hour >= 7 else (pm, am)
    if not am_open:
        ctx.notes.append("outside business hours")
        return preferred, ()
    alt = Resolution(Status.RESOLVED, ctx.text, day, day, other)
    return preferred, (alt,)

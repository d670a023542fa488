"""Pattern extraction for :mod:`dates`: which day(s), which time, which part of the day."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from phoneagent.llm.domain.dates_words import normalise

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_WD = "|".join(WEEKDAYS)
_MON = "|".join(MONTHS)
_ORD = r"(?:st|nd|rd|th)"
_WINDOWS = {
    "morning": (time(6), time(12)),
    "afternoon": (time(12), time(17)),
    "evening": (time(17), time(21)),
    "night": (time(18), time(23, 59)),
    "lunchtime": (time(11, 30), time(13, 30)),
}
ASAP_DAYS = 14
# Nouns an ordinal counts when it is not a day of the month, and words before such an ordinal.
_COUNTED = (
    r"(?:visit|visits|appointment|appointments|time|times|one|ones|patient|step|thing|floor|"
    r"available|free|opening|slot|slots|cleaning|checkup|exam|consultation)"
)
_OWNER = "".join(f"(?<! {w})" for w in "my your our his her their a an this that".split())


@dataclass
class Pieces:
    """What was found in the text, before am/pm and past checks."""

    first_day: date | None = None
    last_day: date | None = None
    hour: int | None = None
    minute: int = 0
    meridiem: str | None = None
    window: tuple[time, time, str] | None = None
    exact_instant: datetime | None = None
    earliest: bool = False
    alternative_days: list[date] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    conflict: str = ""
    ambiguous: bool = False

    def nothing_found(self) -> bool:
        return (
            self.first_day is None
            and self.hour is None
            and self.window is None
            and self.exact_instant is None
            and not self.conflict
        )


class _Scanner:
    def __init__(self, text: str) -> None:
        self.s = f" {normalise(text)} "

    def take(self, pattern: str) -> re.Match[str] | None:
        m = re.search(pattern, self.s)
        if m:
            self.s = self.s[: m.start()] + " , " + self.s[m.end() :]
        return m


def _add_months(d: date, months: int) -> date:
    y, m = divmod(d.month - 1 + months, 12)
    year, month = d.year + y, m + 1
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def _month_range(year: int, month: int) -> tuple[date, date]:
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])


def _num(token: str) -> int:
    return 1 if token in ("a", "an") else int(token)


@dataclass
class _Found:
    ranges: list[tuple[date, date]] = field(default_factory=list)
    weekday: tuple[int, str] | None = None  # (Monday=0, modifier)
    day_of_month: int | None = None


def extract(text: str, now: datetime) -> Pieces:
    """Find the pieces in ``text``; ``now`` is local to the business time zone."""
    sc = _Scanner(text)
    # A greeting names no part of the day: "good morning, can I come in tomorrow at 3?" is 3 pm.
    while sc.take(r" good (?:morning|afternoon|evening|night) "):
        pass
    p = Pieces()
    found = _Found()
    today = now.date()
    _relative_spans(sc, p, found, now)
    _absolute_dates(sc, p, found, today)
    _windows(sc, p)
    _times(sc, p)
    _relative_days(sc, p, found, today)
    _weekday_and_day(sc, found)
    if p.hour is None:
        m = sc.take(r" (0?\d|1\d|2[0-3]) ")
        if m:
            p.hour = int(m.group(1))
    _combine(p, found, today)
    return p


def _relative_spans(sc: _Scanner, p: Pieces, found: _Found, now: datetime) -> None:
    today = now.date()
    if sc.take(r" in half an hour "):
        p.exact_instant = now.astimezone(UTC) + timedelta(minutes=30)
    m = sc.take(
        r" (?:in (a|an|\d+) (minute|minutes|hour|hours|day|days|week|weeks|month|months)"
        r"|(a|an|\d+) (day|days|week|weeks|month|months) from (?:now|today))(?: time)? "
    )
    if m:
        n = _num(m.group(1) or m.group(3))
        unit = (m.group(2) or m.group(4)).rstrip("s")
        if unit in ("minute", "hour"):  # real elapsed time, correct across DST changes
            delta = timedelta(minutes=n) if unit == "minute" else timedelta(hours=n)
            instant = (now.astimezone(UTC) + delta).replace(second=0, microsecond=0)
            p.exact_instant = instant
        elif unit == "month":
            d = _add_months(today, n)
            found.ranges.append((d, d))
        else:
            d = today + timedelta(days=n * (7 if unit == "week" else 1))
            found.ranges.append((d, d))
    if sc.take(
        r" (asap|as soon as possible|earliest|soonest|(?:first|next) (?:available|free|opening)"
        r"|right away|right now|now) "
    ):
        p.earliest = True
        found.ranges.append((today, today + timedelta(days=ASAP_DAYS - 1)))


def _absolute_dates(sc: _Scanner, p: Pieces, found: _Found, today: date) -> None:
    m = sc.take(r" (\d{4})-(\d{1,2})-(\d{1,2}) ")
    if m:
        d = _make_date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        found.ranges.append((d, d))
    m = sc.take(r" (\d{1,2})/(\d{1,2})(?:/(\d{2,4}))? ")
    if m:
        a, b = int(m.group(1)), int(m.group(2))
        month, day = (b, a) if a > 12 else (a, b)  # month/day unless the first cannot be a month
        if a <= 12 and b <= 12 and a != b:
            p.ambiguous = True
            p.notes.append("numeric date could be month/day or day/month")
        year = int(m.group(3)) if m.group(3) else None
        d = _month_day(month, day, year + 2000 if year is not None and year < 100 else year, today)
        found.ranges.append((d, d))
    m = sc.take(
        rf" (?:({_MON}) (?:the )?(\d{{1,2}}){_ORD}?|(?:the )?(\d{{1,2}}){_ORD}? (?:of )?({_MON}))"
        rf"(?: (\d{{4}}))? "
    )
    if m:
        month = MONTHS.index(m.group(1) or m.group(4)) + 1
        day = int(m.group(2) or m.group(3))
        d = _month_day(month, day, int(m.group(5)) if m.group(5) else None, today)
        found.ranges.append((d, d))
        return
    m = sc.take(rf" (?:in |during )?({_MON})(?: (\d{{4}}))? ")
    if m and not (
        m.group(1) == "may" and m.group(2) is None and not m.group(0).strip().startswith(("in", "dur"))
    ):
        month = MONTHS.index(m.group(1)) + 1
        year = int(m.group(2)) if m.group(2) else (today.year if month >= today.month else today.year + 1)
        found.ranges.append(_month_range(year, month))


def _make_date(year: int, month: int, day: int) -> date:
    if not 1 <= month <= 12 or not 1 <= day <= 31:
        raise ValueError("that is not a valid date")
    try:
        return date(year, month, day)
    except ValueError:
        raise ValueError(f"there is no day {day} in that month") from None


def _month_day(month: int, day: int, year: int | None, today: date) -> date:
    if year is not None:
        return _make_date(year, month, day)
    if not 1 <= month <= 12 or not 1 <= day <= 31:
        raise ValueError("that is not a valid date")
    for y in (today.year, today.year + 1, today.year + 2, today.year + 3, today.year + 4):
        try:
            d = date(y, month, day)
        except ValueError:
            continue  # 29 February outside a leap year
        if d >= today:
            return d
    raise ValueError(f"there is no day {day} in that month")


def _meridiem_hour(hour: int, meridiem: str | None) -> int:
    if meridiem == "am":
        return 0 if hour == 12 else hour
    if meridiem == "pm" or 1 <= hour <= 6:
        return hour if hour == 12 else hour + 12
    return hour


def _clock(t: time) -> str:
    hour = t.hour % 12 or 12
    suffix = "am" if t.hour < 12 else "pm"
    return f"{hour}:{t.minute:02d} {suffix}" if t.minute else f"{hour} {suffix}"


def _windows(sc: _Scanner, p: Pieces) -> None:
    t = r"(\d{1,2})(?::(\d{2}))?(?: (am|pm))?"
    m = sc.take(rf" (?:between|from) {t} (?:and|to|till|until) {t} ")
    if m:
        start = time(_meridiem_hour(int(m.group(1)), m.group(3) or m.group(6)), int(m.group(2) or 0))
        end = time(_meridiem_hour(int(m.group(4)), m.group(6)), int(m.group(5) or 0))
        if end > start:
            p.window = (start, end, f"between {_clock(start)} and {_clock(end)}")
            return
    m = sc.take(rf" (after|before|not before|not after|no earlier than|no later than) {t}(?: oclock)? ")
    if m:
        bound = time(_meridiem_hour(int(m.group(2)), m.group(4)), int(m.group(3) or 0))
        later = m.group(1) in ("after", "not before", "no earlier than")
        p.window = (
            (bound, time(23, 59), f"after {_clock(bound)}")
            if later
            else (time(0), bound, f"before {_clock(bound)}")
        )
        return
    m = sc.take(
        r" (?:(this|in the|early|late|early in the|late in the) )?"
        r"(morning|afternoon|evening|tonight|night|lunchtime|lunch) "
    )
    if m:
        label = {"tonight": "evening", "lunch": "lunchtime"}.get(m.group(2), m.group(2))
        start, end = _WINDOWS[label]
        modifier = (m.group(1) or "").split(" ")[0]
        mid = time((start.hour * 60 + start.minute + end.hour * 60 + end.minute) // 120)
        if modifier == "early":
            end, label = mid, f"early {label}"
        elif modifier == "late":
            start, label = mid, f"late {label}"
        p.window = (start, end, label)
        if m.group(2) == "tonight" or modifier == "this":
            p.notes.append("today")


def _times(sc: _Scanner, p: Pieces) -> None:
    mer = r"(?: (am|pm))?"
    if sc.take(r" (noon|midday) "):
        p.hour, p.minute, p.meridiem = 12, 0, "pm"
        return
    if sc.take(r" midnight "):
        p.hour, p.minute, p.meridiem = 12, 0, "am"
        return
    m = sc.take(rf" (half|quarter|5|10|20|25) (past|after) (\d{{1,2}}){mer} ")
    if m:
        minute = {"half": 30, "quarter": 15}.get(m.group(1)) or int(m.group(1))
        p.hour, p.minute, p.meridiem = int(m.group(3)), minute, m.group(4)
        return
    m = sc.take(rf" (quarter|5|10|20|25) (?:to|till|before) (\d{{1,2}}){mer} ")
    if m:
        minute = 60 - ({"quarter": 15}.get(m.group(1)) or int(m.group(1)))
        p.hour, p.minute, p.meridiem = (int(m.group(2)) - 1) % 12 or 12, minute, m.group(3)
        return
    for pattern in (
        rf" (\d{{1,2}}):(\d{{2}}){mer} ",
        rf" (\d{{1,2}}) (0\d|[1-5]\d){mer} ",
        r" (\d{1,2})()(?: oclock)? (am|pm) ",
        r" (\d{1,2})() oclock() ",
        r" (?:at|around|about|say|for) (\d{1,2})()() ",
    ):
        m = sc.take(pattern)
        if m:
            p.hour, p.minute, p.meridiem = int(m.group(1)), int(m.group(2) or 0), m.group(3) or None
            break
    if p.hour is not None and (p.hour > 23 or p.minute > 59 or (p.meridiem and not 1 <= p.hour <= 12)):
        raise ValueError("that is not a valid time")


def _relative_days(sc: _Scanner, p: Pieces, found: _Found, today: date) -> None:
    offsets = (
        (r" (?:the )?day after tomorrow ", 2),
        (r" tomorrow ", 1),
        (r" today ", 0),
        (r" yesterday ", -1),
    )
    for pattern, days in offsets:
        if sc.take(pattern):
            d = today + timedelta(days=days)
            found.ranges.append((d, d))
    if "today" in p.notes:
        p.notes.remove("today")
        if not found.ranges:
            found.ranges.append((today, today))
    monday = today - timedelta(days=today.weekday())
    weeks = ((r" (?:the )?week after next ", 2), (r" next week ", 1), (r" (?:this|later this) week ", 0))
    for pattern, n in weeks:
        if sc.take(pattern):
            start = monday + timedelta(weeks=n)
            found.ranges.append((max(start, today), start + timedelta(days=6)))
    m = sc.take(r" (?:(this|next|the) )?weekend ")
    if m:
        sat = monday + timedelta(days=5, weeks=1 if m.group(1) == "next" else 0)
        found.ranges.append((max(sat, today), sat + timedelta(days=1)))
    m = sc.take(r" (this|next) month ")
    if m:
        first = _add_months(today.replace(day=1), 1 if m.group(1) == "next" else 0)
        found.ranges.append((max(first, today), _month_range(first.year, first.month)[1]))


def _weekday_and_day(sc: _Scanner, found: _Found) -> None:
    m = sc.take(rf" (?:(this|next|coming|this coming|on|on the) )?({_WD})(?: (after next))? ")
    if m:
        modifier = "after next" if m.group(3) else (m.group(1) or "").replace("this coming", "coming")
        found.weekday = (WEEKDAYS.index(m.group(2)), modifier)
    # "the 3rd", "on the 21st", a bare "21st"; not an ordinal that counts something else ("my
    # first visit", "the first appointment you have"), which would be read as the 1st of a month.
    m = sc.take(rf" (?:on )?the (\d{{1,2}}){_ORD}? (?!{_COUNTED} )") or sc.take(
        rf"{_OWNER} (\d{{1,2}}){_ORD} (?!{_COUNTED} )"
    )
    if m:
        found.day_of_month = int(m.group(1))
        if not 1 <= found.day_of_month <= 31:
            raise ValueError("that is not a valid day of the month")


def _combine(p: Pieces, found: _Found, today: date) -> None:
    first, last = today, None
    if found.ranges:
        first = max(r[0] for r in found.ranges)
        last = min(r[1] for r in found.ranges)
        if first > last:
            p.conflict = "the days mentioned do not agree"
            return
    if found.weekday is None and found.day_of_month is None:
        if found.ranges:
            p.first_day, p.last_day = first, last
        return
    if last is None:
        _default_constraint_day(p, found, today)
        return
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    days = [d for d in days if _fits(d, found)]
    if not days:
        p.conflict = _conflict_text(first, last, found)
        return
    p.first_day = p.last_day = days[0]


def _fits(d: date, found: _Found) -> bool:
    if found.weekday is not None and d.weekday() != found.weekday[0]:
        return False
    return found.day_of_month is None or d.day == found.day_of_month


def _conflict_text(first: date, last: date, found: _Found) -> str:
    if first == last and found.weekday is not None:
        return f"{first:%B} {first.day} is a {first:%A}, not a {WEEKDAYS[found.weekday[0]].title()}"
    return "the days mentioned do not agree"


def _default_constraint_day(p: Pieces, found: _Found, today: date) -> None:
    if found.weekday is not None and found.day_of_month is not None:
        d = today
        for _ in range(366 * 7):  # the next date with both that weekday and that day of month
            if _fits(d, found):
                p.first_day = p.last_day = d
                return
            d += timedelta(days=1)
    if found.day_of_month is not None:
        month_start = today.replace(day=1)
        for k in range(13):
            first = _add_months(month_start, k)
            if found.day_of_month <= calendar.monthrange(first.year, first.month)[1]:
                d = first.replace(day=found.day_of_month)
                if d >= today:
                    p.first_day = p.last_day = d
                    return
        return
    assert found.weekday is not None
    weekday, modifier = found.weekday
    nearest = today + timedelta(days=(weekday - today.weekday()) % 7)
    if modifier in ("next", "after next"):
        next_monday = today + timedelta(days=7 - today.weekday())
        d = next_monday + timedelta(days=weekday, weeks=1 if modifier == "after next" else 0)
        if modifier == "next" and nearest != d and nearest > today:
            p.alternative_days.append(nearest)
            p.notes.append(f"'next {WEEKDAYS[weekday]}' read as the one in the following week")
    else:
        d = nearest
        if d == today and modifier != "this":
            p.alternative_days.append(today + timedelta(days=7))
    p.first_day = p.last_day = d

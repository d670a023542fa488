"""The calendar block the model sees at the start of each turn.

Small models cannot do calendar arithmetic, so the model is told the date, the
opening hours, upcoming closures and a few free slots, and dates the caller says are
resolved in code by the tools.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta

from phoneagent.agents.agent import Agent
from phoneagent.agents.fields import WEEKDAYS, Interval
from phoneagent.llm.domain.dates import speak_time
from phoneagent.llm.domain.knowledge import Chunk
from phoneagent.llm.domain.scheduling import SchedulingStore

HOURS_SOURCE = "configuration: opening hours"
_DAYS = tuple(day.capitalize() for day in WEEKDAYS)


def _spoken(t: time) -> str:
    return "midnight" if (t.hour, t.minute) in ((23, 59), (0, 0)) else speak_time(t)


def _span(interval: Interval) -> str:
    return f"{_spoken(interval.start)} to {_spoken(interval.end)}"


def _days(first: int, last: int) -> str:
    if first == last:
        return _DAYS[first]
    joiner = " and " if last == first + 1 else " to "
    return f"{_DAYS[first]}{joiner}{_DAYS[last]}"


def hours_summary(agent: Agent) -> str:
    """``Monday to Friday 9 am to 5 pm; Saturday 9 am to noon; closed Sunday``: runs of days
    with the same hours, in the words the agent speaks (a small model reads "9:00-17:00" back
    badly, and a caller hears what the model copies)."""
    groups: list[tuple[int, int, str]] = []
    for day in range(7):
        text = " and ".join(_span(i) for i in agent.business_hours.get(day, ()))
        if groups and groups[-1][2] == text and groups[-1][1] == day - 1:
            groups[-1] = (groups[-1][0], day, text)
        else:
            groups.append((day, day, text))
    open_parts, closed = [], []
    for first, last, text in groups:
        if text:
            open_parts.append(f"{_days(first, last)} {text}")
        else:
            closed.append(_days(first, last))
    return "; ".join(open_parts + ([f"closed {' and '.join(closed)}"] if closed else []))


def agent_passages(agent: Agent) -> list[Chunk]:
    """Knowledge-base passages made from the agent's configuration (its opening hours), so a
    caller asking "when are you open?" gets the configured hours read out exactly, and the
    documents and the calendar never disagree."""
    if not agent.business_hours:
        return []
    return [Chunk(HOURS_SOURCE, "Opening hours", f"We are open {hours_summary(agent)}.")]


def _zone_words(zone: str) -> str:
    """``America/New_York`` -> ``New York``: what a person says, and what a model can repeat."""
    return zone.rsplit("/", 1)[-1].replace("_", " ")


def calendar_facts(
    agent: Agent,
    now: datetime,
    store: SchedulingStore | None = None,
    *,
    slots: int = 3,
    days: int = 14,
    minute_step: int = 1,
) -> str:
    """Text such as ``Today is Monday 23 November 2026. The time now is 9:30 am, New York time. ...``.

    With ``minute_step`` above 1 the time is rounded down to that step and said as "about": the
    line then stays the same for a few minutes (a prompt that repeats it need not change)."""
    local = now.astimezone(agent.tz)
    today = local.date()
    clock = local.time().replace(second=0, microsecond=0)
    about = ""
    if minute_step > 1:
        clock, about = clock.replace(minute=clock.minute - clock.minute % minute_step), "about "
    lines = [
        f"Today is {local:%A} {local.day} {local:%B %Y}. The time now is "
        f"{about}{speak_time(clock)}, {_zone_words(agent.timezone)} time.",
        f"{agent.business_name} is open {hours_summary(agent)}.",
    ]
    if not agent.hours_on(today):
        lines.append("The business is closed today.")
    # Closures as far ahead as a caller may book (not only the next ``days``): "are you open on
    # Christmas Eve?" asked a month before must find the closure among the facts.
    horizon = today + timedelta(days=max(days, agent.booking_horizon_days))
    closures = [c for c in agent.closures if c.end >= today and c.start <= horizon]
    for c in closures:
        span = f"{c.start:%A} {c.start.day} {c.start:%B}"
        if c.end != c.start:
            span += f" to {c.end:%A} {c.end.day} {c.end:%B}"
        lines.append(f"Closed {span} ({c.reason}).")
    if store is not None and agent.appointment_types and slots > 0:
        kind = agent.appointment_types[0]
        free = store.free_slots(kind.id, [today + timedelta(days=i) for i in range(days)], limit=slots)
        if free:
            listed = ", ".join(
                f"{s.start:%a} {s.start.day} {s.start:%b} {speak_time(s.start.time())}" for s in free
            )
            lines.append(f"Next free slots for {kind.name.lower()} ({kind.duration_minutes} min): {listed}.")
    types = ", ".join(f"{t.name} ({t.duration_minutes} min)" for t in agent.appointment_types)
    if types:
        lines.append(f"Appointment types: {types}.")
    lines.append("Pass the caller's own words for days and times to the tools; they work out the dates.")
    return "\n".join(lines)


_DAY_WORD = re.compile(rf"\b({'|'.join(WEEKDAYS)}|today|tomorrow)s?\b", re.I)
# Days known by name, as (month, day) or, for Thanksgiving, the fourth Thursday of November.
_NAMED_DAY = re.compile(
    r"\b(christmas eve|christmas(?: day)?|new year'?s eve|new year'?s(?: day)?|thanksgiving(?: day)?|"
    r"independence day|(?:the )?fourth of july|july (?:the )?fourth)\b",
    re.I,
)


def _named_day(name: str, today: date) -> date:
    """The next date (today or later) of a day known by name."""
    name = name.lower().replace("'", "")

    def on(year: int) -> date:
        if name.startswith("christmas eve"):
            return date(year, 12, 24)
        if name.startswith("christmas"):
            return date(year, 12, 25)
        if name.startswith("new years eve"):
            return date(year, 12, 31)
        if name.startswith("new years"):
            return date(year, 1, 1)
        if name.startswith("thanksgiving"):
            first = date(year, 11, 1)
            return first + timedelta(days=(3 - first.weekday()) % 7 + 21)
        return date(year, 7, 4)

    return on(today.year) if on(today.year) >= today else on(today.year + 1)


def hours_answer(agent: Agent, question: str, now: datetime) -> str | None:
    """The hours of the one day a question names ("are you open on Saturday?", "what time do
    you close today?", "are you open on Christmas Eve?"): the next such date, closures
    included; None when no day is named."""
    today = now.astimezone(agent.tz).date()
    named = _NAMED_DAY.search(question)
    if named is not None:
        day = _named_day(named.group(1), today)
        return _hours_on(agent, day, "today" if day == today else f"on {day:%A} {day.day} {day:%B}")
    m = _DAY_WORD.search(question)
    if m is None:
        return None
    word = m.group(1).lower()
    if word in ("today", "tomorrow"):
        day = today + timedelta(days=word == "tomorrow")
        name = word
    else:
        wanted = WEEKDAYS.index(word)
        day = today + timedelta(days=(wanted - today.weekday()) % 7)
        name = "today" if day == today else f"on {day:%A} {day.day} {day:%B}"
    return _hours_on(agent, day, name)


def _hours_on(agent: Agent, day: date, name: str) -> str:
    # The day first, then whether: "closed" ends the sentence or comes before a reason, where
    # Piper's "closed today" was heard as "close today" over the phone. No parentheses: they are
    # read to the caller.
    day_first = f"{name[0].upper()}{name[1:]}"
    closure = agent.closure_on(day)
    if closure is not None:
        return f"{day_first} we are closed for {closure.reason}."
    spans = agent.hours_on(day)
    if not spans:
        return f"{day_first} we are closed."
    return f"{day_first} we are open {' and '.join(_span(i) for i in spans)}."


_HOURS_QUESTION = re.compile(
    r"\b(?:opening|business|office) hours\b"
    r"|\bwhat are your hours\b"
    r"|\b(?:are|is) (?:you|you guys|the (?:office|practice|clinic))(?: still)? (?:open|closed)\b"
    r"|\bwhen (?:are|do|does|is) (?:you|the (?:office|practice|clinic))\b.*\b(?:open|close)"
    r"|\bwhat time (?:are|do|does|is) (?:you|the (?:office|practice|clinic))\b.*\b(?:open|close)",
    re.I,
)
_BOOKING_WORDS = re.compile(r"\b(?:book|booking|appointment|schedule|reschedule|cancel|move)\b", re.I)


# Words that may stand around an hours question without asking anything more.
_HOURS_ONLY = (
    frozenset(
        "sorry hi hello hey um uh so well please and on for the this that next today tomorrow tonight "
        "now still yes yeah okay ok oh excuse me quick question again exactly usually normally what "
        "about weekend weekends day days week are your you is do does what's whats".split()
    )
    | frozenset(WEEKDAYS)
    | frozenset(f"{d}s" for d in WEEKDAYS)
    | frozenset("christmas eve new year year's years thanksgiving independence fourth of july".split())
)


def asks_for_hours(text: str) -> bool:
    """Whether the whole utterance asks when the business is open ("are you open on Saturday?",
    "what are your opening hours?") and nothing else: answered from the configuration in code.
    An utterance with anything more ("when are you open, my gum is bleeding badly", "... and
    do you take Delta Dental?") or about a booking goes to the model."""
    m = _HOURS_QUESTION.search(text)
    if m is None or _BOOKING_WORDS.search(text):
        return False
    rest = f"{text[: m.start()]} {text[m.end() :]}".lower()
    return all(word in _HOURS_ONLY for word in re.findall(r"[a-z']+", rest))

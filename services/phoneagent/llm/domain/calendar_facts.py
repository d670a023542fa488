"""The calendar block the model sees at the start of each turn.

Small models cannot do calendar arithmetic, so the model is told the date, the
opening hours, upcoming closures and a few free slots, and dates the caller says are
resolved in code by the tools.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from phoneagent.llm.domain.agent import Agent
from phoneagent.llm.domain.agent_fields import Interval
from phoneagent.llm.domain.dates import speak_time
from phoneagent.llm.domain.scheduling import SchedulingStore

_SHORT = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _clock(interval: Interval) -> str:
    end = (
        "24:00"
        if interval.end.hour == 23 and interval.end.minute == 59
        else f"{interval.end.hour}:{interval.end:%M}"
    )
    return f"{interval.start.hour}:{interval.start:%M}-{end}"


def hours_summary(agent: Agent) -> str:
    """``Mon-Fri 9:00-17:00; Sat 9:00-12:00; closed Sun``: runs of days with the same hours."""
    groups: list[tuple[int, int, str]] = []
    for day in range(7):
        text = ", ".join(_clock(i) for i in agent.business_hours.get(day, ()))
        if groups and groups[-1][2] == text and groups[-1][1] == day - 1:
            groups[-1] = (groups[-1][0], day, text)
        else:
            groups.append((day, day, text))
    open_parts, closed = [], []
    for first, last, text in groups:
        days = _SHORT[first] if first == last else f"{_SHORT[first]}-{_SHORT[last]}"
        if text:
            open_parts.append(f"{days} {text}")
        else:
            closed.append(days)
    return "; ".join(open_parts + ([f"closed {', '.join(closed)}"] if closed else []))


def calendar_facts(
    agent: Agent, now: datetime, store: SchedulingStore | None = None, *, slots: int = 3, days: int = 14
) -> str:
    """Text such as ``Today is Monday 23 November 2026, 9:30 am, in America/New_York. ...``."""
    local = now.astimezone(agent.tz)
    today = local.date()
    lines = [
        f"Today is {local:%A} {local.day} {local:%B %Y}, {speak_time(local.time().replace(second=0))}, "
        f"in {agent.timezone}.",
        f"{agent.business_name} is open {hours_summary(agent)}.",
    ]
    if not agent.hours_on(today):
        lines.append("The business is closed today.")
    horizon = today + timedelta(days=days)
    closures = [c for c in agent.closures if c.end >= today and c.start <= horizon]
    for c in closures:
        span = f"{c.start:%A} {c.start.day} {c.start:%B}"
        if c.end != c.start:
            span += f" to {c.end:%A} {c.end.day} {c.end:%B}"
        lines.append(f"Closed {span} ({c.reason}).")
    if store is not None and agent.appointment_types:
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

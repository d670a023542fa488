"""Spoken date/time resolution in the business time zone, relative to a fixed "now"."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest
from phoneagent.agents.fields import Interval
from phoneagent.llm.domain.dates import NonexistentTime, Status, resolve, to_aware
from phoneagent.llm.domain.dates_words import normalise

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
# Monday 23 November 2026, 9:30 am in New York
MON = datetime(2026, 11, 23, 9, 30, tzinfo=NY)
NINE_TO_FIVE = (Interval(time(9), time(17)),)


def hours(day: date) -> tuple[Interval, ...]:
    return NINE_TO_FIVE if day.weekday() < 5 else ()


def hours_late(day: date) -> tuple[Interval, ...]:
    return (Interval(time(8), time(22)),)


D = date
T = time

# text, expected first day, last day, exact time, window label
CASES = [
    ("today", D(2026, 11, 23), D(2026, 11, 23), None, None),
    ("tomorrow", D(2026, 11, 24), D(2026, 11, 24), None, None),
    ("the day after tomorrow", D(2026, 11, 25), D(2026, 11, 25), None, None),
    ("next Tuesday", D(2026, 12, 1), D(2026, 12, 1), None, None),
    ("this Friday", D(2026, 11, 27), D(2026, 11, 27), None, None),
    ("Friday", D(2026, 11, 27), D(2026, 11, 27), None, None),
    ("on Thursday", D(2026, 11, 26), D(2026, 11, 26), None, None),
    ("next Monday", D(2026, 11, 30), D(2026, 11, 30), None, None),
    ("next Sunday", D(2026, 12, 6), D(2026, 12, 6), None, None),
    ("Tuesday after next", D(2026, 12, 8), D(2026, 12, 8), None, None),
    ("Tuesday afternoon", D(2026, 11, 24), D(2026, 11, 24), None, "afternoon"),
    ("wednesday morning", D(2026, 11, 25), D(2026, 11, 25), None, "morning"),
    ("tomorrow evening", D(2026, 11, 24), D(2026, 11, 24), None, "evening"),
    ("this afternoon", D(2026, 11, 23), D(2026, 11, 23), None, "afternoon"),
    ("tonight", D(2026, 11, 23), D(2026, 11, 23), None, "evening"),
    ("late morning on friday", D(2026, 11, 27), D(2026, 11, 27), None, "late morning"),
    ("the 3rd at 10", D(2026, 12, 3), D(2026, 12, 3), T(10), None),
    ("on the third", D(2026, 12, 3), D(2026, 12, 3), None, None),
    ("the 30th", D(2026, 11, 30), D(2026, 11, 30), None, None),
    ("the twenty-first at eleven am", D(2026, 12, 21), D(2026, 12, 21), T(11), None),
    ("December 5th at 2:30 pm", D(2026, 12, 5), D(2026, 12, 5), T(14, 30), None),
    ("5th of December at 2:30 p.m.", D(2026, 12, 5), D(2026, 12, 5), T(14, 30), None),
    ("dec 5 at half past two", D(2026, 12, 5), D(2026, 12, 5), T(14, 30), None),
    ("January 4th", D(2027, 1, 4), D(2027, 1, 4), None, None),  # year rollover
    ("November 2nd", D(2027, 11, 2), D(2027, 11, 2), None, None),  # already past this year
    ("March 3 2027 at 9", D(2027, 3, 3), D(2027, 3, 3), T(9), None),
    ("in two weeks", D(2026, 12, 7), D(2026, 12, 7), None, None),
    ("in 3 days", D(2026, 11, 26), D(2026, 11, 26), None, None),
    ("a week from today", D(2026, 11, 30), D(2026, 11, 30), None, None),
    ("in a month", D(2026, 12, 23), D(2026, 12, 23), None, None),
    ("next week", D(2026, 11, 30), D(2026, 12, 6), None, None),
    ("this week", D(2026, 11, 23), D(2026, 11, 29), None, None),
    ("thursday next week", D(2026, 12, 3), D(2026, 12, 3), None, None),
    ("the week after next", D(2026, 12, 7), D(2026, 12, 13), None, None),
    ("next month", D(2026, 12, 1), D(2026, 12, 31), None, None),
    ("the 5th of next month", D(2026, 12, 5), D(2026, 12, 5), None, None),
    ("at noon", None, None, T(12), None),
    ("tomorrow at noon", D(2026, 11, 24), D(2026, 11, 24), T(12), None),
    ("10", None, None, T(10), None),
    ("at 2", None, None, T(14), None),
    ("friday at 4", D(2026, 11, 27), D(2026, 11, 27), T(16), None),
    ("ten thirty", None, None, T(10, 30), None),
    ("tomorrow at ten oh five", D(2026, 11, 24), D(2026, 11, 24), T(10, 5), None),
    ("one forty five on friday", D(2026, 11, 27), D(2026, 11, 27), T(13, 45), None),
    ("quarter to three tomorrow", D(2026, 11, 24), D(2026, 11, 24), T(14, 45), None),
    ("quarter past nine on monday", D(2026, 11, 30), D(2026, 11, 30), T(9, 15), None),
    ("tomorrow at 3 o'clock", D(2026, 11, 24), D(2026, 11, 24), T(15), None),
    ("tomorrow at 9 in the morning", D(2026, 11, 24), D(2026, 11, 24), T(9), None),
    ("Tuesday at 14:00", D(2026, 11, 24), D(2026, 11, 24), T(14), None),
    ("2026-12-01T14:30:00", D(2026, 12, 1), D(2026, 12, 1), T(14, 30), None),
    ("2026-12-01 09:15", D(2026, 12, 1), D(2026, 12, 1), T(9, 15), None),
    ("2026-12-02", D(2026, 12, 2), D(2026, 12, 2), None, None),
    ("between 2 and 4 on wednesday", D(2026, 11, 25), D(2026, 11, 25), None, "between 2 pm and 4 pm"),
    ("after 3 tomorrow", D(2026, 11, 24), D(2026, 11, 24), None, "after 3 pm"),
    ("friday before 11", D(2026, 11, 27), D(2026, 11, 27), None, "before 11 am"),
    ("in 3 hours", D(2026, 11, 23), D(2026, 11, 23), T(12, 30), None),
    ("in half an hour", D(2026, 11, 23), D(2026, 11, 23), T(10, 0), None),
]


@pytest.mark.parametrize(("text", "first", "last", "at", "window"), CASES, ids=[c[0] for c in CASES])
def test_resolves(
    text: str, first: date | None, last: date | None, at: time | None, window: str | None
) -> None:
    r = resolve(text, MON, NY, hours)
    assert r.ok, r
    assert (r.first_day, r.last_day, r.at) == (first, last, at)
    assert (r.window.label if r.window else None) == window


def test_window_bounds() -> None:
    r = resolve("Tuesday afternoon", MON, NY, hours)
    assert r.window is not None and (r.window.start, r.window.end) == (time(12), time(17))
    assert r.describe() == "Tuesday 24 November in the afternoon"


@pytest.mark.parametrize(
    ("text", "status", "note"),
    [
        ("yesterday", Status.INVALID, "past"),
        ("today at 9", Status.INVALID, "already passed"),
        ("February 30th", Status.INVALID, "no day 30"),
        ("2026-13-01", Status.INVALID, "not a valid date"),
        ("Tuesday December 5th", Status.AMBIGUOUS, "December 5 is a Saturday"),
        ("whenever suits you", Status.UNKNOWN, "no date"),
        ("", Status.UNKNOWN, "no date"),
    ],
)
def test_unresolvable(text: str, status: Status, note: str) -> None:
    r = resolve(text, MON, NY, hours)
    assert r.status is status
    assert note in r.note


def test_next_weekday_keeps_the_nearer_reading_as_alternative() -> None:
    r = resolve("next Tuesday", MON, NY, hours)
    assert r.single_day == date(2026, 12, 1)
    assert [a.single_day for a in r.alternatives] == [date(2026, 11, 24)]
    # from Friday the coming Tuesday is already in the next week: no second reading
    fri = datetime(2026, 11, 27, 10, tzinfo=NY)
    r = resolve("next Tuesday", fri, NY, hours)
    assert r.single_day == date(2026, 12, 1) and r.alternatives == ()


def test_bare_hour_uses_business_hours() -> None:
    assert resolve("tomorrow at 10", MON, NY, hours).at == time(10)
    assert resolve("tomorrow at 4", MON, NY, hours).at == time(16)
    # open 8:00-22:00: "8" could be 8 am or 8 pm, so the caller is asked
    r = resolve("tomorrow at 8", MON, NY, hours_late)
    assert r.status is Status.AMBIGUOUS
    assert r.at == time(8) and [a.at for a in r.alternatives] == [time(20)]


def test_asap_is_a_range_marked_earliest() -> None:
    r = resolve("as soon as possible", MON, NY, hours)
    assert r.earliest and r.first_day == date(2026, 11, 23) and r.last_day == date(2026, 12, 6)


# --- month and year rollover ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("now", "text", "expected"),
    [
        (datetime(2026, 12, 30, 10, tzinfo=NY), "tomorrow", D(2026, 12, 31)),
        (datetime(2026, 12, 31, 10, tzinfo=NY), "tomorrow", D(2027, 1, 1)),
        (datetime(2026, 12, 31, 10, tzinfo=NY), "next Monday", D(2027, 1, 4)),
        (datetime(2026, 12, 28, 10, tzinfo=NY), "the 3rd", D(2027, 1, 3)),
        (datetime(2026, 12, 20, 10, tzinfo=NY), "in two weeks", D(2027, 1, 3)),
        (datetime(2027, 1, 31, 10, tzinfo=NY), "in a month", D(2027, 2, 28)),
        (datetime(2027, 1, 31, 10, tzinfo=NY), "the 31st", D(2027, 1, 31)),
        (datetime(2027, 2, 1, 10, tzinfo=NY), "the 31st", D(2027, 3, 31)),
        (datetime(2027, 3, 1, 10, tzinfo=NY), "February 29th", D(2028, 2, 29)),
        # 23:30 UTC on 30 November is still 30 November in New York
        (datetime(2026, 11, 30, 23, 30, tzinfo=UTC), "today", D(2026, 11, 30)),
        (datetime(2026, 12, 1, 4, 30, tzinfo=UTC), "tomorrow", D(2026, 12, 1)),
    ],
)
def test_rollover(now: datetime, text: str, expected: date) -> None:
    r = resolve(text, now, NY, hours)
    assert r.ok and r.single_day == expected


# --- daylight saving time ------------------------------------------------------------------
def test_dst_spring_forward_new_york() -> None:
    sat = datetime(2026, 3, 7, 12, tzinfo=NY)
    r = resolve("tomorrow at 10", sat, NY, None)
    assert r.single_day == date(2026, 3, 8) and r.at == time(10)
    assert r.start(NY).astimezone(UTC) == datetime(2026, 3, 8, 14, tzinfo=UTC)  # EDT, UTC-4
    r = resolve("today at 10 am", datetime(2026, 3, 7, 8, tzinfo=NY), NY, None)
    assert r.start(NY).astimezone(UTC) == datetime(2026, 3, 7, 15, tzinfo=UTC)  # EST, UTC-5


def test_dst_skipped_hour_is_invalid() -> None:
    sat = datetime(2026, 3, 7, 12, tzinfo=NY)
    r = resolve("tomorrow at 2:30 am", sat, NY, None)
    assert r.status is Status.INVALID and "clocks go forward" in r.note
    with pytest.raises(NonexistentTime):
        to_aware(date(2026, 3, 29), time(2, 30), BERLIN)


def test_dst_repeated_hour_takes_first_occurrence() -> None:
    aware = to_aware(date(2026, 11, 1), time(1, 30), NY)
    assert aware.astimezone(UTC) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # still EDT


def test_in_hours_counts_real_time_across_dst() -> None:
    # 00:30 EST on the spring-forward night: three real hours later is 04:30 EDT
    now = datetime(2026, 3, 8, 0, 30, tzinfo=NY)
    r = resolve("in 3 hours", now, NY, None)
    assert (r.single_day, r.at) == (date(2026, 3, 8), time(4, 30))
    # Berlin falls back on 25 October 2026: 01:00 CEST + 3 h = 03:00 CET
    now = datetime(2026, 10, 25, 1, 0, tzinfo=BERLIN)
    r = resolve("in 3 hours", now, BERLIN, None)
    assert (r.single_day, r.at) == (date(2026, 10, 25), time(3, 0))


def test_next_week_across_dst_change_berlin() -> None:
    now = datetime(2026, 3, 27, 16, tzinfo=BERLIN)  # Friday before the change
    r = resolve("monday at 9", now, BERLIN, None)
    assert r.start(BERLIN).astimezone(UTC) == datetime(2026, 3, 30, 7, tzinfo=UTC)  # CEST, UTC+2


def test_naive_now_is_refused() -> None:
    with pytest.raises(Exception, match="timezone-aware"):
        resolve("today", datetime(2026, 11, 23, 9), NY)


@pytest.mark.parametrize(
    ("spoken", "normal"),
    [
        ("Ten thirty", "10 30"),
        ("twenty-first", "21st"),
        ("two forty five P.M.", "2 45 pm"),
        ("fourteen hundred", "14:00"),
        ("3pm", "3 pm"),
        ("Thurs the 3rd", "thursday the 3rd"),
    ],
)
def test_normalise(spoken: str, normal: str) -> None:
    assert normalise(spoken) == normal


# An ordinal that counts something else is not a day of the month ("my first visit on
# Wednesday" was read as a Wednesday that is the 1st: 1 September of the next year).
@pytest.mark.parametrize(
    ("text", "day", "at"),
    [
        ("I'd like my first visit on Wednesday at three in the afternoon.", D(2026, 11, 25), T(15)),
        ("the first appointment on Friday at 10", D(2026, 11, 27), T(10)),
        ("a second cleaning on Thursday at 2 pm", D(2026, 11, 26), T(14)),
        ("Wednesday the 2nd at 10", D(2026, 12, 2), T(10)),  # a day of the month still is one
        ("on the 3rd at 10", D(2026, 12, 3), T(10)),
    ],
)
def test_an_ordinal_that_counts_a_visit_is_not_a_date(text: str, day: date, at: time) -> None:
    r = resolve(text, MON, NY, hours)
    assert r.status is Status.RESOLVED, r
    assert (r.first_day, r.last_day, r.at) == (day, day, at)


# A caller correcting themselves: what follows the correction replaces the day or time it names.
@pytest.mark.parametrize(
    ("text", "day", "at"),
    [
        ("a cleaning on Monday at nine please, sorry, I meant ten", D(2026, 11, 23), T(10)),  # today
        (
            "I need a filling on Monday at eleven. Actually no, make that one in the afternoon.",
            D(2026, 11, 23),
            T(13),
        ),
        ("Tuesday at 9, no wait, Wednesday", D(2026, 11, 25), T(9)),
        ("Friday at ten, actually make it Thursday at two pm", D(2026, 11, 26), T(14)),
        ("Sorry, could I come Friday at ten?", D(2026, 11, 27), T(10)),  # nothing before the cue
        ("Friday at ten, sorry for the trouble", D(2026, 11, 27), T(10)),  # nothing after it
    ],
)
def test_a_self_correction_replaces_what_it_names(text: str, day: date, at: time) -> None:
    r = resolve(text, MON, NY, hours)
    assert r.status is Status.RESOLVED, r
    assert (r.first_day, r.last_day, r.at) == (day, day, at)


@pytest.mark.parametrize(
    ("text", "at"),
    [
        ("Good morning, can I come in tomorrow at 3?", T(15, 0)),
        ("good afternoon, a cleaning tomorrow at 10 please", T(10, 0)),
        ("good morning, wednesday at six in the evening", T(18, 0)),
        ("Good evening. Tomorrow morning at 9, please.", T(9, 0)),
    ],
)
def test_a_greeting_names_no_part_of_the_day(text: str, at: time) -> None:
    # "good morning" was read as the morning: a booking for 3 pm went in at 3 am
    r = resolve(text, MON, NY, hours_late)
    assert r.ok, r
    assert r.at == at

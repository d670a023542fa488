"""Campaign CSV parsing and the pacer, driven by a fake clock."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from phoneagent.records.campaign import (
    CampaignPacer,
    Contact,
    Outcome,
    PacingConfig,
    parse_campaign_csv,
)
from phoneagent.runtime.errors import InvalidArgument

T0 = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


def contacts(n: int) -> list[Contact]:
    return [Contact(number=f"+1212555{i:04d}", name=f"c{i}", purpose="reminder") for i in range(n)]


CSV_TEXT = """number,name,time_zone,purpose,appointment
(212) 555-0101,Ann,America/New_York,reminder,Mon 10:00
212-555-0102,Bob,,,Tue 11:00
,Nobody,,reminder,
555-0103,Short,,reminder,
+1 415 555 0104,Cal,Mars/Base,reminder,
+1 415 555 0105,Dee,America/Los_Angeles,billing,Wed 9:00
2125550101,Ann again,,reminder,

+1 911 555 0106,Bad area,,reminder,
"""


def test_campaign_csv_keeps_good_rows_and_reports_bad_ones() -> None:
    result = parse_campaign_csv(CSV_TEXT, default_purpose="reminder")
    assert [c.number for c in result.contacts] == ["+12125550101", "+12125550102", "+14155550105"]
    ann, bob, dee = result.contacts
    assert ann.time_zone == "America/New_York" and ann.fields == {"appointment": "Mon 10:00"} and ann.row == 2
    assert bob.purpose == "reminder" and bob.time_zone is None
    assert dee.purpose == "billing"
    errors = {e.row: e.reason for e in result.errors}
    assert set(errors) == {4, 5, 6, 8, 10}
    assert "missing" in errors[4] and "10 digits" in errors[5] and "time zone" in errors[6]
    assert errors[8] == "duplicate of row 2" and "North American" in errors[10]
    # Reasons never echo the rejected number.
    assert all("555" not in reason for reason in errors.values())


def test_campaign_csv_purpose_required_without_default_and_header_required() -> None:
    result = parse_campaign_csv("number,purpose\n2125550101,\n2125550102,sales\n")
    assert [e.row for e in result.errors] == [2] and len(result.contacts) == 1
    with pytest.raises(InvalidArgument, match="number"):
        parse_campaign_csv("name,purpose\nAnn,x\n")
    with pytest.raises(InvalidArgument):
        parse_campaign_csv("")


def test_pacer_respects_max_concurrent() -> None:
    clock = FakeClock()
    pacer = CampaignPacer(contacts(5), PacingConfig(max_concurrent=2, calls_per_minute=100), clock)
    a, b = pacer.next_contact(), pacer.next_contact()
    assert a and b and a.number != b.number
    assert pacer.next_contact() is None and pacer.next_wake() is None
    pacer.report(a.number, Outcome.COMPLETED)
    c = pacer.next_contact()
    assert c is not None and c.name == "c2" and pacer.in_progress == 2


def test_pacer_rate_limit_is_a_sliding_minute() -> None:
    clock = FakeClock()
    pacer = CampaignPacer(contacts(10), PacingConfig(max_concurrent=10, calls_per_minute=3), clock)
    started = []
    for _ in range(3):
        c = pacer.next_contact()
        assert c is not None
        started.append(c)
        clock.advance(seconds=10)
    assert pacer.next_contact() is None
    assert pacer.next_wake() == T0 + timedelta(minutes=1)
    clock.advance(seconds=29)  # T0 + 59 s
    assert pacer.next_contact() is None
    clock.advance(seconds=1)  # T0 + 60 s: the first start leaves the window
    assert pacer.next_contact() is not None
    assert pacer.next_contact() is None


def test_busy_and_no_answer_retry_with_exponential_backoff_until_max_attempts() -> None:
    clock = FakeClock()
    cfg = PacingConfig(
        max_concurrent=1,
        calls_per_minute=60,
        max_attempts=4,
        retry_base=timedelta(minutes=5),
        retry_max=timedelta(minutes=15),
    )
    pacer = CampaignPacer(contacts(1), cfg, clock)
    waits = []
    for outcome in (Outcome.BUSY, Outcome.NO_ANSWER, Outcome.BUSY):
        c = pacer.next_contact()
        assert c is not None
        pacer.report(c.number, outcome)
        wake = pacer.next_wake()
        assert wake is not None
        waits.append(wake - clock.now)
        clock.now = wake - timedelta(seconds=1)
        assert pacer.next_contact() is None
        clock.now = wake
    assert waits == [timedelta(minutes=5), timedelta(minutes=10), timedelta(minutes=15)]  # capped
    c = pacer.next_contact()
    assert c is not None
    pacer.report(c.number, Outcome.NO_ANSWER)
    assert pacer.finished and pacer.next_wake() is None
    r = pacer.results()[0]
    assert r.outcome is Outcome.NO_ANSWER and r.attempts == 4 and r.reason == "max attempts reached"


def test_final_outcomes_are_not_retried_and_due_retries_keep_order() -> None:
    clock = FakeClock()
    pacer = CampaignPacer(contacts(3), PacingConfig(max_concurrent=3, calls_per_minute=60), clock)
    a, b, c = (pacer.next_contact() for _ in range(3))
    assert a and b and c
    pacer.report(a.number, Outcome.VOICEMAIL)
    pacer.report(b.number, Outcome.FAILED, "sip 503")
    pacer.report(c.number, Outcome.BUSY)
    clock.advance(minutes=5)
    again = pacer.next_contact()
    assert again is not None and again.number == c.number
    assert pacer.next_contact() is None
    pacer.report(c.number, Outcome.COMPLETED)
    assert pacer.finished
    assert [r.outcome for r in pacer.results()] == [Outcome.VOICEMAIL, Outcome.FAILED, Outcome.COMPLETED]


def test_denied_and_deferred_do_not_count_as_attempts() -> None:
    clock = FakeClock()
    pacer = CampaignPacer(contacts(2), PacingConfig(max_concurrent=1, calls_per_minute=1), clock)
    a = pacer.next_contact()
    assert a is not None
    pacer.report(a.number, Outcome.DENIED, "number is on the internal do-not-call list")
    b = pacer.next_contact()  # the denial freed both the slot and the rate budget
    assert b is not None
    pacer.defer(b.number, T0 + timedelta(hours=2), "outside calling window")
    assert pacer.next_contact() is None and pacer.next_wake() == T0 + timedelta(hours=2)
    clock.now = T0 + timedelta(hours=2)
    again = pacer.next_contact()
    assert again is not None and again.number == b.number
    pacer.report(b.number, Outcome.COMPLETED)
    denied, done = pacer.results()
    assert denied.outcome is Outcome.DENIED and denied.attempts == 0 and denied.last_attempt_at is None
    assert done.attempts == 1 and done.last_attempt_at == T0 + timedelta(hours=2)


def test_results_export_as_csv() -> None:
    clock = FakeClock()
    pacer = CampaignPacer(contacts(3), PacingConfig(max_concurrent=2, calls_per_minute=60), clock)
    a, b = pacer.next_contact(), pacer.next_contact()
    assert a and b
    pacer.report(a.number, Outcome.COMPLETED)
    pacer.report(b.number, Outcome.DENIED, "consent revoked for purpose 'reminder'")
    buf = io.StringIO()
    assert pacer.export_csv(buf) == 3
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert [r["status"] for r in rows] == ["completed", "denied", "pending"]
    assert rows[0]["last_attempt_at"] == T0.isoformat() and rows[0]["attempts"] == "1"
    assert rows[1]["reason"].startswith("consent revoked")


def test_pacer_rejects_bad_use() -> None:
    clock = FakeClock()
    with pytest.raises(InvalidArgument):
        CampaignPacer(contacts(1) + contacts(1), clock=clock)
    with pytest.raises(InvalidArgument):
        PacingConfig(max_concurrent=0)
    with pytest.raises(InvalidArgument):
        PacingConfig(retry_outcomes=frozenset({Outcome.DENIED}))
    pacer = CampaignPacer(contacts(1), clock=clock)
    with pytest.raises(InvalidArgument):
        pacer.report("+12125550000", Outcome.COMPLETED)  # not in progress
    with pytest.raises(InvalidArgument):
        CampaignPacer(contacts(1), clock=lambda: datetime(2026, 1, 1))

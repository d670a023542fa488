"""The appointment book against SQLite always, and a real PostgreSQL server when installed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from phoneagent.agents import example_agent_path
from phoneagent.agents.agent import Agent, load_agent
from phoneagent.llm.domain import migrations
from phoneagent.llm.domain.dates import resolve
from phoneagent.llm.domain.scheduling import AppointmentNotFound, SchedulingStore, SlotUnavailable
from phoneagent.runtime.db import Database

NOW = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)  # Monday 9:30 am in New York
PHONE = "+1 (555) 201-3344"


@pytest.fixture(scope="module")
def agent() -> Agent:
    return load_agent(example_agent_path())


@pytest.fixture
def store(db_url: str, agent: Agent) -> Iterator[SchedulingStore]:
    s = SchedulingStore.open(db_url, agent, clock=lambda: NOW)
    yield s
    s.db.close()


def at(agent: Agent, text: str) -> datetime:
    r = resolve(text, NOW, agent.tz, agent.hours_on)
    assert r.is_exact, r
    return r.start(agent.tz)


def test_migrations_are_idempotent(db_url: str) -> None:
    db = Database(db_url)
    assert migrations.current_version(db) == 0
    assert migrations.migrate(db) == len(migrations.steps()) == 3
    assert migrations.migrate(db) == 3
    second = Database(db_url)  # another replica starting later
    assert migrations.migrate(second) == 3
    with db.transaction() as tx:
        assert tx.query("SELECT version FROM schema_version ORDER BY version") == [(1,), (2,), (3,)]
    db.close()
    second.close()


def test_concurrent_migration(db_url: str) -> None:
    dbs = [Database(db_url) for _ in range(3)]
    results: list[int] = []
    threads = [threading.Thread(target=lambda d=d: results.append(migrations.migrate(d))) for d in dbs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == [3, 3, 3]
    for d in dbs:
        d.close()


def test_booking_resolved_requests_stores_utc_rows(store: SchedulingStore, agent: Agent) -> None:
    requests = [
        ("cleaning", "tomorrow at 10", "2026-11-24T15:00:00Z", "2026-11-24T15:45:00Z"),
        ("new patient", "next Tuesday at 2 pm", "2026-12-01T19:00:00Z", "2026-12-01T20:00:00Z"),
        ("toothache", "wednesday at half past one", "2026-11-25T18:30:00Z", "2026-11-25T19:00:00Z"),
        ("filling", "the 4th at 9", "2026-12-04T14:00:00Z", "2026-12-04T15:00:00Z"),
    ]
    for kind, text, _, _ in requests:
        store.book(kind, at(agent, text), "Dana Smith", PHONE, call_id="c1")
    with store.db.transaction() as tx:
        rows = tx.query(
            "SELECT type_id, starts_at, ends_at, phone, status FROM appointments ORDER BY starts_at"
        )
        cells = tx.query("SELECT COUNT(*) FROM appointment_cells")[0][0]
    expected = sorted((agent.find_type(k).id, s, e) for k, _, s, e in requests)  # type: ignore[union-attr]
    assert [r[:3] for r in rows] == sorted(expected, key=lambda r: r[1])
    assert {r[3] for r in rows} == {"+15552013344"} and {r[4] for r in rows} == {"booked"}
    assert cells == (45 + 60 + 30 + 60) // 5
    found = store.find_by_phone("555-201-3344")
    assert [a.start.hour for a in found] == [10, 13, 14, 9]
    assert found[0].start.tzinfo is not None and found[0].start.utcoffset() == timedelta(hours=-5)


def test_booking_after_dst_change_uses_new_offset(db_url: str, agent: Agent) -> None:
    march = datetime(2026, 3, 6, 15, tzinfo=UTC)  # Friday; clocks go forward on Sunday 8 March
    s = SchedulingStore.open(db_url, agent, clock=lambda: march)
    r = resolve("monday at 9", march, agent.tz, agent.hours_on)
    appt = s.book("cleaning", r.start(agent.tz), "Lee", PHONE)
    with s.db.transaction() as tx:
        assert tx.query("SELECT starts_at FROM appointments")[0][0] == "2026-03-09T13:00:00Z"
    assert appt.start.utcoffset() == timedelta(hours=-4)
    s.db.close()


def test_double_booking_refused(store: SchedulingStore, agent: Agent) -> None:
    store.book("cleaning", at(agent, "tomorrow at 10"), "First", PHONE)
    with pytest.raises(SlotUnavailable):
        store.book("cleaning", at(agent, "tomorrow at 10"), "Second", "+15550000002")
    with pytest.raises(SlotUnavailable):  # overlaps 10:00-10:45
        store.book("exam", at(agent, "tomorrow at 10:30"), "Third", "+15550000003")
    store.book("exam", at(agent, "tomorrow at 10:45"), "Fourth", "+15550000004")  # adjacent is fine
    starts = [s.start.strftime("%H:%M") for s in store.free_slots("cleaning", [date(2026, 11, 24)], limit=40)]
    assert "10:00" not in starts and "10:30" not in starts and "09:15" in starts and "11:45" in starts
    assert "09:30" not in starts  # 9:30-10:15 would overlap the booking


def test_simultaneous_bookings_one_wins(db_url: str, agent: Agent) -> None:
    stores = [SchedulingStore.open(db_url, agent, clock=lambda: NOW) for _ in range(4)]
    start = at(agent, "friday at 11")
    outcomes: list[str] = []
    barrier = threading.Barrier(len(stores))

    def attempt(s: SchedulingStore, n: int) -> None:
        barrier.wait(timeout=30)
        try:
            s.book("cleaning", start, f"Caller {n}", f"+1555000000{n}")
            outcomes.append("booked")
        except SlotUnavailable:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt, args=(s, n)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["booked", "refused", "refused", "refused"]
    for s in stores:
        s.db.close()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("tomorrow at 8 am", "outside opening hours"),
        ("tomorrow at 4:30 pm", "outside opening hours"),  # 45 minutes would run past 17:00
        ("tomorrow at 10:10", "not on the appointment grid"),
        ("thursday at 10", "outside opening hours"),  # Thanksgiving
        ("wednesday at 11:30", "outside opening hours"),  # lunch break from 12:00
        ("today at 10", "too soon"),  # less than 60 minutes' notice
    ],
)
def test_refused_times(store: SchedulingStore, agent: Agent, text: str, reason: str) -> None:
    with pytest.raises(SlotUnavailable, match=reason):
        store.book("cleaning", at(agent, text), "Dana", PHONE)


def test_a_booking_reference_matches_only_its_own_callers_booking(
    store: SchedulingStore, agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn = iter(["471209", "308512"])
    monkeypatch.setattr("phoneagent.llm.domain.scheduling.new_reference", lambda: next(drawn))
    a = store.book("cleaning", at(agent, "tomorrow at 10"), "Dana", PHONE)
    b = store.book("cleaning", at(agent, "tomorrow at 2 pm"), "Other", "+15550000009")
    assert (a.reference, b.reference) == ("471209", "308512")
    assert store.match_reference("555-201-3344", "471209") == [store.get(a.id)]
    assert store.match_reference(PHONE, "308512") == []  # another caller's reference
    assert store.match_reference("+15550000009", "471209") == []  # another caller's phone
    store.cancel(a.id, phone=PHONE)
    assert store.match_reference(PHONE, "471209") == []  # only upcoming bookings


def test_bookings_from_before_references_cannot_be_matched(
    db_url: str, agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(db_url)
    every = migrations.steps()
    monkeypatch.setattr(migrations, "steps", lambda: every[:2])  # the schema before booking references
    assert migrations.migrate(db) == 2
    monkeypatch.setattr(migrations, "steps", lambda: every)
    with db.transaction() as tx:
        tx.execute(
            "INSERT INTO appointments (id, agent, type_id, starts_at, ends_at, caller_name, phone, phone_key,"
            " status, created_at, updated_at) VALUES ('old1', ?, 'cleaning', '2026-11-24T15:00:00Z',"
            " '2026-11-24T15:45:00Z', 'Dana', '+15552013344', '5552013344', 'booked', '', '')",
            (agent.name,),
        )
    store = SchedulingStore.open(db_url, agent, clock=lambda: NOW)
    assert [a.id for a in store.find_by_phone(PHONE)] == ["old1"]
    assert store.match_reference(PHONE, "000000") == [] and store.match_reference(PHONE, "") == []
    store.db.close()
    db.close()


def test_move_and_cancel(store: SchedulingStore, agent: Agent) -> None:
    a = store.book("cleaning", at(agent, "tomorrow at 10"), "Dana", PHONE)
    b = store.book("cleaning", at(agent, "tomorrow at 2 pm"), "Other", "+15550000009")
    moved = store.move(a.id, at(agent, "friday at 9"), phone=PHONE)
    assert moved.start == at(agent, "friday at 9") and moved.end - moved.start == timedelta(minutes=45)
    assert any(
        s.start == at(agent, "tomorrow at 10") for s in store.free_slots("cleaning", [date(2026, 11, 24)])
    )
    with pytest.raises(SlotUnavailable):  # onto someone else's booking: refused, nothing changes
        store.move(a.id, at(agent, "tomorrow at 2:15 pm"), phone=PHONE)
    assert store.get(a.id).start == at(agent, "friday at 9")
    with pytest.raises(AppointmentNotFound):  # another caller's appointment
        store.cancel(b.id, phone=PHONE)
    cancelled = store.cancel(a.id, phone=PHONE)
    assert cancelled.status == "cancelled"
    assert store.find_by_phone(PHONE) == []
    with pytest.raises(AppointmentNotFound):
        store.cancel(a.id, phone=PHONE)
    store.book("exam", at(agent, "friday at 9"), "Next", "+15550000010")  # the slot is free again


def test_messages(store: SchedulingStore) -> None:
    store.take_message("Dana", PHONE, "Please call me about my bill", urgent=True, call_id="c9")
    store.take_message("Sam", "+15550001111", "Question about whitening")
    msgs = store.messages()
    assert {(m.caller_name, m.urgent) for m in msgs} == {("Dana", True), ("Sam", False)}
    assert {m.phone for m in msgs} == {"+15552013344", "+15550001111"}


def test_bad_input_is_a_clear_error(store: SchedulingStore, agent: Agent) -> None:
    with pytest.raises(Exception, match="unknown appointment type; offered: Cleaning"):
        store.free_slots("root canal", [date(2026, 11, 24)])
    with pytest.raises(Exception, match="7 to 15 digits"):
        store.book("cleaning", at(agent, "tomorrow at 10"), "Dana", "12")
    with pytest.raises(Exception, match="timezone-aware"):
        store.book("cleaning", datetime(2026, 11, 24, 10), "Dana", PHONE)

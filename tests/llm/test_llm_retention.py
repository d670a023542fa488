"""Appointments and messages are deleted once past their retention (SQLite always, PostgreSQL
when installed): an appointment that ended more than the setting's days ago goes with its
occupancy cells (its time can be booked again), a newer one and the newer messages stay, and 0
keeps a kind forever. The LLM service runs the purge as an owned periodic task."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from phoneagent.agents import example_agent_path
from phoneagent.agents.agent import Agent, load_agent
from phoneagent.llm.domain.dates import resolve
from phoneagent.llm.domain.scheduling import AppointmentNotFound, SchedulingStore
from phoneagent.llm.service import LlmService
from phoneagent.llm.settings import LlmSettings
from phoneagent.runtime.settings import CommonSettings, load
from support.common import wait_for

BOOKED_ON = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)  # Monday 9:30 am in New York
PHONE = "+1 (555) 201-3344"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def agent() -> Agent:
    return load_agent(example_agent_path())


def at(agent: Agent, text: str) -> datetime:
    r = resolve(text, BOOKED_ON, agent.tz, agent.hours_on)
    assert r.is_exact, r
    return r.start(agent.tz)


def test_appointments_and_messages_past_retention_are_deleted(db_url: str, agent: Agent) -> None:
    clock = Clock(BOOKED_ON)
    store = SchedulingStore.open(db_url, agent, clock=clock)
    try:
        early = store.book("cleaning", at(agent, "tomorrow at 10"), "Ann Lee", PHONE)
        late = store.book("cleaning", at(agent, "next friday at 2 pm"), "Bob Ray", PHONE)
        old_note = store.take_message("Ann Lee", PHONE, "please call me back about the bill")
        clock.now = early.end.astimezone(UTC) + timedelta(days=30, hours=1)
        new_note = store.take_message("Cy Day", PHONE, "my crown came off")

        assert store.purge(0, 0) == (0, 0)  # 0 keeps everything
        # 30 days after the early appointment ended; the late one ended less than 30 days ago.
        assert store.purge(30, 30) == (1, 1)
        with pytest.raises(AppointmentNotFound):
            store.get(early.id)
        assert store.get(late.id).caller_name == "Bob Ray"
        assert [m.id for m in store.messages()] == [new_note.id] and old_note.id != new_note.id
        with store.db.transaction() as tx:  # the early appointment's cells went with it
            cells = tx.query("SELECT appointment_id FROM appointment_cells")
        assert {c[0] for c in cells} == {late.id}
        assert store.purge(30, 30) == (0, 0)  # nothing more to delete
    finally:
        store.db.close()


async def test_the_llm_service_purges_on_its_own(tmp_path: Path, agent: Agent) -> None:
    clock = Clock(BOOKED_ON)
    store = SchedulingStore.open(f"sqlite:///{tmp_path / 'a.db'}", agent, clock=clock)
    store.take_message("Ann Lee", PHONE, "call me back")
    clock.now = BOOKED_ON + timedelta(days=2)
    settings = load(LlmSettings, {"PA_MESSAGE_RETENTION_DAYS": "1", "PA_RETENTION_PURGE_EVERY_S": "0.05"})
    svc = LlmService(load(CommonSettings, {}), settings)
    svc.store = store
    task = asyncio.create_task(svc._retention_loop())
    try:
        await wait_for(lambda: not store.messages(), timeout=10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        store.db.close()
    assert load(LlmSettings, {}).appointment_retention_days == 365.0

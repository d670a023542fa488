"""A database that stalls during a turn: the appointment book is locked by another connection
(a SQLite write lock; a PostgreSQL table lock) while the model asks for free slots. The caller
hears the filler at once and then an apology in words, within the tool deadline, and the
replica's session heartbeats keep going meanwhile (the query waits in a worker thread, not on the
event loop). Once the lock is gone the next question is answered from the book."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from phoneagent.agents.agent import Agent
from phoneagent.llm.dialog_state import DialogConfig
from phoneagent.llm.domain.scheduling import SchedulingStore
from phoneagent.llm.domain.tools import UNAVAILABLE, ToolExecutor
from phoneagent.llm.service import LlmCallSession, db_timeout
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Delivery, Lane
from phoneagent.runtime.sessions import SessionHost
from phoneagent.v1 import session_pb2
from support.call_probe import CallProbe
from support.common import quiet_session, wait_for
from support.llm import LlmStageStub, ScriptEngine

CHECK = (
    '<tool_call>{"name": "check_availability", "arguments": '
    '{"appointment_type": "cleaning", "when": "next Tuesday morning"}}</tool_call>'
)
BOOK_NOW = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)  # Monday 9:30 am in New York
TOOL_TIMEOUT_S = 1.5
FILLER_AFTER_S = 0.3
HEARTBEAT_S = 0.1


class Heartbeats:
    """When this replica's session heartbeats arrived (monotonic seconds)."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    async def on_beat(self, hb: session_pb2.Heartbeat, _: Delivery) -> None:
        if hb.replica_id == "llm-stall-t":
            self.seen.append(time.monotonic())

    def longest_gap(self, start: float, end: float) -> float:
        beats = [start, *(t for t in self.seen if start <= t <= end), end]
        return max(b - a for a, b in zip(beats, beats[1:], strict=False))


@pytest.fixture
async def host(js_bus: Bus) -> AsyncIterator[tuple[SessionHost, Heartbeats]]:
    """A session host of the same process and event loop as the dialog, beating every 0.1 s."""
    beats = Heartbeats()
    await js_bus.subscribe(
        subjects.session_heartbeat("llm"), session_pb2.Heartbeat, beats.on_beat, lane=Lane.CONTROL
    )
    h = SessionHost(js_bus, "llm", "llm-stall-t", quiet_session, heartbeat_s=HEARTBEAT_S, dead_after_s=0.5)
    await h.start()
    yield h, beats
    await h.close()


async def talk_through_a_stall(
    bus: Bus, beats: Heartbeats, store: SchedulingStore, agent: Agent, lock: Callable[[], Any]
) -> None:
    engine = ScriptEngine([[CHECK], [CHECK]])
    stage = LlmStageStub(bus, engine, "llm-stall-t")
    stage.executor = ToolExecutor(agent, store, None, clock=lambda: BOOK_NOW, timeout_s=TOOL_TIMEOUT_S)
    stage.dialog_config = DialogConfig(filler_after_s=FILLER_AFTER_S)
    call = CallProbe(bus)
    await call.listen()
    session = LlmCallSession(stage, call.claim(), False)  # type: ignore[arg-type]
    await session.start()
    try:
        with lock():
            asked = time.monotonic()
            await call.transcript(1, "Can I come in for a cleaning next Tuesday morning?")
            await wait_for(lambda: call.finished(1), timeout=TOOL_TIMEOUT_S + 3)
            answered = time.monotonic()
            said = [r.text for r in call.replies if r.meta.generation_id == 1 and r.text]
            assert said[0] == stage.dialog_config.filler_text, said
            assert " ".join(said[1:]) == UNAVAILABLE, said
            # The apology came within the tool's deadline (and a little scheduling).
            assert answered - asked < TOOL_TIMEOUT_S + 1.0
            # Heartbeats went on at their pace the whole time the book was locked.
            assert beats.longest_gap(asked, answered) < 4 * HEARTBEAT_S, beats.seen
        # The lock is gone: the same question is answered from the book.
        await call.transcript(2, "Can I come in for a cleaning next Tuesday morning?")
        await wait_for(lambda: call.finished(2), timeout=TOOL_TIMEOUT_S + 3)
        assert "For cleaning I can offer Tuesday 1 December at 9 am" in call.spoken(2)
    finally:
        await session.close("test")


async def test_a_locked_sqlite_book_gets_an_apology_and_heartbeats_go_on(
    js_bus: Bus, host: tuple[SessionHost, Heartbeats], agent: Agent, tmp_path: Path
) -> None:
    path = tmp_path / "book.db"
    store = SchedulingStore.open(
        f"sqlite:///{path}", agent, clock=lambda: BOOK_NOW, timeout_s=db_timeout(TOOL_TIMEOUT_S)
    )

    @contextmanager
    def write_lock() -> Iterator[None]:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another writer holds the database
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()

    try:
        await talk_through_a_stall(js_bus, host[1], store, agent, write_lock)
    finally:
        store.db.close()


async def test_a_locked_postgresql_book_gets_an_apology_and_heartbeats_go_on(
    js_bus: Bus, host: tuple[SessionHost, Heartbeats], agent: Agent, pg_server: str
) -> None:
    import psycopg
    from support.postgres import new_database

    url = new_database(pg_server)
    store = SchedulingStore.open(url, agent, clock=lambda: BOOK_NOW, timeout_s=db_timeout(TOOL_TIMEOUT_S))

    @contextmanager
    def table_lock() -> Iterator[None]:
        with psycopg.connect(url) as other:  # a transaction holding the table until it ends
            other.execute("LOCK TABLE appointments, appointment_cells IN ACCESS EXCLUSIVE MODE")
            try:
                yield
            finally:
                other.rollback()

    try:
        await talk_through_a_stall(js_bus, host[1], store, agent, table_lock)
    finally:
        await asyncio.to_thread(store.db.close)


def test_a_database_statement_gives_up_at_its_timeout(agent: Agent, tmp_path: Path) -> None:
    """The handle's own deadline: a locked SQLite book answers Unavailable after the timeout, and
    nothing the stalled transaction meant to write is left behind."""
    from phoneagent.runtime.errors import Unavailable

    path = tmp_path / "book.db"
    store = SchedulingStore.open(f"sqlite:///{path}", agent, clock=lambda: BOOK_NOW, timeout_s=0.3)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable):
            store.free_slots("cleaning", [BOOK_NOW.date()], None, limit=3)
        assert 0.25 <= time.monotonic() - started < 2.0
    finally:
        other.execute("ROLLBACK")
        other.close()
        store.db.close()

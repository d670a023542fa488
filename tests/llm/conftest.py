"""Fixtures the LLM tests share: the example agent, a fresh SQLite appointment book whose clock is
fixed at Monday 23 November 2026, 9:30 am in New York, an appointment database URL for each
backend (SQLite and a real PostgreSQL), and the vLLM stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from phoneagent.agents import example_agent_path
from phoneagent.agents.agent import Agent, load_agent
from phoneagent.llm.domain.scheduling import SchedulingStore
from support.postgres import new_database
from support.vllm_standin import install

BOOK_NOW = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)  # Monday 9:30 am in New York


@pytest.fixture
def agent() -> Agent:
    return load_agent(example_agent_path())


@pytest.fixture
def store(agent: Agent, tmp_path: Path) -> Iterator[SchedulingStore]:
    s = SchedulingStore.open(f"sqlite:///{tmp_path / 'book.db'}", agent, clock=lambda: BOOK_NOW)
    yield s
    s.db.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty appointment database: a SQLite file, or a fresh database on the test PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'appointments.db'}"
    return new_database(request.getfixturevalue("pg_server"))


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``vllm`` modules replaced by stand-ins (see vllm_standin): no GPU or vllm needed."""
    install(monkeypatch)

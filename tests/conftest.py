"""Shared fixtures: a real nats-server per test session on a free loopback port."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "services"))

from phoneagent.runtime.bus import Bus  # noqa: E402
from phoneagent.runtime.natsserver import NatsServer  # noqa: E402


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A PostgreSQL server for the whole session (skips when not installed)."""
    from pa_postgres import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def nats_url(nats_server: NatsServer) -> str:
    return nats_server.url


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    b = Bus("test")
    await b.connect(nats_url)
    yield b
    await b.close()


@pytest.fixture
def service_env(nats_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for a service subprocess talking to the test nats-server."""
    env = dict(os.environ)
    env.update(
        {
            "PA_NATS_URL": nats_url,
            "PA_LOG_FORMAT": "text",
            "PA_HTTP_PORT": "0",
            "PYTHONPATH": str(ROOT / "services") + os.pathsep + env.get("PYTHONPATH", ""),
            "PA_MODEL_DIR": env.get("PA_MODEL_DIR", str(Path.home() / ".cache" / "phone-agent" / "models")),
        }
    )
    return env


@pytest.fixture
def fresh_nats(tmp_path: Path) -> Iterator[str]:
    """A nats-server of the test's own: for tests whose state must not leak (session records)."""
    server = NatsServer(tmp_path / "nats")
    yield server.start()
    server.stop()


@pytest.fixture
async def js_bus(fresh_nats: str) -> AsyncIterator[Bus]:
    """A bus on the test's own nats-server, with the project's JetStream streams created."""
    from phoneagent.runtime import streams

    b = Bus("js-test")
    await b.connect(fresh_nats)
    await streams.ensure(b.jetstream())
    yield b
    await b.close()

"""The records worker's consumers survive failing messages and report when they die.

A real nats-server with the project's streams and the real SQLite record store; the store
is wrapped only to inject failures for chosen calls.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from phoneagent.records.store import RecordStore
from phoneagent.records.worker import RecordsSettings, RecordsWorker
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Lane
from phoneagent.runtime.errors import ErrorKind, PhoneAgentError
from phoneagent.runtime.service import Service
from phoneagent.runtime.settings import CommonSettings, load
from phoneagent.v1 import call_pb2, common_pb2
from support.common import wait_for


class FailingStore(RecordStore):
    """The real store, except that ``fail[call_id]`` failures are raised first for a call."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.fail: dict[str, tuple[int, Exception]] = {}
        self.attempts: dict[str, int] = {}

    def update(self, call_id: str, change: Any) -> Any:
        self.attempts[call_id] = self.attempts.get(call_id, 0) + 1
        left, exc = self.fail.get(call_id, (0, RuntimeError()))
        if left:
            self.fail[call_id] = (left - 1, exc)
            raise exc
        return super().update(call_id, change)


def started(call_id: str) -> call_pb2.CallEvent:
    return call_pb2.CallEvent(
        started=call_pb2.CallStarted(
            meta=common_pb2.EventMeta(call_id=call_id, ts_unix_ns=time.time_ns()),
            direction=call_pb2.DIRECTION_INBOUND,
        )
    )


async def stored(store: RecordStore, call_id: str) -> bool:
    return await asyncio.to_thread(store.get, call_id) is not None


async def test_a_poison_message_is_given_up_on_and_the_consumer_keeps_serving(
    js_bus: Bus, tmp_path: Path
) -> None:
    store = FailingStore(str(tmp_path / "records.sqlite3"))
    store.fail["poison"] = (10_000, RuntimeError("bug in a builder"))  # never succeeds
    store.fail["flaky"] = (2, RuntimeError("one-off failure"))  # succeeds on the third delivery
    store.fail["dbaway"] = (6, PhoneAgentError(ErrorKind.UNAVAILABLE, "database away"))  # retryable
    worker = RecordsWorker(js_bus.jetstream(), store, RecordsSettings(db=str(tmp_path / "r.sqlite3")))
    worker.nak_delay_s, worker.max_deliveries = 0.05, 3
    await worker.start()
    try:
        for call in ("poison", "flaky", "dbaway", "healthy"):
            await js_bus.publish(subjects.lifecycle(call), started(call), lane=Lane.CONTROL)
        for call in ("flaky", "healthy"):
            assert await wait_for_stored(store, call)
        # More than max_deliveries attempts: retryable errors are retried until they succeed.
        assert await wait_for_stored(store, "dbaway")
        assert store.attempts["dbaway"] == 7
        await wait_for(lambda: worker.terminated == 1, timeout=20)
        assert store.attempts["poison"] == 3  # delivered max_deliveries times, then terminated
        assert worker.healthy
        # The consumer still serves after all that.
        await js_bus.publish(subjects.lifecycle("after"), started("after"), lane=Lane.CONTROL)
        assert await wait_for_stored(store, "after")
        await asyncio.sleep(0.5)
        assert store.attempts["poison"] == 3  # not redelivered after the term
    finally:
        await worker.stop()
        store.close()


async def wait_for_stored(store: RecordStore, call_id: str, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await stored(store, call_id):
            return True
        await asyncio.sleep(0.05)
    raise AssertionError(f"record {call_id} not stored within {timeout}s")


async def test_readiness_turns_false_when_a_records_consumer_dies(js_bus: Bus, tmp_path: Path) -> None:
    store = RecordStore(str(tmp_path / "records.sqlite3"))
    worker = RecordsWorker(js_bus.jetstream(), store, RecordsSettings(db=str(tmp_path / "r.sqlite3")))
    await worker.start()
    svc = Service(load(CommonSettings, {}))
    svc.bus = js_bus
    svc._engine_ready = True
    svc.add_health_check("records", lambda: worker.healthy)
    try:
        assert svc.ready and svc._status()["failing"] == []
        worker._consumers[0].cancel()  # a consumer ends, whatever the reason
        await asyncio.gather(worker._consumers[0], return_exceptions=True)
        assert not worker.healthy
        assert not svc.ready and svc._status()["failing"] == ["records"]
    finally:
        await worker.stop()
        store.close()

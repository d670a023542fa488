"""Bus start-up, loss and return of NATS, and graceful drain, against real nats-server processes."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from pathlib import Path

import pytest
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Delivery
from phoneagent.runtime.errors import Unavailable
from phoneagent.runtime.natsserver import NatsServer
from phoneagent.runtime.sessions import claim_session
from phoneagent.runtime.stack import readyz
from phoneagent.v1 import call_pb2, common_pb2, media_pb2
from support.common import spawn_replica, wait_for

HERE = Path(__file__).resolve().parent
REPLICA_CMD = [str(HERE / "replica_main.py")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def frame(call_id: str, seq: int) -> media_pb2.AudioFrame:
    return media_pb2.AudioFrame(meta=common_pb2.EventMeta(call_id=call_id), sequence=seq, sample_rate=16000)


def started(call_id: str) -> call_pb2.CallStarted:
    return call_pb2.CallStarted(meta=common_pb2.EventMeta(call_id=call_id))


async def test_drain_hands_every_queued_message_to_the_handler(nats_url: str) -> None:
    consumer, producer = Bus("drain-consumer"), Bus("drain-producer")
    await consumer.connect(nats_url)
    await producer.connect(nats_url)
    handled: list[int] = []

    async def slow(msg: media_pb2.AudioFrame, d: Delivery) -> None:
        await asyncio.sleep(0.01)
        handled.append(msg.sequence)

    try:
        sub = await consumer.subscribe(subjects.audio_in("drain"), media_pb2.AudioFrame, slow)
        for i in range(40):
            await producer.publish(subjects.audio_in("drain"), frame("drain", i))
        await wait_for(lambda: sub.received == 40)
        assert len(handled) < 40  # most are still queued when the drain starts
        await consumer.drain(timeout=5.0)
        assert handled == list(range(40))
    finally:
        await producer.close()
        await consumer.close()


async def test_drain_gives_up_on_a_stuck_handler_at_its_timeout(nats_url: str) -> None:
    b = Bus("drain-stuck")
    await b.connect(nats_url)

    async def stuck(msg: media_pb2.AudioFrame, d: Delivery) -> None:
        await asyncio.sleep(3600)

    sub = await b.subscribe(subjects.audio_in("stuck"), media_pb2.AudioFrame, stuck)
    await b.publish(subjects.audio_in("stuck"), frame("stuck", 1))
    await b.publish(subjects.audio_in("stuck"), frame("stuck", 2))
    await wait_for(lambda: sub.received == 2)
    t0 = time.monotonic()
    await b.drain(timeout=0.5)
    assert time.monotonic() - t0 < 3.0
    assert not b.connected


async def test_first_connect_waits_for_a_late_server_then_gives_up_at_its_deadline(tmp_path: Path) -> None:
    port = free_port()
    server = NatsServer(tmp_path / "late", port=port)
    b = Bus("late")
    connecting = asyncio.create_task(b.connect(f"nats://127.0.0.1:{port}", connect_deadline=20))
    try:
        await asyncio.sleep(1.0)
        assert not connecting.done()  # no server yet: still retrying, not failed
        await asyncio.to_thread(server.start)
        await asyncio.wait_for(connecting, 15)
        assert b.connected
    finally:
        connecting.cancel()
        await b.close()
        server.stop()
    nobody = Bus("nobody")
    t0 = time.monotonic()
    with pytest.raises(Unavailable):
        await nobody.connect(f"nats://127.0.0.1:{free_port()}", connect_deadline=1.0)
    assert time.monotonic() - t0 < 5.0


async def test_a_service_waits_for_nats_and_survives_a_nats_restart(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    """Not ready before NATS is up and while it is down; ready again, and claims work, after."""
    nats_port, http_port = free_port(), free_port()
    url = f"nats://127.0.0.1:{nats_port}"
    server = NatsServer(tmp_path / "nats", port=nats_port)
    proc, _ = spawn_replica(
        REPLICA_CMD,
        service_env,
        url,
        "reconnect-a",
        tmp_path,
        PA_HTTP_PORT=str(http_port),
        PA_NATS_CONNECT_DEADLINE_S="60",
    )
    bus = Bus("reconnect-test")

    def answer() -> dict[str, object]:
        assert proc.poll() is None, f"service exited with {proc.returncode}"
        return readyz(http_port)

    try:
        # Started before NATS: it answers /readyz (not ready) instead of exiting.
        state = await wait_for(lambda: answer().get("service") and answer(), timeout=60, interval=0.1)
        assert state["ready"] is False
        await asyncio.to_thread(server.start)
        await wait_for(lambda: answer().get("ready"), timeout=30, interval=0.1)
        await bus.connect(url)
        assert (await claim_session(bus, "asr", started("rc-1"))).replica_id == "reconnect-a"

        server.stop()
        await wait_for(
            lambda: answer().get("service") and not answer().get("ready"), timeout=30, interval=0.1
        )
        await asyncio.to_thread(server.start)  # same port and data directory
        await wait_for(lambda: answer().get("ready"), timeout=30, interval=0.1)
        await wait_for(lambda: bus.connected, timeout=15)
        assert (await claim_session(bus, "asr", started("rc-2"))).replica_id == "reconnect-a"
        again = await claim_session(bus, "asr", started("rc-1"))  # ownership survived in JetStream
        assert again.existing and again.replica_id == "reconnect-a"
    finally:
        await bus.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        finally:
            server.stop()

"""After a NATS outage longer than ``dead_after_s`` every replica's view of its peers is stale:
the heartbeats sent while the bus was down never arrived. A replica must not take a live
peer's calls on that stale view the moment the bus is back (the call would have two owners
answering at once); it waits ``adopt_grace_s``, hears the peer again, and leaves its call alone.
A peer that stays silent after the grace is still taken over."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from phoneagent.runtime import streams, subjects
from phoneagent.runtime.bus import Bus
from phoneagent.runtime.natsserver import NatsServer, free_port
from phoneagent.runtime.sessions import SessionHost, claim_session
from phoneagent.v1 import call_pb2, common_pb2, session_pb2
from support.common import quiet_session, wait_for

DEAD_AFTER_S = 1.0
OUTAGE_S = 2.5  # longer than DEAD_AFTER_S: every heartbeat heard before it is stale after it


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    """A server on a fixed port, so that it can be stopped and started again at the same URL."""
    s = NatsServer(tmp_path / "nats", port=free_port())
    s.start()
    yield s
    s.stop()


@pytest.fixture
async def buses(server: NatsServer) -> AsyncIterator[tuple[Bus, Bus, Bus]]:
    opened = [Bus(name) for name in ("owner", "peer", "edge")]
    for b in opened:
        await b.connect(server.url)
    await streams.ensure(opened[0].jetstream())
    yield opened[0], opened[1], opened[2]
    for b in opened:
        await b.close()


def started(call_id: str) -> call_pb2.CallStarted:
    return call_pb2.CallStarted(
        meta=common_pb2.EventMeta(call_id=call_id), direction=call_pb2.DIRECTION_INBOUND
    )


async def owner_of(bus: Bus, call_id: str) -> str:
    kv = await streams.sessions_kv(bus.jetstream(), "asr")
    record = session_pb2.SessionRecord()
    record.ParseFromString((await kv.get(call_id)).value or b"")
    return record.replica_id


async def outage(server: NatsServer, buses: tuple[Bus, ...]) -> None:
    server.stop()
    await wait_for(lambda: not any(b.connected for b in buses), timeout=10)
    await asyncio.sleep(OUTAGE_S)  # the outage itself: long enough for every peer to look dead
    server.start()
    await wait_for(lambda: all(b.connected for b in buses), timeout=20)


def host(bus: Bus, name: str, heartbeat_s: float, grace_s: float | None = None) -> SessionHost:
    return SessionHost(
        bus,
        "asr",
        name,
        quiet_session,
        heartbeat_s=heartbeat_s,
        dead_after_s=DEAD_AFTER_S,
        adopt_grace_s=grace_s,
    )


async def own_a_call(edge: Bus, owner: SessionHost, peer: SessionHost) -> str:
    """A call claimed by ``owner`` (the peer answers no claims until it starts), both running."""
    await owner.start()
    call_id = subjects.new_call_id()
    assert (await claim_session(edge, "asr", started(call_id))).replica_id == owner.replica_id
    await peer.start()
    await wait_for(lambda: owner.replica_id in peer.live_replicas(), timeout=5)
    return call_id


async def silence(owner: SessionHost) -> None:
    """The owner stops beating without giving its calls up, as a crashed replica would."""
    await owner._tasks.close(timeout=2.0)


async def test_after_an_outage_a_live_peer_keeps_its_call_and_a_dead_one_loses_it(
    server: NatsServer, buses: tuple[Bus, Bus, Bus]
) -> None:
    owner_bus, peer_bus, edge = buses
    # The owner beats slowly, the peer looks for orphans every 0.1 s.
    owner, peer = host(owner_bus, "owner", 0.4), host(peer_bus, "peer", 0.1)
    try:
        call_id = await own_a_call(edge, owner, peer)
        await outage(server, buses)
        back = time.monotonic()
        # Three grace periods: time enough for the peer to take the call had it wanted to.
        with pytest.raises(AssertionError):
            await wait_for(lambda: call_id in peer.sessions, timeout=3 * DEAD_AFTER_S)
        assert call_id in owner.sessions and await owner_of(edge, call_id) == "owner"
        # An owner that stays silent after the bus is back is still taken over.
        await silence(owner)
        await wait_for(lambda: call_id in peer.sessions, timeout=3 * DEAD_AFTER_S)
        assert await owner_of(edge, call_id) == "peer"
        assert time.monotonic() - back >= 3 * DEAD_AFTER_S
    finally:
        await peer.close()
        await owner.close()


async def test_a_replica_that_just_reconnected_waits_its_grace_before_adopting(
    buses: tuple[Bus, Bus, Bus],
) -> None:
    """The peer's bus comes back (its reconnect time is now) while the owner is already dead:
    the call is taken over only once the grace has passed, not at the first look."""
    owner_bus, peer_bus, edge = buses
    grace = 2.0
    owner, peer = host(owner_bus, "owner", 0.1), host(peer_bus, "peer", 0.1, grace_s=grace)
    try:
        call_id = await own_a_call(edge, owner, peer)
        await silence(owner)
        await wait_for(lambda: "owner" not in peer.live_replicas(), timeout=5)
        peer_bus.connected_at = reconnected = time.monotonic()  # what nats-py's reconnect callback sets
        await wait_for(lambda: call_id in peer.sessions, timeout=grace + 3)
        assert time.monotonic() - reconnected >= grace
        assert await owner_of(edge, call_id) == "peer"
    finally:
        await peer.close()
        await owner.close()

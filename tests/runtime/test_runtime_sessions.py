"""Session claims, heartbeats and reassignment with real replica processes."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Delivery, Lane
from phoneagent.runtime.sessions import claim_session
from phoneagent.runtime.settings import CommonSettings, load
from phoneagent.v1 import call_pb2, common_pb2, control_pb2, session_pb2
from support.common import spawn_replica, wait_for, wait_replica_ready

HERE = Path(__file__).resolve().parent
REPLICA_CMD = [str(HERE / "replica_main.py")]
_DEFAULTS = load(CommonSettings, {})
DEFAULT_HEARTBEAT = {
    "PA_HEARTBEAT_S": str(_DEFAULTS.heartbeat_s),
    "PA_DEAD_AFTER_S": str(_DEFAULTS.dead_after_s),
}


def started(call_id: str) -> call_pb2.CallStarted:
    return call_pb2.CallStarted(
        meta=common_pb2.EventMeta(call_id=call_id), direction=call_pb2.DIRECTION_INBOUND
    )


async def test_claims_are_spread_and_a_killed_replica_loses_its_calls_to_a_live_one(
    fresh_nats: str, service_env: dict[str, str], tmp_path: Path
) -> None:
    procs = {}
    for r in ("rep-a", "rep-b"):  # the shipped heartbeat settings: this measures what users get
        procs[r] = spawn_replica(REPLICA_CMD, service_env, fresh_nats, r, tmp_path, **DEFAULT_HEARTBEAT)
    bus = Bus("edge-test")
    await bus.connect(fresh_nats)
    announced: list[session_pb2.SessionAssigned] = []
    pongs: dict[str, list[str]] = {}

    async def on_announce(m: session_pb2.SessionAssigned, d: Delivery) -> None:
        announced.append(m)

    async def on_ctl(m: control_pb2.ControlEvent, d: Delivery) -> None:
        if m.dtmf.outbound:
            pongs.setdefault(m.meta.call_id, []).append(m.meta.producer)

    try:
        for p, st in procs.values():
            await wait_replica_ready(st, p)
        await bus.subscribe("test.session.started", session_pb2.SessionAssigned, on_announce)
        # The queue group picks a member at random: with 8 claims, all went to one of the two
        # replicas in 2 of 256 runs (seen once in CI); with 16, in 2 of 65,536.
        calls = [f"call-{i}" for i in range(16)]
        owners: dict[str, str] = {}
        for c in calls:
            await bus.subscribe(subjects.control(c), control_pb2.ControlEvent, on_ctl, lane=Lane.CONTROL)
            assigned = await claim_session(bus, "asr", started(c))
            owners[c] = assigned.replica_id
            again = await claim_session(bus, "asr", started(c))  # idempotent: same owner, flagged existing
            assert again.replica_id == owners[c] and again.existing
        assert set(owners.values()) == {"rep-a", "rep-b"}, "queue group should spread claims"

        async def ping(c: str) -> str:
            pongs.pop(c, None)
            await bus.publish(
                subjects.control(c),
                control_pb2.ControlEvent(
                    meta=common_pb2.EventMeta(call_id=c), dtmf=control_pb2.Dtmf(digit="1")
                ),
                lane=Lane.CONTROL,
            )
            got = await wait_for(lambda: pongs.get(c), timeout=3)
            return got[0]

        for c in calls:
            assert await ping(c) == owners[c]

        victim = "rep-a"
        killed_at = time.monotonic()
        os.kill(procs[victim][0].pid, signal.SIGKILL)
        moved = [c for c in calls if owners[c] == victim]
        await wait_for(lambda: {m.call_id for m in announced if m.existing} >= set(moved), timeout=6)
        took = time.monotonic() - killed_at
        print(f"reassignment after SIGKILL: {took:.2f} s")
        # ~2 s by design: dead after 1.5 s, noticed within a heartbeat (0.5 s), a takeover race
        # of up to 1/4 heartbeat. Measured 1.19-1.86 s (median 1.73) over 8 kills under load.
        assert took < 2.5, f"reassignment took {took:.2f}s"
        for c in calls:  # every call answers again, all from the survivor
            assert await ping(c) == "rep-b"

        # A call that ends is closed and its record removed: a new claim starts afresh.
        ended = call_pb2.CallEvent(ended=call_pb2.CallEnded(meta=common_pb2.EventMeta(call_id=calls[0])))
        await bus.publish(subjects.lifecycle(calls[0]), ended, lane=Lane.CONTROL)
        await asyncio.sleep(0.3)
        again = await claim_session(bus, "asr", started(calls[0]))
        assert not again.existing
    finally:
        await bus.close()
        for p, _ in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p, _ in procs.values():
            p.wait(15)


async def test_graceful_drain_hands_sessions_over_and_exits_cleanly(
    fresh_nats: str, service_env: dict[str, str], tmp_path: Path
) -> None:
    pa, sa = spawn_replica(REPLICA_CMD, service_env, fresh_nats, "drain-a", tmp_path)
    bus = Bus("edge-test")
    await bus.connect(fresh_nats)
    announced: list[session_pb2.SessionAssigned] = []

    async def on_announce(m: session_pb2.SessionAssigned, d: Delivery) -> None:
        announced.append(m)

    pb = None
    try:
        await wait_replica_ready(sa, pa)
        await bus.subscribe("test.session.started", session_pb2.SessionAssigned, on_announce)
        for i in range(3):
            assert (await claim_session(bus, "asr", started(f"d-{i}"))).replica_id == "drain-a"
        pb, sb = spawn_replica(REPLICA_CMD, service_env, fresh_nats, "drain-b", tmp_path)
        await wait_replica_ready(sb, pb)
        pa.send_signal(signal.SIGTERM)
        assert pa.wait(15) == 0
        await wait_for(lambda: sum(1 for m in announced if m.existing and m.replica_id == "drain-b") == 3, 6)
    finally:
        await bus.close()
        for p in (pa, pb):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(15)


def _children_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            alive.append(pid)
        except ProcessLookupError:
            pass
    return alive

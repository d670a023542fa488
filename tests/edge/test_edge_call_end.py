"""Ending a call twice at once (a drain's hang-up racing the caller's BYE or the page's hang-up):
CallEnded is published once, and the second end() returns only after it was published and the
call released, so a drain that waits on it knows every call is over on the bus."""

from __future__ import annotations

import asyncio
from typing import Any

from phoneagent.edge.callflow import EdgeCall, EdgeCallConfig
from phoneagent.runtime.bus import Bus
from phoneagent.v1 import call_pb2, common_pb2
from support.edge import SilentLine


class SlowBus:
    """The bus as seen by a loaded replica: each publish takes 0.3 s to go out."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.published: list[Any] = []

    async def publish(self, subject: str, msg: Any, **kw: Any) -> None:
        await asyncio.sleep(0.3)
        self.published.append(msg)
        await self.bus.publish(subject, msg, **kw)

    async def unsubscribe(self, sub: Any) -> None:
        await self.bus.unsubscribe(sub)


async def test_a_second_end_waits_for_the_first_to_publish_and_release(bus: Bus) -> None:
    started = call_pb2.CallStarted(meta=common_pb2.EventMeta(call_id="edge-end-twice"), sample_rate=8000)
    slow = SlowBus(bus)
    call = EdgeCall(slow, started, SilentLine(), EdgeCallConfig(stages=()))  # type: ignore[arg-type]
    published = slow.published
    first = asyncio.create_task(call.end(call_pb2.END_REASON_CALLER_HANGUP, "bye"))
    await asyncio.sleep(0.05)
    assert call.ended.is_set() and not published
    await call.end(call_pb2.END_REASON_AGENT_HANGUP, "edge shutting down")
    assert [m.ended.reason for m in published] == [call_pb2.END_REASON_CALLER_HANGUP]
    assert call._end_task is not None and call._end_task.done()  # published and released
    await first
    await call.end(call_pb2.END_REASON_AGENT_HANGUP, "again")  # over: returns at once
    assert len(published) == 1

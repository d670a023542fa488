"""The bus against a real nats-server: typed pub/sub, bad messages, lanes, drop policy."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from phoneagent.runtime import metrics, subjects
from phoneagent.runtime.bus import Bus, Delivery, Lane
from phoneagent.runtime.errors import ErrorKind, PhoneAgentError
from phoneagent.runtime.queues import BoundedQueue, DropPolicy
from phoneagent.v1 import common_pb2, control_pb2, media_pb2, session_pb2
from support.common import wait_for


def frame(call_id: str, seq: int) -> media_pb2.AudioFrame:
    return media_pb2.AudioFrame(
        meta=common_pb2.EventMeta(call_id=call_id), sequence=seq, pcm=b"\x00\x01" * 320, sample_rate=16000
    )


async def test_typed_publish_subscribe(bus: Bus) -> None:
    got: list[media_pb2.AudioFrame] = []

    async def on(msg: media_pb2.AudioFrame, d: Delivery) -> None:
        got.append(msg)

    await bus.subscribe(subjects.audio_in("pubsub"), media_pb2.AudioFrame, on)
    for i in range(5):
        await bus.publish(subjects.audio_in("pubsub"), frame("pubsub", i))
    await wait_for(lambda: len(got) == 5)
    assert [m.sequence for m in got] == list(range(5))


async def test_bad_messages_are_dropped_and_the_subscription_keeps_serving(bus: Bus) -> None:
    got: list[int] = []

    async def on(msg: media_pb2.AudioFrame, d: Delivery) -> None:
        if msg.sequence == 3:
            raise RuntimeError("handler bug on one message")
        got.append(msg.sequence)

    sub = await bus.subscribe(subjects.audio_in("bad"), media_pb2.AudioFrame, on, max_bytes=4096)
    subject = subjects.audio_in("bad")
    assert bus.data is not None
    await bus.data.publish(subject, b"\xff\xfe\xfd garbage")  # undecodable
    await bus.data.publish(subject, b"\x00" * 5000)  # oversized
    await bus.data.publish(subject, frame("someone-else", 1).SerializeToString())  # wrong call id
    await bus.data.publish(subject, b"")  # empty: decodes, but meta.call_id is missing
    for i in range(1, 6):
        await bus.publish(subject, frame("bad", i))  # seq 3 crashes the handler
    await wait_for(lambda: got == [1, 2, 4, 5])
    assert sub.rejected == 4


async def test_control_lane_is_not_delayed_by_an_audio_flood(bus: Bus, nats_url: str) -> None:
    """10k audio frames in flight with a slow audio handler; a control event still arrives at once."""
    publisher = Bus("flood")
    await publisher.connect(nats_url)
    audio_seen = 0
    control_at: list[float] = []

    async def slow_audio(msg: media_pb2.AudioFrame, d: Delivery) -> None:
        nonlocal audio_seen
        audio_seen += 1
        await asyncio.sleep(0.002)

    async def on_control(msg: control_pb2.ControlEvent, d: Delivery) -> None:
        control_at.append(time.perf_counter())

    await bus.subscribe(subjects.audio_in("lane"), media_pb2.AudioFrame, slow_audio, max_pending=200)
    await bus.subscribe(subjects.control("lane"), control_pb2.ControlEvent, on_control, lane=Lane.CONTROL)
    try:
        for i in range(10_000):
            await publisher.publish(subjects.audio_in("lane"), frame("lane", i))
        sent = time.perf_counter()
        await publisher.publish(
            subjects.control("lane"),
            control_pb2.ControlEvent(
                meta=common_pb2.EventMeta(call_id="lane"), barge_in=control_pb2.BargeIn(played_ms=10)
            ),
            lane=Lane.CONTROL,
        )
        await wait_for(lambda: control_at, timeout=5)
        latency = control_at[0] - sent
        # The audio handler needs >= 0.4 s for the 200 frames it may keep; control must not wait for it.
        assert latency < 0.2, latency
        assert audio_seen < 10_000
    finally:
        await publisher.close()


def test_bounded_queue_drop_policies() -> None:
    q: BoundedQueue[int] = BoundedQueue("t-oldest", 3, DropPolicy.DROP_OLDEST)
    for i in range(5):
        q.put(i)
    assert [q.get_nowait() for _ in range(3)] == [2, 3, 4] and q.dropped == 2
    q2: BoundedQueue[int] = BoundedQueue("t-newest", 2, DropPolicy.DROP_NEWEST)
    assert [q2.put(i) for i in range(4)] == [True, True, False, False]
    assert metrics.QUEUE_DROPPED.labels(queue="t-newest")._value.get() == 2
    q3: BoundedQueue[int] = BoundedQueue("t-never", 0, DropPolicy.NEVER)
    for i in range(10_000):
        assert q3.put(i)
    assert len(q3) == 10_000 and q3.dropped == 0


async def test_request_without_responders_is_a_retryable_error(bus: Bus) -> None:
    claim = session_pb2.SessionClaim(stage="tts")
    with pytest.raises(PhoneAgentError) as e:
        await bus.request("pa.v1.nobody.home", claim, session_pb2.SessionAssigned, timeout=0.5)
    assert e.value.kind in (ErrorKind.UNAVAILABLE, ErrorKind.TIMEOUT) and e.value.retryable


async def test_trace_context_travels_in_headers(bus: Bus) -> None:
    from phoneagent.runtime import telemetry

    telemetry.setup("test", "r1")
    seen: list[dict[str, str]] = []

    async def on(msg: control_pb2.ControlEvent, d: Delivery) -> None:
        seen.append(d.headers)

    await bus.subscribe(subjects.control("trace"), control_pb2.ControlEvent, on, lane=Lane.CONTROL)
    with telemetry.tracer().start_as_current_span("turn") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        await bus.publish(
            subjects.control("trace"),
            control_pb2.ControlEvent(meta=common_pb2.EventMeta(call_id="trace")),
            lane=Lane.CONTROL,
            trace=True,
        )
    await wait_for(lambda: seen)
    assert trace_id in seen[0]["traceparent"]
    with telemetry.span_from(seen[0], "child") as child:
        assert format(child.get_span_context().trace_id, "032x") == trace_id


async def test_closing_the_bus_is_not_reported_as_a_lost_connection(
    nats_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``phone-agent up`` printed "nats disconnected" when its stream-creating bus closed."""
    bus = Bus("closing")
    await bus.connect(nats_url)
    with caplog.at_level(logging.WARNING, logger="phoneagent.runtime.bus"):
        await bus.close()
    assert not [r for r in caplog.records if "disconnected" in r.getMessage()]

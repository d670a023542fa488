"""The queue-depth gauge is the backlog of every queue sharing a label, across calls and replicas."""

from __future__ import annotations

import asyncio

from phoneagent.runtime import metrics, subjects
from phoneagent.runtime.bus import Bus, Delivery, subject_kind
from phoneagent.runtime.queues import BoundedQueue, DropPolicy, metric_label
from phoneagent.v1 import common_pb2, media_pb2
from support.common import wait_for


def depth(label: str) -> float:
    return metrics.QUEUE_DEPTH.labels(queue=label)._value.get()


def test_label_drops_the_replica_id() -> None:
    assert metric_label("asr/asr-7f9c-x2:call.audio") == "asr:call.audio"
    assert metric_label("asr/pa-phone-agent-asr-5d9f8b-abcde:call.audio") == "asr:call.audio"
    assert metric_label("harness:call.text") == "harness:call.text"
    assert metric_label("t-plain") == "t-plain"


def test_per_call_queues_sharing_a_label_add_up() -> None:
    # Two calls on one replica and a third on another replica: one series, their summed backlog.
    call_a = BoundedQueue[int]("qdepth/replica-1:call.audio", 256, DropPolicy.DROP_OLDEST)
    call_b = BoundedQueue[int]("qdepth/replica-1:call.audio", 256, DropPolicy.DROP_OLDEST)
    call_c = BoundedQueue[int]("qdepth/replica-2:call.audio", 256, DropPolicy.DROP_OLDEST)
    label = "qdepth:call.audio"
    for i in range(200):
        call_a.put(i)
    call_b.put(1)
    assert call_b.get_nowait() == 1  # call B keeps up; call A's 200 frames are still waiting
    assert depth(label) == 200
    call_c.put(7)
    assert depth(label) == 201
    assert call_a.get_nowait() == 0 and depth(label) == 200
    assert call_a.clear() == 199 and depth(label) == 1
    call_c.close()
    assert depth(label) == 0


def test_drops_and_close_give_back_what_a_queue_counted() -> None:
    label = "qclose:call.audio"
    keep = BoundedQueue[int]("qclose/r1:call.audio", 3, DropPolicy.DROP_OLDEST)
    full = BoundedQueue[int]("qclose/r1:call.audio", 2, DropPolicy.DROP_NEWEST)
    for i in range(5):
        keep.put(i)
        full.put(i)
    assert depth(label) == 3 + 2, "a dropping queue counts what it holds, not what it was offered"
    assert metrics.QUEUE_DROPPED.labels(queue=label)._value.get() == 2 + 3
    full.close()
    assert depth(label) == 3
    assert full.get_nowait() == 0 and depth(label) == 3, "items drained after close were already given back"
    keep.close()
    assert depth(label) == 0
    assert not keep.put(9) and depth(label) == 0


async def test_bus_subscriptions_of_two_calls_report_their_summed_backlog(nats_url: str) -> None:
    """Two per-call subscriptions of one stage replica: the gauge shows both calls' waiting frames."""
    stage = Bus("qbus/qbus-replica-1")
    await stage.connect(nats_url)
    release = asyncio.Event()
    started: list[str] = []

    async def slow(msg: media_pb2.AudioFrame, d: Delivery) -> None:
        started.append(msg.meta.call_id)
        await release.wait()

    label = f"qbus:{subject_kind(subjects.audio_in('qbus-a'))}"  # stage and subject kind, no replica
    try:
        subs = {}
        for call in ("qbus-a", "qbus-b"):
            subs[call] = await stage.subscribe(subjects.audio_in(call), media_pb2.AudioFrame, slow)
        for call, count in (("qbus-a", 21), ("qbus-b", 6)):
            for seq in range(count):
                frame = media_pb2.AudioFrame(
                    meta=common_pb2.EventMeta(call_id=call),
                    sequence=seq,
                    pcm=b"\x00\x01" * 160,
                    sample_rate=16000,
                )
                await stage.publish(subjects.audio_in(call), frame)
        # Each worker holds one frame in its handler; the rest wait in the queues.
        await wait_for(lambda: len(started) == 2 and depth(label) == 20 + 5, timeout=10)
        await stage.unsubscribe(subs["qbus-a"])  # the call ends with frames still queued
        assert depth(label) == 5
    finally:
        release.set()
        await stage.close()
    assert depth(label) == 0

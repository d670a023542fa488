"""Bounded queues with an explicit drop policy.

Audio and text queues are bounded: when a consumer falls behind, the policy decides
what is lost (audio: the oldest frames; nothing silently). Control queues never drop.

Metrics: many queues share one label (every per-call subscription of a stage on one subject
kind), so each queue adds its own depth to ``pa_queue_depth`` and takes it back as items leave
or when it is closed; the gauge is the backlog of all of them. The label is the queue's name
without the replica id (``asr/asr-7f9c:call.audio`` -> ``asr:call.audio``), so replicas sum
in PromQL and a rollout does not mint new series.
"""

from __future__ import annotations

import asyncio
import collections
import enum
from typing import Generic, TypeVar

from phoneagent.runtime import metrics

T = TypeVar("T")


class DropPolicy(enum.Enum):
    DROP_OLDEST = "drop_oldest"  # real-time media: newest audio matters
    DROP_NEWEST = "drop_newest"  # keep what is queued, refuse new items
    NEVER = "never"  # control: unbounded; a full queue is a bug, never a loss


def metric_label(name: str) -> str:
    """The ``queue`` label for a queue name: ``<service>/<replica>:<kind>`` loses its replica id."""
    owner, sep, kind = name.partition(":")
    return owner.split("/", 1)[0] + sep + kind


class QueueClosed(Exception):
    """get() on a closed, empty queue."""


class BoundedQueue(Generic[T]):
    """An asyncio queue with a maximum size and a drop policy; counts drops in metrics."""

    def __init__(self, name: str, maxsize: int, policy: DropPolicy) -> None:
        if maxsize <= 0 and policy is not DropPolicy.NEVER:
            raise ValueError("maxsize must be > 0 for a dropping queue")
        self.name = name
        self.maxsize = maxsize
        self.policy = policy
        self.dropped = 0
        self._items: collections.deque[T] = collections.deque()
        self._getters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False
        label = metric_label(name)
        self._depth = metrics.QUEUE_DEPTH.labels(queue=label)
        self._drops = metrics.QUEUE_DROPPED.labels(queue=label)
        self._counted = 0  # what this queue has added to the shared depth gauge

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: T) -> bool:
        """Enqueue without waiting. Returns False when ``item`` itself was dropped."""
        if self._closed:
            return False
        accepted = True
        if self.policy is not DropPolicy.NEVER and len(self._items) >= self.maxsize:
            self.dropped += 1
            self._drops.inc()
            if self.policy is DropPolicy.DROP_OLDEST:
                self._items.popleft()
            else:
                accepted = False
        if accepted:
            self._items.append(item)
        self._count()
        self._wake()
        return accepted

    def _count(self) -> None:
        """Move the shared gauge by this queue's change in depth (a closed queue counts nothing)."""
        depth = 0 if self._closed else len(self._items)
        if depth != self._counted:
            self._depth.inc(depth - self._counted)
            self._counted = depth

    def _wake(self) -> None:
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)
                break

    async def get(self) -> T:
        while not self._items:
            if self._closed:
                raise QueueClosed(self.name)
            fut = asyncio.get_running_loop().create_future()
            self._getters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut in self._getters:
                    self._getters.remove(fut)
                raise
        item = self._items.popleft()
        self._count()
        return item

    def get_nowait(self) -> T | None:
        if not self._items:
            return None
        item = self._items.popleft()
        self._count()
        return item

    def clear(self) -> int:
        """Discard everything queued (e.g. audio of a cancelled generation); returns the count."""
        n = len(self._items)
        self._items.clear()
        self._count()
        return n

    def close(self) -> None:
        """No more puts; getters drain what is left, then get QueueClosed.

        What is left no longer counts as backlog: the queue's share of the depth gauge goes to 0.
        """
        self._closed = True
        self._count()
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)

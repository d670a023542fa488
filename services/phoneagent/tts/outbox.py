"""A bounded hand-over from a worker thread to an asyncio consumer, with purge.

The worker blocks while the box is full (it is ahead of real time anyway) and gives up
as soon as its item is no longer wanted. The consumer awaits without a thread. ``purge``
removes queued items under the same lock the worker adds them with, so an item purged
(or refused) is never handed out.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

_WAIT_S = 0.05


class OutboxClosed(Exception):
    pass


class Outbox(Generic[T]):
    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        if limit <= 0:
            raise ValueError("limit must be positive")
        self._loop = loop
        self._limit = limit
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._ready = asyncio.Event()
        self._closed = False

    def put(self, item: T, wanted: Callable[[], bool]) -> bool:
        """Add ``item`` from the worker thread; False (item dropped) once ``wanted()`` turns false."""
        with self._cond:
            while len(self._items) >= self._limit and wanted() and not self._closed:
                self._cond.wait(_WAIT_S)
            if self._closed or not wanted():
                return False
            self._items.append(item)
        self._loop.call_soon_threadsafe(self._ready.set)
        return True

    async def get(self) -> T:
        """Next item, awaited on the event loop; OutboxClosed after :meth:`close`."""
        while True:
            with self._cond:
                if self._items:
                    item = self._items.popleft()
                    self._cond.notify_all()
                    return item
                if self._closed:
                    raise OutboxClosed()
                self._ready.clear()
            await self._ready.wait()

    def purge(self, drop: Callable[[T], bool]) -> int:
        with self._cond:
            kept = [item for item in self._items if not drop(item)]
            dropped = len(self._items) - len(kept)
            self._items = deque(kept)
            self._cond.notify_all()
        return dropped

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._loop.call_soon_threadsafe(self._ready.set)

"""Micro-batching of blocking calls from many threads into one batched call.

GPU engines decode many utterances in about the time of one. Each call's
worker thread submits its item; the first waiting thread becomes the leader, waits up
to ``max_wait_s`` for more items (or until ``max_batch`` are queued), runs the batch
and hands every caller its own result. No extra thread is needed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from phoneagent.runtime.errors import EngineFailure, InvalidArgument

T = TypeVar("T")
R = TypeVar("R")


class _Slot(Generic[T, R]):
    __slots__ = ("item", "result", "error", "done")

    def __init__(self, item: T) -> None:
        self.item = item
        self.result: R | None = None
        self.error: BaseException | None = None
        self.done = False


class MicroBatcher(Generic[T, R]):
    """Batches concurrent :meth:`submit` calls into calls of ``run_batch``.

    ``run_batch`` receives the items in arrival order and must return one result per item.
    If it raises, every caller in that batch gets the exception.
    """

    def __init__(
        self, run_batch: Callable[[list[T]], Sequence[R]], *, max_batch: int = 8, max_wait_s: float = 0.01
    ) -> None:
        if max_batch < 1 or max_wait_s < 0:
            raise InvalidArgument("max_batch must be >= 1 and max_wait_s >= 0")
        self._run = run_batch
        self._max_batch = max_batch
        self._max_wait = max_wait_s
        self._cond = threading.Condition()
        self._queue: list[_Slot[T, R]] = []
        self._leading = False

    def busy(self) -> bool:
        """True while a batch is being gathered or run (a new item would wait)."""
        with self._cond:
            return self._leading

    def submit(self, item: T) -> R:
        slot: _Slot[T, R] = _Slot(item)
        with self._cond:
            self._queue.append(slot)
            self._cond.notify_all()
        while True:
            batch = self._wait_or_lead(slot)
            if batch is None:
                break
            self._run_batch(batch)
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _wait_or_lead(self, slot: _Slot[T, R]) -> list[_Slot[T, R]] | None:
        """Wait until ``slot`` is done (None) or this thread must lead the next batch."""
        with self._cond:
            while not slot.done and self._leading:
                self._cond.wait()
            if slot.done:
                return None
            self._leading = True
            deadline = time.monotonic() + self._max_wait
            while len(self._queue) < self._max_batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            return batch

    def _run_batch(self, batch: list[_Slot[T, R]]) -> None:
        try:
            results = list(self._run([s.item for s in batch]))
            if len(results) != len(batch):
                raise EngineFailure("batched decode returned the wrong number of results")
            for s, r in zip(batch, results, strict=True):
                s.result = r
        except BaseException as exc:  # handed to every caller of the batch
            for s in batch:
                s.error = exc
        finally:
            with self._cond:
                for s in batch:
                    s.done = True
                self._leading = False
                self._cond.notify_all()

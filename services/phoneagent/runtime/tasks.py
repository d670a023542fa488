"""Task ownership: every asyncio task has an owner that cancels it with a timeout.

A :class:`TaskOwner` spawns named tasks, logs (never swallows silently) their failures,
and on :meth:`close` cancels them and waits at most ``timeout`` seconds. Nothing in the
services is fire-and-forget.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Coroutine
from typing import Any, TypeVar

from phoneagent.runtime import metrics
from phoneagent.runtime.errors import ErrorKind, PhoneAgentError

log = logging.getLogger(__name__)
T = TypeVar("T")


class TaskOwner:
    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def closed(self) -> bool:
        return self._closed

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        if self._closed:
            coro.close()
            raise RuntimeError(f"task owner {self.name} is closed")
        task = asyncio.create_task(coro, name=f"{self.name}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            kind = exc.kind if isinstance(exc, PhoneAgentError) else ErrorKind.INTERNAL
            metrics.ERRORS.labels(kind=kind.name.lower()).inc()
            log.error("task failed", exc_info=exc, extra={"task": task.get_name()})

    async def close(self, timeout: float = 5.0) -> None:
        """Cancel every task and wait for them, at most ``timeout`` seconds."""
        self._closed = True
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=timeout)
            if pending:
                log.warning("tasks did not stop in time", extra={"owner": self.name, "count": len(pending)})


async def with_timeout(aw: Awaitable[T], timeout: float, what: str) -> T:
    """Await ``aw`` at most ``timeout`` seconds; raise a TIMEOUT PhoneAgentError otherwise."""
    try:
        return await asyncio.wait_for(aw, timeout)
    except TimeoutError:
        raise PhoneAgentError(ErrorKind.TIMEOUT, f"{what} timed out after {timeout:.1f}s") from None


async def retry(
    op: Callable[[], Awaitable[T]],
    *,
    what: str,
    attempts: int = 5,
    base_delay: float = 0.05,
    max_delay: float = 2.0,
    wait_out: Collection[ErrorKind] = (),
    within: float = 0.0,
) -> T:
    """Run ``op`` again on retryable PhoneAgentErrors with exponential back-off.

    ``attempts`` tries in all; an error of a kind in ``wait_out`` is also tried again after
    those, until ``within`` seconds have passed since the first try (a condition that clears by
    itself in bounded time, such as a stream electing a new leader).

    The single place where retries live; engines and handlers do not loop on their own.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    delay = base_delay
    attempt = 0
    while True:
        attempt += 1
        try:
            return await op()
        except PhoneAgentError as exc:
            waiting_out = exc.kind in wait_out and loop.time() + delay < deadline
            if not exc.retryable or (attempt >= attempts and not waiting_out):
                raise
            log.info("retrying", extra={"what": what, "attempt": attempt, "error_kind": exc.kind.name})
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay)

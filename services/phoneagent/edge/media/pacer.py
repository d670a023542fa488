"""Playout clock: one tick every 20 ms against absolute deadlines.

Tick ``n`` is due at ``start + n * period``, computed from the start time rather than by
adding periods, so sleeping late once never shifts the ticks after it and nothing
drifts over a long call. When the event loop stalls for longer than ``max_catch_up``
periods, the missed ticks are skipped (and counted) instead of being sent in a burst.

The clock is injectable: tests drive it with a fake clock that jumps straight to
each deadline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep_until(self, deadline: float) -> None: ...


class LoopClock:
    """The running event loop's monotonic clock."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - self.now()
        if delay > 0:
            await asyncio.sleep(delay)


@dataclass(frozen=True, slots=True)
class Tick:
    index: int  # tick number since start; jumps when ticks were skipped
    deadline: float  # when it was due
    now: float  # when it fired

    @property
    def lateness(self) -> float:
        return self.now - self.deadline


class Pacer:
    def __init__(self, period: float = 0.02, *, clock: Clock | None = None, max_catch_up: int = 3) -> None:
        if period <= 0:
            raise ValueError("pacer period must be positive")
        self.period = period
        self.clock: Clock = clock if clock is not None else LoopClock()
        self.max_catch_up = max_catch_up
        self.skipped = 0
        self._start: float | None = None
        self._index = 0

    @property
    def start(self) -> float | None:
        return self._start

    def deadline(self, index: int) -> float:
        if self._start is None:
            raise RuntimeError("pacer not started")
        return self._start + index * self.period

    def restart(self, start: float | None = None) -> None:
        """Anchor tick 0 at ``start`` (default: now), e.g. when playout resumes after silence."""
        self._start = self.clock.now() if start is None else start
        self._index = 0

    async def next_tick(self) -> Tick:
        """Wait for the next deadline and return it."""
        if self._start is None:
            self.restart()
        deadline = self.deadline(self._index)
        await self.clock.sleep_until(deadline)
        now = self.clock.now()
        behind = int((now - deadline) / self.period)
        if behind > self.max_catch_up:
            self.skipped += behind
            log.warning("playout clock skipped ticks", extra={"ticks": behind, "late_s": now - deadline})
            self._index += behind
            deadline = self.deadline(self._index)
        tick = Tick(self._index, deadline, now)
        self._index += 1
        return tick

    async def ticks(self, count: int | None = None) -> AsyncIterator[Tick]:
        """Yield ticks forever (or ``count`` of them)."""
        emitted = 0
        while count is None or emitted < count:
            yield await self.next_tick()
            emitted += 1

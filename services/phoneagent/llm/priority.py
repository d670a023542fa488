"""Live turns before background work on one engine.

A CPU engine runs one generation at a time, in arrival order. Post-call summaries are off the
real-time path, but on a shared engine a few of them queued after a busy minute would sit in
front of the next caller's turn for tens of seconds (measured with eight concurrent calls).
:class:`LiveFirst` wraps the engine: dialogs stream through it as usual (live), and background
work runs through :meth:`LiveFirst.background` only once no live request has been in flight
for ``quiet_s``. A live request that arrives while background work runs aborts it; the work
starts again from the beginning at the next quiet moment.

A prefill (:meth:`LiveFirst.prefill`) waits for a shorter quiet, ``prefill_quiet_s``: it only
evaluates tokens that the call's next turn would evaluate anyway, an engine that keeps prefixes
keeps what it evaluated before an abort, and an abort costs a live request at most one chunk of
prompt evaluation. With several calls the engine is seldom quiet for a whole second, and the
next turns then read what the prefills would have (measured over SIP at four calls).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from phoneagent.llm.engines.base import Delta, LlmEngine
from phoneagent.runtime.errors import Unavailable

T = TypeVar("T")
PREFILL_QUIET_S = 0.2  # how long the engine is free of live requests before a prefill starts


class Preempted(Exception):
    """Background work was aborted for a live request."""


class LiveFirst:
    """An :class:`LlmEngine` for live requests, with a lane for background work."""

    def __init__(
        self, engine: LlmEngine, quiet_s: float = 1.0, prefill_quiet_s: float = PREFILL_QUIET_S
    ) -> None:
        if quiet_s < 0 or prefill_quiet_s < 0:
            raise ValueError("quiet times must not be negative")
        self.engine = engine
        self.name = engine.name
        self.structured_output = bool(getattr(engine, "structured_output", False))
        self.continues_reply = bool(getattr(engine, "continues_reply", False))
        self.quiet_s = quiet_s
        self.prefill_quiet_s = min(prefill_quiet_s, quiet_s)  # never longer than other work's
        self.live = 0  # live requests in flight
        self.preempted = 0  # background runs aborted for a live request
        self._last_live = time.monotonic() - quiet_s
        self._changed = asyncio.Event()
        self._running: dict[str, _Background] = {}  # background request id -> its lane

    # --- the LlmEngine interface, for dialogs --------------------------------------------------
    def load(self) -> None:
        self.engine.load()

    async def close(self) -> None:
        await self.engine.close()

    async def abort(self, request_id: str) -> None:
        await self.engine.abort(request_id)

    async def warm_up(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> None:
        await self.engine.warm_up(messages, tools)

    async def stream(self, messages: list[dict[str, Any]], **kwargs: Any) -> AsyncIterator[Delta]:
        self.live += 1
        self._changed.set()
        try:
            for request_id, lane in list(self._running.items()):
                lane.preempted = True
                await self.engine.abort(request_id)
            async for delta in self.engine.stream(messages, **kwargs):
                yield delta
        finally:
            self.live -= 1
            self._last_live = time.monotonic()
            self._changed.set()

    async def prefill(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, max_wait_s: float = 30.0
    ) -> bool:
        """Evaluate ``messages`` as background work, so that a later request that starts with
        them (the call's next turn) evaluates only what follows. A no-op for an engine that
        keeps no prefix between requests. Returns whether the prefill ran to its end."""
        if not getattr(self.engine, "keeps_prefix", False):
            return False

        async def work(engine: Any) -> bool:
            request_id = f"prefill-{time.monotonic_ns()}"
            async for delta in engine.stream(
                messages, request_id=request_id, max_tokens=1, temperature=0.0, tools=tools
            ):
                if delta.final:
                    return delta.finish_reason != "abort"
            return False

        try:
            return bool(await self.background(work, max_wait_s, quiet_s=self.prefill_quiet_s))
        except Unavailable:
            return False

    # --- background work -----------------------------------------------------------------------
    async def background(
        self, work: Callable[[Any], Awaitable[T]], max_wait_s: float, *, quiet_s: float | None = None
    ) -> T:
        """Run ``work(engine)`` when the engine has been free of live requests for ``quiet_s``
        (the lane's own by default); again from the start if a live request aborts it. Raises
        :class:`Unavailable` (retryable) when no run completed within ``max_wait_s``."""
        deadline = time.monotonic() + max_wait_s
        quiet = self.quiet_s if quiet_s is None else quiet_s
        while True:
            await self._wait_quiet(deadline, quiet)
            lane = _Background(self)
            result = await work(lane)
            if not lane.preempted:
                return result
            self.preempted += 1

    async def _wait_quiet(self, deadline: float, quiet_s: float) -> None:
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise Unavailable("the engine is busy with live calls")
            quiet_for = now - self._last_live
            if self.live == 0 and quiet_for >= quiet_s:
                return
            self._changed.clear()
            wait = quiet_s - quiet_for if self.live == 0 else deadline - now
            try:
                await asyncio.wait_for(self._changed.wait(), max(0.01, min(wait, deadline - now)))
            except TimeoutError:
                pass


class _Background:
    """The engine as background work sees it: its requests can be preempted."""

    def __init__(self, owner: LiveFirst) -> None:
        self.owner = owner
        self.name = owner.engine.name
        self.preempted = False

    def stream(self, messages: list[dict[str, Any]], **kwargs: Any) -> AsyncIterator[Delta]:
        return self._stream(messages, **kwargs)

    async def _stream(self, messages: list[dict[str, Any]], **kwargs: Any) -> AsyncIterator[Delta]:
        request_id = str(kwargs["request_id"])
        self.owner._running[request_id] = self
        try:
            if self.owner.live:  # a live request came first after all
                self.preempted = True
                return
            async for delta in self.owner.engine.stream(messages, **kwargs):
                if self.preempted:
                    return
                yield delta
        finally:
            self.owner._running.pop(request_id, None)

    async def abort(self, request_id: str) -> None:
        await self.owner.engine.abort(request_id)

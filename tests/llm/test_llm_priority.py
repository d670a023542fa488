"""Live turns before background work: a summary waits for a quiet engine, is aborted by a
live request and runs again; it gives up with a retryable error when calls never pause."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from phoneagent.llm.engines.base import Delta
from phoneagent.llm.priority import LiveFirst
from phoneagent.runtime.errors import Unavailable


class PacedEngine:
    """Yields ``pieces`` words, one every ``pace_s``; records the order requests started in."""

    name = "paced"

    def __init__(self, pieces: int = 5, pace_s: float = 0.02) -> None:
        self.pieces = pieces
        self.pace_s = pace_s
        self.started: list[str] = []
        self.aborted: set[str] = set()

    def load(self) -> None: ...

    async def close(self) -> None: ...

    async def warm_up(self, messages: Any, tools: Any = None) -> None: ...

    async def abort(self, request_id: str) -> None:
        self.aborted.add(request_id)

    async def stream(self, messages: Any, *, request_id: str, **_: Any) -> AsyncIterator[Delta]:
        self.started.append(request_id)
        for i in range(self.pieces):
            if request_id in self.aborted:
                yield Delta(finish_reason="abort")
                return
            await asyncio.sleep(self.pace_s)
            yield Delta(text=f"w{i} ")
        yield Delta(finish_reason="stop")


async def drain(engine: Any, request_id: str) -> str:
    return "".join(
        [d.text async for d in engine.stream([], request_id=request_id, max_tokens=8, temperature=0.0)]
    )


async def test_background_waits_for_live_turns_and_restarts_when_preempted() -> None:
    inner = PacedEngine()
    lanes = LiveFirst(inner, quiet_s=0.1)
    runs = 0

    async def summary(engine: Any) -> str:
        nonlocal runs
        runs += 1
        return await drain(engine, f"summary-{runs}")

    live = asyncio.create_task(drain(lanes, "turn-1"))
    await asyncio.sleep(0.01)
    bg = asyncio.create_task(lanes.background(summary, max_wait_s=5))
    assert await live == "w0 w1 w2 w3 w4 "
    await asyncio.sleep(0.15)  # quiet long enough: the summary starts
    assert inner.started == ["turn-1", "summary-1"]
    assert await drain(lanes, "turn-2") == "w0 w1 w2 w3 w4 "  # preempts the summary
    assert "summary-1" in inner.aborted
    assert await asyncio.wait_for(bg, 5) == "w0 w1 w2 w3 w4 "
    assert inner.started == ["turn-1", "summary-1", "turn-2", "summary-2"]
    assert runs == 2 and lanes.preempted == 1 and lanes.live == 0


async def test_background_gives_up_when_calls_never_pause() -> None:
    lanes = LiveFirst(PacedEngine(pieces=100), quiet_s=0.05)
    live = asyncio.create_task(drain(lanes, "long-turn"))
    await asyncio.sleep(0.01)

    async def summary(engine: Any) -> str:
        return await drain(engine, "summary")

    with pytest.raises(Unavailable) as err:
        await lanes.background(summary, max_wait_s=0.2)
    assert err.value.retryable
    live.cancel()
    await asyncio.gather(live, return_exceptions=True)
    assert lanes.live == 0


class PrefixKeepingEngine(PacedEngine):
    keeps_prefix = True  # what a prefill evaluates is worth something to the next request


async def test_a_prefill_waits_for_a_shorter_quiet_than_other_background_work() -> None:
    """Right after a live turn, a prefill starts once the engine has been free for
    ``prefill_quiet_s``, while a summary still waits for ``quiet_s``."""
    inner = PrefixKeepingEngine()
    lanes = LiveFirst(inner, quiet_s=1.0, prefill_quiet_s=0.05)

    async def summary(engine: Any) -> str:
        return await drain(engine, "summary")

    assert await drain(lanes, "turn-1") == "w0 w1 w2 w3 w4 "
    bg = asyncio.create_task(lanes.background(summary, max_wait_s=5))
    prefill = asyncio.create_task(lanes.prefill([{"role": "user", "content": ""}], None, max_wait_s=5))
    assert await asyncio.wait_for(prefill, 0.9)  # well before the summary's quiet second is over
    assert inner.started[:2] == ["turn-1", next(r for r in inner.started if r.startswith("prefill-"))]
    assert "summary" not in inner.started
    assert await asyncio.wait_for(bg, 5) == "w0 w1 w2 w3 w4 "
    assert LiveFirst(inner, quiet_s=0.1).prefill_quiet_s == 0.1  # never longer than the lane's quiet

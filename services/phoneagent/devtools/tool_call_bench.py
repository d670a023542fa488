"""Tool-call latency with the real model: ``python -m phoneagent.devtools.tool_call_bench``.

Runs one caller turn that needs a tool (a booking, by default) through the LLM service's dialog
in process (real engine, prompt, tools and appointment book; the clock fixed as in
:mod:`phoneagent.devtools.llm_eval`), each run as a new call, and prints the time from the
caller's words reaching the dialog to the parsed tool call reaching the tool runner, and, for
each engine request of the turn (the free reply, then the constrained call), its duration, the
prompt tokens it evaluated and what it wrote. The engine keeps no conversation states between
runs (``state_cache_mb=0``; the shared prefix pinned at warm-up stays), and after each run a
one-token request of another conversation takes the context over: every run is a call's first
turn (the pinned prefix restored, the call's own tokens evaluated), not a replay of the previous
run's identical prompt still held in the context. The first run after warm-up is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phoneagent.devtools.llm_eval import RecordingTools, Rig
from phoneagent.llm.dialog_state import ToolOutcome
from phoneagent.llm.engines.base import Delta, create_engine
from phoneagent.llm.models import MODELS

UTTERANCE = "Can I book a cleaning on Monday at ten? My name is Ana Diaz."


@dataclass
class Request:
    request_id: str
    continued: str | None
    seconds: float = 0.0
    evaluated: int | None = None
    text: str = ""


@dataclass
class Run:
    seconds: float | None  # caller's words -> parsed tool call; None: no tool call
    tool: str
    requests: list[Request] = field(default_factory=list)


def timed_tools(tools: RecordingTools, called: list[float]) -> None:
    """Note in ``called`` when each tool call reaches the dialog's tool adapter."""
    run = tools.run

    async def timed(name: str, arguments: dict[str, Any]) -> ToolOutcome:
        called.append(time.perf_counter())
        return await run(name, arguments)

    tools.run = timed  # type: ignore[method-assign]


def spy(engine: Any, requests: list[Request]) -> None:
    """Record each request the engine streams (its duration, evaluated prompt tokens, text)."""
    stream = engine.stream

    def timed(messages: list[dict[str, Any]], **kwargs: Any) -> AsyncIterator[Delta]:
        async def pieces() -> AsyncIterator[Delta]:
            request = Request(str(kwargs["request_id"]), kwargs.get("assistant_prefix"))
            requests.append(request)
            started = time.perf_counter()
            try:
                async for delta in stream(messages, **kwargs):
                    request.evaluated = delta.prompt_evaluated_tokens or request.evaluated
                    request.text += delta.text
                    yield delta
            finally:
                request.seconds = time.perf_counter() - started

        return pieces()

    engine.stream = timed


async def one_run(rig: Rig, index: int, utterance: str, requests: list[Request]) -> Run:
    dialog, tools = rig.dialog(f"bench-{index}", caller=f"+1555020{index:04d}")
    called: list[float] = []
    timed_tools(tools, called)
    requests.clear()
    started = time.perf_counter()
    await dialog.on_user_turn(dialog.state.turn + 1, utterance)
    reply = dialog.reply
    if reply is not None and reply.task is not None:
        await asyncio.wait_for(asyncio.shield(reply.task), 120)
    await dialog.close()
    seconds = called[0] - started if called else None
    result = Run(seconds, tools.calls[0][0] if tools.calls else "-", list(requests))
    other = [{"role": "user", "content": "Hello."}]
    async for _ in rig.engine.stream(other, request_id=f"other-{index}", max_tokens=1, temperature=0.0):
        pass
    return result


async def run(args: argparse.Namespace) -> list[Run]:
    engine = create_engine(
        "llama_cpp",
        model=args.model,
        n_threads=args.threads,
        n_threads_batch=2,
        n_ctx=8192,
        seed=7,
        state_cache_mb=0,
    )
    await asyncio.to_thread(engine.load)
    requests: list[Request] = []
    spy(engine, requests)
    with tempfile.TemporaryDirectory() as tmp:
        rig = await Rig.open(Path(tmp), model=args.model, knowledge=False, max_tokens=48, engine=engine)
        try:
            await rig.warm_up()
            runs = [await one_run(rig, i, args.utterance, requests) for i in range(args.runs + 1)]
            print(f"grammars built from JSON schemas: {getattr(engine, 'grammars_built', 'not counted')}")
        finally:
            await rig.close()
    return runs[1:]


def report(args: argparse.Namespace, runs: list[Run]) -> None:
    print(f"model {args.model}, {args.threads} decode thread(s), {os.cpu_count()} CPUs")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"utterance: {args.utterance!r}")
    for i, r in enumerate(runs, 1):
        took = "no tool call" if r.seconds is None else f"{r.seconds * 1000:7.0f} ms"
        print(f"run {i}: {took}  tool {r.tool}")
        for q in r.requests:
            prefix = "" if q.continued is None else f" continues {q.continued!r}"
            print(
                f"    {q.request_id:<24} {q.seconds * 1000:6.0f} ms  evaluated {q.evaluated}"
                f"{prefix}  wrote {q.text[:70]!r}"
            )
    timed = [r.seconds for r in runs if r.seconds is not None]
    if timed:
        print(
            f"caller's words -> parsed tool call: median {statistics.median(timed) * 1000:.0f} ms, "
            f"min {min(timed) * 1000:.0f} ms, max {max(timed) * 1000:.0f} ms over {len(timed)} runs"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m phoneagent.devtools.tool_call_bench", description=__doc__
    )
    parser.add_argument("--model", default="qwen-0.5b", choices=sorted(MODELS))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--utterance", default=UTTERANCE)
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    report(args, asyncio.run(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Booking-phrasing evaluation with the real model: ``python -m phoneagent.devtools.llm_eval``.

Each scripted caller phrasing (one or two turns) runs through the real dialog, the real
tool executor and a fresh SQLite appointment book, in process, with the clock fixed at
Monday 23 November 2026, 9:30 am in New York. A phrasing succeeds when exactly the
expected appointment (type, local day and time, resolved in code by the tools) is in the
book afterwards. The table and the success count are printed; nothing is retried.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from phoneagent.agents import example_agent_path
from phoneagent.agents.agent import Agent, load_agent
from phoneagent.devtools.llm_eval_phrasings import PHRASINGS, SETS, Phrasing
from phoneagent.llm.dialog import Dialog
from phoneagent.llm.dialog_state import DialogConfig, ToolOutcome
from phoneagent.llm.domain.calendar_facts import agent_passages
from phoneagent.llm.domain.dates import resolve
from phoneagent.llm.domain.knowledge import KnowledgeBase, open_knowledge_base
from phoneagent.llm.domain.scheduling import Appointment, SchedulingStore
from phoneagent.llm.domain.tool_result import CallContext
from phoneagent.llm.domain.tools import ToolExecutor
from phoneagent.llm.engines.base import LlmEngine, create_engine
from phoneagent.llm.models import MODELS
from phoneagent.llm.priority import LiveFirst
from phoneagent.llm.prompting import Prompter
from phoneagent.llm.settings import PROMPT_DOCUMENTS_CHARS
from phoneagent.llm.tools import Tools
from phoneagent.runtime.errors import PhoneAgentError
from phoneagent.runtime.modelfiles import cache_dir

NOW = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)  # Monday 23 November 2026, 9:30 am in New York
CALLER = "+15552013344"
TURN_TIMEOUT_S = 90.0


class RecordingTools(Tools):
    """The service's tool adapter, remembering each call for the result table."""

    def __init__(self, executor: ToolExecutor, ctx: CallContext) -> None:
        super().__init__(executor, ctx, clock=lambda: NOW)
        self.calls: list[tuple[str, dict[str, Any], str]] = []
        self._resumed = False

    def resume(self, text: str) -> dict[str, Any] | None:
        call = super().resume(text)
        self._resumed = call is not None
        return call

    async def run(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        outcome = await super().run(name, arguments)
        # A name ending in "*" marks a call run again in code (the caller answered its question).
        shown = name if outcome.tool in ("", name) else f"{name}>{outcome.tool}"
        shown = f"{shown}*" if self._resumed else shown
        self._resumed = False
        self.calls.append((shown, dict(arguments), str(outcome.result.get("status", ""))))
        return outcome


@dataclass
class Rig:
    """The LLM service's pieces in one process: engine, appointment book, documents, tools, prompt."""

    engine: LlmEngine
    agent: Agent
    store: SchedulingStore
    knowledge: KnowledgeBase | None
    executor: ToolExecutor
    prompter: Prompter
    config: DialogConfig

    @classmethod
    async def open(
        cls,
        workdir: Path,
        *,
        model: str = "qwen-0.5b",
        knowledge: bool = True,
        threads: int = 1,
        max_tokens: int = 64,
        engine: LlmEngine | None = None,
        constrained_tools: bool = True,
        documents_chars: int = PROMPT_DOCUMENTS_CHARS,
    ) -> Rig:
        agent = load_agent(example_agent_path())
        clock = lambda: NOW  # noqa: E731
        store = await asyncio.to_thread(
            SchedulingStore.open, f"sqlite:///{workdir / 'book.db'}", agent, clock
        )
        kb = None
        if knowledge and agent.knowledge:
            kb = await asyncio.to_thread(
                open_knowledge_base, list(agent.knowledge), cache_dir() / "knowledge", agent_passages(agent)
            )
        if engine is None:
            engine = create_engine(
                "llama_cpp", model=model, n_threads=threads, n_threads_batch=2, n_ctx=8192, seed=7
            )
            await asyncio.to_thread(engine.load)
        if not isinstance(engine, LiveFirst):
            engine = LiveFirst(engine)  # as the service runs it: live turns first, then prefills
        config = DialogConfig(
            max_tokens=max_tokens, temperature=0.0, filler_after_s=5.0, constrained_tools=constrained_tools
        )
        prompter = Prompter(agent, store, kb, clock, documents_chars=documents_chars)
        executor = ToolExecutor(agent, store, kb, clock)
        return cls(engine, agent, store, kb, executor, prompter, config)

    def dialog(
        self, call_id: str, *, caller: str | None = CALLER, publish: Any = None, action: Any = None
    ) -> tuple[Dialog, RecordingTools]:
        tools = RecordingTools(self.executor, CallContext(call_id, caller))

        async def drop(_: Any) -> None:
            return None

        dialog = Dialog(
            call_id,
            self.engine,
            system_prompt=self.prompter.system_prompt,
            greeting=self.agent.greeting,
            publish=publish or drop,
            save=drop,
            tools=tools,
            action=action,
            config=self.config,
            context=self.prompter.turn_context,
        )
        return dialog, tools

    async def warm_up(self) -> None:
        tools = self.executor.definitions()
        messages = self.prompter.warm_up_messages()
        await self.engine.warm_up(messages, tools)

    def booked(self, call_id: str) -> list[Appointment]:
        """Appointments booked during the call ``call_id`` (any day in the booking horizon)."""
        return [
            a
            for a in self.store.appointments_between(NOW - timedelta(days=1), NOW + timedelta(days=200))
            if a.call_id == call_id and a.status == "booked"
        ]

    async def close(self) -> None:
        await self.engine.close()
        self.store.db.close()


async def say(dialog: Dialog, text: str, heard: list[str], timeout: float = TURN_TIMEOUT_S) -> list[str]:
    """One caller turn: wait for the whole reply, as played in full; returns its sentences."""
    await dialog.on_user_turn(dialog.state.turn + 1, text)
    reply = dialog.reply
    if reply is None or reply.task is None:
        return []
    await asyncio.wait_for(asyncio.shield(reply.task), timeout)
    sentences = list(reply.sentences)
    heard.extend(sentences)
    await dialog.on_playback_done(reply.generation)
    return sentences


@dataclass
class Result:
    phrasing: Phrasing
    ok: bool
    detail: str
    seconds: float
    tools: list[tuple[str, dict[str, Any], str]]  # as the model wrote the arguments
    replies: list[str]
    model_when: bool  # the model's own "when" words alone name the expected day and time


async def run_phrasing(rig: Rig, p: Phrasing, index: int) -> Result:
    dialog, tools = rig.dialog(f"eval-{index}", caller=f"+1555010{index:04d}")
    replies: list[str] = []
    started = time.perf_counter()
    try:
        for turn in p.turns:
            await say(dialog, turn, replies)
    except (TimeoutError, PhoneAgentError) as exc:
        replies.append(f"<{type(exc).__name__}>")
    finally:
        await dialog.close()
    seconds = time.perf_counter() - started
    start = datetime.fromisoformat(p.local_start).replace(tzinfo=rig.agent.tz)
    mine = rig.booked(dialog.call_id)
    ok = len(mine) == 1 and mine[0].type_id == p.type_id and mine[0].start == start
    detail = "; ".join(f"{a.type_id} {a.start.astimezone(rig.agent.tz):%a %d %b %H:%M}" for a in mine)
    return Result(p, ok, detail or "no booking", seconds, tools.calls, replies, _model_when(rig, p, tools))


def _model_when(rig: Rig, p: Phrasing, tools: RecordingTools) -> bool:
    """Whether some booking call's own ``when`` resolves (in code) to the expected start."""
    start = datetime.fromisoformat(p.local_start).replace(tzinfo=rig.agent.tz)
    for name, args, _ in tools.calls:
        when = args.get("when")
        if name == "book_appointment" and isinstance(when, str) and when.strip():
            r = resolve(when, NOW, rig.agent.tz, rig.agent.hours_on)
            if r.is_exact and r.start(rig.agent.tz) == start:
                return True
    return False


async def evaluate(
    rig: Rig, phrasings: tuple[Phrasing, ...] = PHRASINGS, progress: Callable[[Result], None] | None = None
) -> list[Result]:
    await rig.warm_up()
    results = []
    for i, p in enumerate(phrasings):
        results.append(await run_phrasing(rig, p, i))
        if progress is not None:
            progress(results[-1])
    return results


def row(r: Result) -> str:
    calls = ", ".join(
        f"{n}({a.get('appointment_type', '')}|{a.get('when', '')}|{a.get('name', '')}):{s}"
        for n, a, s in r.tools
    )
    return f"{r.phrasing.key:<22} {'yes' if r.ok else 'no':<4} {r.seconds:7.1f}  {r.detail} / {calls}"


def table(results: list[Result], verbose: bool = False) -> str:
    lines = [f"{'phrasing':<22} {'ok':<4} {'seconds':>7}  booked / tool calls"]
    for r in results:
        lines.append(row(r))
        if verbose:
            lines.extend(f"{'':<36}agent: {text}" for text in r.replies)
    ok = sum(r.ok for r in results)
    own = sum(r.model_when for r in results)
    lines.append(f"success: {ok}/{len(results)} (model's own 'when' words right in {own}/{len(results)})")
    lines.append(
        "tool calls as the model wrote them (type|when|name); a>b = the model named a, b ran; "
        "name* = re-run in code once the caller answered"
    )
    return "\n".join(lines)


async def _main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="pa-llm-eval-") as tmp:
        try:
            rig = await Rig.open(
                Path(tmp),
                model=args.model,
                threads=args.threads,
                max_tokens=args.max_tokens,
                constrained_tools=not args.free_tool_calls,
            )
        except PhoneAgentError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        try:
            phrasings = SETS[args.set]
            chosen = phrasings[: args.limit] if args.limit else phrasings
            results = await evaluate(rig, chosen, progress=(lambda r: print(row(r), flush=True)))
        finally:
            await rig.close()
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"set={args.set} model={args.model} threads={args.threads} max_tokens={args.max_tokens}", end=" ")
    print(f"temperature=0 tool_calls={'free' if args.free_tool_calls else 'constrained'}", end=" ")
    print(f"load1={load1:.2f}")
    print(table(results, verbose=args.verbose))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m phoneagent.devtools.llm_eval", description=__doc__)
    parser.add_argument("--model", choices=sorted(MODELS), default="qwen-0.5b")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp decoding threads")
    parser.add_argument("--max-tokens", type=int, default=64, help="reply length limit per generation")
    parser.add_argument("--limit", type=int, default=0, help="run only the first N phrasings")
    parser.add_argument(
        "--set",
        choices=sorted(SETS),
        default="main",
        help="main, or held-out (ASR-style, never tuned on)",
    )
    parser.add_argument(
        "--free-tool-calls", action="store_true", help="read tool calls from free text (no schema grammar)"
    )
    parser.add_argument("--verbose", action="store_true", help="print what the agent said")
    args = parser.parse_args(argv)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())

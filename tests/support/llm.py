"""Helpers for the LLM tests: ``needs``, the skip-or-fail mark for what a real-model test requires,
the stand-in engine base the tests' scripted engines share, and the stand-in service an
LlmCallSession runs against."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from phoneagent.agents.agent import Agent, load_agent
from phoneagent.llm.dialog_state import DialogConfig, DialogState
from phoneagent.llm.domain.tools import ToolExecutor
from phoneagent.llm.engines.base import Delta
from phoneagent.llm.service import LlmCallSession
from phoneagent.llm.settings import LlmSettings
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Delivery
from phoneagent.runtime.settings import CommonSettings, load

from support.call_probe import CallProbe


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def needs(*modules: str, what: str) -> pytest.MarkDecorator:
    """Skip when one of ``modules`` is missing, except in CI (``CI=true``): there a broken install
    of a real engine or model must fail the run, not pass it green by skipping the real-model tests."""
    missing = any(importlib.util.find_spec(m) is None for m in modules)
    return pytest.mark.skipif(missing and not in_ci(), reason=f"{what} not installed")


class LlmStageStub:
    """What LlmCallSession needs from its service: the real agent file, a stand-in engine, and the
    real tools at a fixed time when ``now`` is given. Saved dialog states are kept in ``saved``."""

    def __init__(self, bus: Bus, engine: Any, replica: str, now: datetime | None = None) -> None:
        self.bus = bus
        self.engine = engine
        self.agent: Agent = load_agent(load(CommonSettings).agent_path)
        self.settings = load(LlmSettings)
        self.replica = replica
        self.executor = ToolExecutor(self.agent, None, None, clock=lambda: now) if now else None
        self.dialog_config = DialogConfig()
        self.saved: list[DialogState] = []
        self.forgotten: list[str] = []  # calls whose saved state was purged at call end

    def system_prompt(self) -> str:
        return "You answer the phone."

    def turn_context(self, caller_text: str) -> str:
        return ""

    async def load_state(self, call_id: str) -> DialogState | None:
        return None

    async def save_state(self, call_id: str, state: DialogState) -> None:
        self.saved.append(DialogState.from_json(state.to_json()))

    async def forget_state(self, call_id: str) -> None:
        self.forgotten.append(call_id)


class StandInEngine:
    """What every stand-in LLM engine shares: it loads and closes at once, keeps the messages of
    each request it streams for (``requests``, filled by the subclass's ``stream``), and records
    each aborted request, releasing a reply that waits on ``release``."""

    name = "stand-in"

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.aborted: list[str] = []
        self.release = asyncio.Event()

    def load(self) -> None: ...

    async def close(self) -> None: ...

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)
        self.release.set()


class ScriptEngine(StandInEngine):
    """Answers each request with the next script; None in a script waits until aborted."""

    name = "script"

    def __init__(self, scripts: list[list[str | None]]) -> None:
        super().__init__()
        self.scripts = scripts

    async def stream(
        self, messages: list[dict[str, Any]], *, request_id: str, **_: Any
    ) -> AsyncIterator[Delta]:
        self.requests.append([dict(m) for m in messages])
        for piece in self.scripts.pop(0) if self.scripts else ["Okay."]:
            if piece is None:
                await self.release.wait()
                yield Delta(finish_reason="abort")
                return
            yield Delta(text=piece)
        yield Delta(finish_reason="stop", completion_tokens=3)


async def open_session(
    bus: Bus, engine: ScriptEngine, now: datetime | None = None
) -> tuple[LlmStageStub, CallProbe, LlmCallSession]:
    stage, call = LlmStageStub(bus, engine, "llm-session-t", now), CallProbe(bus)
    await call.listen()
    session = LlmCallSession(stage, call.claim(), False)  # type: ignore[arg-type]
    await session.start()
    return stage, call, session


def asr_events_handled(session: LlmCallSession, call_id: str) -> list[Any]:
    """The ASR events the session has finished handling, from now on."""
    sub = next(s for s in session.subs if s.subject == subjects.asr_events(call_id))
    handled: list[Any] = []
    inner = sub.handler

    async def counting(msg: Any, d: Delivery) -> None:
        await inner(msg, d)
        handled.append(msg)

    sub.handler = counting
    return handled

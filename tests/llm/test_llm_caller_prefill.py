"""While the caller speaks, their words so far (a partial transcript) are evaluated ahead, on a
real bus with the LLM call session: the final's request then begins with the same messages.
Not while the agent speaks, nor when the setting is off."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from phoneagent.llm.engines.base import Delta
from phoneagent.llm.priority import LiveFirst
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus
from phoneagent.v1 import speech_pb2
from support.common import wait_for
from support.llm import StandInEngine, asr_events_handled, open_session


class KeepingEngine(StandInEngine):
    """Keeps what it evaluated between requests, as llama.cpp does; answers "Okay."."""

    name = "keeping"
    keeps_prefix = True

    async def stream(self, messages: list[dict[str, Any]], **_: Any) -> AsyncIterator[Delta]:
        self.requests.append([dict(m) for m in messages])
        yield Delta(text="Okay.")
        yield Delta(finish_reason="stop", completion_tokens=2)


async def _partial(bus: Bus, call_id: str, turn: int, text: str) -> None:
    tr = speech_pb2.Transcript(text=text)
    tr.meta.call_id, tr.meta.turn_id = call_id, turn
    await bus.publish(subjects.asr_events(call_id), speech_pb2.AsrEvent(transcript=tr))


async def test_the_callers_words_so_far_are_evaluated_before_the_final(bus: Bus) -> None:
    engine = KeepingEngine()
    _, call, session = await open_session(bus, LiveFirst(engine, quiet_s=0.0))  # type: ignore[arg-type]
    try:
        await _partial(bus, call.call_id, 1, "What should I")
        await wait_for(lambda: engine.requests, timeout=5)
        ahead = engine.requests[0]
        assert ahead[-1] == {"role": "user", "content": "What should I"}
        assert session.dialog is not None and session.dialog.caller_prefills == 1
        await call.transcript(1, "What should I bring?")
        await wait_for(lambda: call.finished(1), timeout=5)
        final = next(r for r in engine.requests if r[-1]["content"] == "What should I bring?")
        assert final[:-1] == ahead[:-1]
    finally:
        await session.close("test")


async def test_no_prefill_while_the_agent_speaks_or_when_the_setting_is_off(bus: Bus) -> None:
    engine = KeepingEngine()
    stage, call, session = await open_session(bus, LiveFirst(engine, quiet_s=0.0))  # type: ignore[arg-type]
    handled = asr_events_handled(session, call.call_id)
    try:
        session.agent_speaking = 1  # the caller talks over the agent: what they heard is not known
        await _partial(bus, call.call_id, 1, "What should I")
        await wait_for(lambda: len(handled) == 1, timeout=5)
        session.agent_speaking = None
        stage.settings = dataclasses.replace(stage.settings, prefill_partials=False)
        await _partial(bus, call.call_id, 1, "What should I")
        await wait_for(lambda: len(handled) == 2, timeout=5)
        assert engine.requests == [] and session.dialog is not None and session.dialog.caller_prefills == 0
        stage.settings = dataclasses.replace(stage.settings, prefill_partials=True)
        await _partial(bus, call.call_id, 1, "What should I")
        await wait_for(lambda: engine.requests, timeout=5)
    finally:
        await session.close("test")

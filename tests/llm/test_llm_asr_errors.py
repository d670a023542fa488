"""ASR errors reach the llm: the caller is asked to say it again rather than left in silence,
never over the agent's own speech and not over and over; every error is counted."""

from __future__ import annotations

from phoneagent.agents.words import NOT_HEARD_TEXT
from phoneagent.llm.asr_errors import AsrErrorReaction
from phoneagent.runtime import metrics, subjects
from phoneagent.runtime.bus import Bus
from phoneagent.runtime.errors import ErrorKind
from phoneagent.v1 import common_pb2, control_pb2, speech_pb2
from support.common import wait_for
from support.llm import ScriptEngine, open_session


def count(kind: str, action: str) -> float:
    return float(metrics.ASR_ERRORS.labels(kind=kind, action=action)._value.get())


def failure(kind: ErrorKind = ErrorKind.ENGINE_FAILURE) -> common_pb2.Error:
    return common_pb2.Error(kind=kind.wire, retryable=kind.retryable, message="decode failed", source="asr")  # type: ignore[arg-type]


async def test_the_reaction_asks_again_once_per_window_and_not_while_busy() -> None:
    said: list[str] = []
    now = [100.0]
    busy = [False]

    async def say(text: str) -> None:
        said.append(text)

    reaction = AsrErrorReaction("c1", say, lambda: busy[0], every_s=10.0, clock=lambda: now[0])
    before = count("ENGINE_FAILURE", "asked_again"), count("ENGINE_FAILURE", "repeated")
    assert await reaction.on_error(failure()) == "asked_again"
    now[0] += 5.0
    assert await reaction.on_error(failure()) == "repeated"
    busy[0] = True
    now[0] += 20.0
    assert await reaction.on_error(failure(ErrorKind.TIMEOUT)) == "agent_busy"
    busy[0] = False
    assert await reaction.on_error(failure(ErrorKind.TIMEOUT)) == "asked_again"
    assert said == [NOT_HEARD_TEXT, NOT_HEARD_TEXT]
    assert count("ENGINE_FAILURE", "asked_again") == before[0] + 1
    assert count("ENGINE_FAILURE", "repeated") == before[1] + 1


async def test_an_asr_error_on_the_bus_makes_the_agent_ask_the_caller_again(bus: Bus) -> None:
    _, call, session = await open_session(bus, ScriptEngine([]))
    try:
        await call.answered()
        await wait_for(lambda: call.finished(1), timeout=5)  # the greeting, still playing
        error = speech_pb2.AsrEvent(error=failure())
        busy_before = count("ENGINE_FAILURE", "agent_busy")
        await bus.publish(subjects.asr_events(call.call_id), error)
        await wait_for(lambda: count("ENGINE_FAILURE", "agent_busy") == busy_before + 1, timeout=5)
        assert not call.finished(2), "nothing said over the greeting"

        await call.send(playback_done=control_pb2.PlaybackDone(generation_id=1))
        await wait_for(lambda: session.agent_speaking is None, timeout=5)
        await bus.publish(subjects.asr_events(call.call_id), error)
        await wait_for(lambda: call.finished(2), timeout=5)
        assert call.spoken(2) == NOT_HEARD_TEXT
        assert all(r.meta.producer == "llm/llm-session-t" and r.meta.ts_unix_ns for r in call.replies)
    finally:
        await session.close("test")

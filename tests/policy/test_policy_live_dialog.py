"""The LLM dialog acting on policy directives (real bus, the real LlmCallSession; a scripted engine
stands in for the model): the reply in flight is cancelled, the policy text is spoken as a new
generation, then the call is hung up or transferred once that text has played. Outbound calls
are greeted only after the callee speaks (or stays silent for 3 s)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from phoneagent.llm.engines.base import Delta
from phoneagent.llm.service import LlmCallSession
from phoneagent.runtime import approvals
from phoneagent.runtime.approvals import Verifier
from phoneagent.runtime.bus import Bus
from phoneagent.v1 import call_pb2, common_pb2, control_pb2, session_pb2
from support.call_probe import CallProbe
from support.common import PUBLIC_KEY_FILE, wait_for
from support.llm import LlmStageStub, StandInEngine
from support.policy_stack import running_policy

GREETING_START = "Thank you for calling"


class StallingEngine(StandInEngine):
    """Says a first clause, then waits until aborted (a long reply still in flight)."""

    name = "stalling"

    async def stream(
        self, messages: list[dict[str, Any]], *, request_id: str, **_: Any
    ) -> AsyncIterator[Delta]:
        yield Delta(text="Let me look that up for you, one moment please. ")
        await self.release.wait()
        yield Delta(finish_reason="abort")


async def open_session(bus: Bus, call: CallProbe) -> tuple[LlmStageStub, LlmCallSession]:
    stage = LlmStageStub(bus, StallingEngine(), "llm-directive-t")
    await call.listen()
    session = LlmCallSession(stage, session_pb2.SessionClaim(stage="llm", call=call.started), False)  # type: ignore[arg-type]
    await session.start()
    return stage, session


def directive(action: int, text: str, target: str = "") -> control_pb2.PolicyDirective:
    return control_pb2.PolicyDirective(action=action, text=text, target=target, rule="test", turn_id=1)  # type: ignore[arg-type]


async def test_hang_up_directive_interrupts_and_hangs_up_after_playback(bus: Bus) -> None:
    call = CallProbe(bus, call_pb2.DIRECTION_INBOUND)
    stage, session = await open_session(bus, call)
    try:
        await call.lifecycle(answered=call_pb2.CallAnswered(meta=common_pb2.EventMeta(call_id=call.call_id)))
        await wait_for(lambda: call.spoken(1).startswith(GREETING_START), timeout=5)
        await call.transcript(1, "When are you open on Saturday?")
        await wait_for(lambda: call.spoken(2), timeout=5)  # the model's reply is under way

        text = "Understood. We will not call you again. Goodbye."
        await call.send(directive=directive(control_pb2.DIRECTIVE_ACTION_SAY_AND_HANG_UP, text))
        await wait_for(lambda: call.spoken(3) == text, timeout=5)
        assert stage.engine.aborted, "the reply in flight was not aborted"
        cancels = await wait_for(lambda: call.kinds("cancel"), timeout=5)
        assert cancels[0].generation_id == 2
        assert [r.final for r in call.replies if r.meta.generation_id == 3] == [False, True]
        assert not call.kinds("hangup")  # not before the confirmation has played

        await call.send(playback_done=control_pb2.PlaybackDone(generation_id=3))
        hangups = await wait_for(lambda: call.kinds("hangup"), timeout=5)
        assert hangups[0].reason == call_pb2.END_REASON_AGENT_HANGUP
    finally:
        await session.close("test")


async def test_transfer_directive_transfers_after_playback(bus: Bus, nats_url: str, tmp_path: Path) -> None:
    """The transfer goes out after playback, with policy's signed approval for the call and the
    agent's human (the running policy service answers the dialog's transfer check)."""
    async with running_policy(
        nats_url, tmp_path / "policy.sqlite3", common={"replica_id": "policy-dialog-t"}
    ):
        await _transfer_after_playback(bus)


async def _transfer_after_playback(bus: Bus) -> None:
    call = CallProbe(bus, call_pb2.DIRECTION_INBOUND)
    _, session = await open_session(bus, call)
    try:
        await call.send(
            directive=directive(control_pb2.DIRECTIVE_ACTION_SAY_AND_TRANSFER, "Transferring you now.")
        )
        await wait_for(lambda: call.spoken(1) == "Transferring you now.", timeout=5)
        await call.send(playback_done=control_pb2.PlaybackDone(generation_id=1))
        transfers = await wait_for(lambda: call.kinds("transfer"), timeout=5)
        assert transfers[0].target == "sip:frontdesk@brightsmile.example.org"  # the agent's human
        Verifier.from_files([PUBLIC_KEY_FILE]).check(
            transfers[0].approval, action=approvals.TRANSFER, call_id=call.call_id, target=transfers[0].target
        )
        assert not call.kinds("hangup")
    finally:
        await session.close("test")


async def test_outbound_greets_after_the_callee_speaks_or_after_silence(bus: Bus) -> None:
    call = CallProbe(bus, call_pb2.DIRECTION_OUTBOUND)
    _, session = await open_session(bus, call)
    silent = CallProbe(bus, call_pb2.DIRECTION_OUTBOUND)
    _, silent_session = await open_session(bus, silent)
    try:
        answered = call_pb2.CallAnswered(meta=common_pb2.EventMeta(call_id=call.call_id))
        await call.lifecycle(answered=answered)
        await silent.lifecycle(
            answered=call_pb2.CallAnswered(meta=common_pb2.EventMeta(call_id=silent.call_id))
        )
        await call.transcript(1, "Hello?")
        await wait_for(lambda: call.spoken(1).startswith(GREETING_START), timeout=2)
        assert not call.spoken(2)  # "hello?" got the greeting, not a model reply
        loop = asyncio.get_running_loop()
        began = loop.time()
        await wait_for(lambda: silent.spoken(1).startswith(GREETING_START), timeout=6)
        assert loop.time() - began > 2.0  # only after the callee stayed silent
    finally:
        await session.close("test")
        await silent_session.close("test")

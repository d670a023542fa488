"""One scripted call end to end: place it, watch the bus, transcribe, check, record, report."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from phoneagent.devtools.harness.buswatch import BusWatch, CallTrace
from phoneagent.devtools.harness.caller import DEFAULT_TARGET, CallResult, SimulatedCaller, unique_user
from phoneagent.devtools.harness.checks import CheckResult, check_all
from phoneagent.devtools.harness.impair import Impairments
from phoneagent.devtools.harness.report import render, transcribe_agent, write_stereo_wav, write_transcript
from phoneagent.devtools.harness.scenario import Scenario
from phoneagent.devtools.harness.voice import AgentTranscriber, CallerVoice, caller_style
from phoneagent.runtime.bus import Bus
from phoneagent.runtime.bus_auth import BusAuth

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    result: CallResult
    checks: list[CheckResult]
    wav: Path | None
    text: str

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


async def connect_watch(
    nats_url: str | None, bus_auth: BusAuth | None = None
) -> tuple[Bus | None, BusWatch | None]:
    """Watch the bus at ``nats_url`` as ``bus_auth``'s user (default: the environment's,
    PA_NATS_USER; the local stack's ``harness`` user may watch calls)."""
    url = nats_url or os.environ.get("PA_NATS_URL", "")
    if not url:
        return None, None
    bus = Bus("harness")
    await bus.connect(url, auth=bus_auth)
    watch = BusWatch(bus)
    await watch.start()
    return bus, watch


async def run_scenario(
    scenario: Scenario,
    *,
    target: str = DEFAULT_TARGET,
    impairments: Impairments | None = None,
    nats_url: str | None = None,
    wav: Path | None = None,
    voice: CallerVoice | None = None,
    transcriber: AgentTranscriber | None = None,
    seed: int = 0,
    bus_auth: BusAuth | None = None,
) -> Outcome:
    """Run ``scenario`` against the agent at ``target``; bus checks need ``nats_url`` (or
    PA_NATS_URL). The WAV and a ``.txt`` transcript beside it are written when ``wav`` is set.
    Without a ``voice``, the caller's voice, level and pauses are the scenario's own
    (:func:`~phoneagent.devtools.harness.voice.caller_style`, varied by ``seed``)."""
    own_voice = voice is None
    style = caller_style(scenario.name, seed)
    voice = voice or CallerVoice.for_style(style)
    bus, watch = await connect_watch(nats_url, bus_auth)
    user = unique_user(scenario.caller)
    trace: CallTrace | None = watch.watch(user) if watch is not None else None
    try:
        caller = SimulatedCaller(
            scenario, voice, target=target, impairments=impairments, caller_user=user, style=style
        )
        caller.result.notes.append(f"caller: {style.describe()}" if own_voice else "caller: given voice")
        result = await caller.run()
        if transcriber is None:
            transcriber = await asyncio.to_thread(AgentTranscriber)
        await asyncio.to_thread(transcribe_agent, result, transcriber)
        if bus is not None:
            await asyncio.sleep(0.5)  # let the last bus events (call ended) arrive
        checks = await asyncio.to_thread(check_all, result, trace)
    finally:
        if bus is not None:
            await bus.close()
        if own_voice:
            voice.close()
    if wav is not None:
        write_stereo_wav(wav, result.caller_pcm, result.agent_pcm)
        write_transcript(wav.with_suffix(".txt"), result)
    return Outcome(result, checks, wav, render(result, checks, wav))

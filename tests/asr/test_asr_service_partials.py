"""Partial and preflight transcripts on the bus: a real ASR service process with PA_ASR_PARTIALS=1
(the default) publishes non-final transcripts on the call's asr subject while the caller talks,
in the same turn and before that turn's final; with PA_ASR_PARTIALS=0 none are published. The
final is published even if no further caller frame arrives. When the turn sounds over before
the silence that confirms it has passed, a preflight transcript (same turn, same text) comes on
the transcript subject ahead of the final."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from phoneagent.devtools.asr_bench import synthesize
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Delivery
from phoneagent.runtime.sessions import claim_session
from phoneagent.v1 import call_pb2, common_pb2, media_pb2, speech_pb2
from support.common import spawn_replica, wait_for, wait_replica_ready

pytestmark = pytest.mark.slow

RATE = 16000
FRAME = 320
TEXT = "I would like to book an appointment for next Tuesday afternoon please."


async def run_call(
    bus: Bus, call_id: str, pcm: np.ndarray, preflights: list[speech_pb2.Transcript] | None = None
) -> list[tuple[float, speech_pb2.Transcript]]:
    """Claim an asr session, speak ``pcm`` in real time; every transcript (partial, preflight or
    final) seen; preflights also go to ``preflights``."""
    seen: list[tuple[float, speech_pb2.Transcript]] = []
    preflights = [] if preflights is None else preflights

    async def on_asr(ev: speech_pb2.AsrEvent, _: Delivery) -> None:
        if ev.WhichOneof("event") == "transcript":
            seen.append((time.monotonic(), ev.transcript))

    async def on_final(tr: speech_pb2.Transcript, _: Delivery) -> None:
        seen.append((time.monotonic(), tr))
        if tr.preflight:
            preflights.append(tr)

    await bus.subscribe(subjects.asr_events(call_id), speech_pb2.AsrEvent, on_asr)
    await bus.subscribe(subjects.transcript(call_id), speech_pb2.Transcript, on_final)
    call = call_pb2.CallStarted(meta=common_pb2.EventMeta(call_id=call_id), sample_rate=RATE)
    await claim_session(bus, "asr", call)
    audio = np.concatenate([np.zeros(RATE // 2, np.int16), pcm, np.zeros(RATE, np.int16)])
    t0 = time.perf_counter()
    for k, i in enumerate(range(0, len(audio) - FRAME + 1, FRAME)):
        frame = media_pb2.AudioFrame(
            meta=common_pb2.EventMeta(call_id=call_id),
            sequence=k,
            pcm=audio[i : i + FRAME].astype("<i2").tobytes(),
            sample_rate=RATE,
            capture_unix_ns=time.time_ns(),
        )
        await bus.publish(subjects.audio_in(call_id), frame)
        await asyncio.sleep(max(0.0, t0 + (k + 1) * FRAME / RATE - time.perf_counter()))
    # No more frames after the trailing second of silence (a caller who went quiet on a line
    # that sends nothing in silence): the final must still come once its decode is done.
    await wait_for(lambda: any(tr.final for _, tr in seen), timeout=30, interval=0.05)
    return seen


@pytest.mark.parametrize("partials", [True, False])
async def test_partials_reach_the_bus_only_when_enabled(
    fresh_nats: str, service_env: dict[str, str], tmp_path: Path, partials: bool
) -> None:
    pcm = (synthesize([TEXT], phone=False)[0].pcm * 32767).astype(np.int16)
    proc, status = spawn_replica(
        ["-m", "phoneagent.cli", "serve", "asr"],
        service_env,
        fresh_nats,
        "asr-p",
        tmp_path,
        PA_ASR_THREADS="1",
        PA_ASR_PARTIALS="1" if partials else "0",
    )
    bus = Bus("edge-test")
    try:
        await wait_replica_ready(status, proc)
        await bus.connect(fresh_nats)
        seen = await run_call(bus, "asr-partials", pcm)
    finally:
        await bus.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    final_at, final = next((t, tr) for t, tr in seen if tr.final)
    found = [(t, tr) for t, tr in seen if not tr.final and not tr.preflight]
    if not partials:
        assert found == []
        return
    assert found, "no partial transcript on the bus"
    for t, tr in found:
        assert t < final_at and tr.meta.turn_id == final.meta.turn_id == 1
        assert tr.meta.call_id == "asr-partials" and tr.text and tr.engine == "faster-whisper"
        assert tr.speech_start_unix_ns == final.speech_start_unix_ns and tr.emitted_unix_ns > 0
    assert "appointment" in final.text.lower()


async def test_a_preflight_comes_before_the_final_of_the_same_turn(
    fresh_nats: str, service_env: dict[str, str], tmp_path: Path
) -> None:
    pcm = (synthesize(["What time do you close on Friday?"], phone=False)[0].pcm * 32767).astype(np.int16)
    # A long wait after a finished turn, so the decision (decode and audio model) lands before it
    # even on a loaded machine: the preflight then precedes the confirming final.
    proc, status = spawn_replica(
        ["-m", "phoneagent.cli", "serve", "asr"],
        service_env,
        fresh_nats,
        "asr-pre",
        tmp_path,
        PA_ASR_THREADS="1",
        PA_ASR_TURN_MIN_WAIT_MS="10000",
        PA_ASR_TURN_MAX_WAIT_MS="10000",
    )
    bus = Bus("edge-test")
    preflights: list[speech_pb2.Transcript] = []
    try:
        await wait_replica_ready(status, proc)
        await bus.connect(fresh_nats)
        seen = await run_call(bus, "asr-preflight", pcm, preflights)
    finally:
        await bus.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    final_at, final = next((t, tr) for t, tr in seen if tr.final)
    assert len(preflights) == 1, seen
    pre = preflights[0]
    pre_at = next(t for t, tr in seen if tr.preflight)
    assert pre_at < final_at and not pre.final
    assert pre.meta.turn_id == final.meta.turn_id == 1 and pre.text == final.text
    assert "friday" in final.text.lower()
    assert pre.speech_end_unix_ns == 0 and final.speech_end_unix_ns > 0

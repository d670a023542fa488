"""Partial transcripts on the bus: a real ASR service process with PA_ASR_PARTIALS=1 publishes
non-final transcripts on the call's asr subject while the caller talks, in the same turn and
before that turn's final; with partials off (the default) none are published. The final is
published when its decode finishes even if no further caller frame arrives."""

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


async def run_call(bus: Bus, call_id: str, pcm: np.ndarray) -> list[tuple[float, speech_pb2.Transcript]]:
    """Claim an asr session, speak ``pcm`` in real time; every transcript (partial or final) seen."""
    seen: list[tuple[float, speech_pb2.Transcript]] = []

    async def on_asr(ev: speech_pb2.AsrEvent, _: Delivery) -> None:
        if ev.WhichOneof("event") == "transcript":
            seen.append((time.monotonic(), ev.transcript))

    async def on_final(tr: speech_pb2.Transcript, _: Delivery) -> None:
        seen.append((time.monotonic(), tr))

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
    found = [(t, tr) for t, tr in seen if not tr.final]
    if not partials:
        assert found == []
        return
    assert found, "no partial transcript on the bus"
    for t, tr in found:
        assert t < final_at and tr.meta.turn_id == final.meta.turn_id == 1
        assert tr.meta.call_id == "asr-partials" and tr.text and tr.engine == "faster-whisper"
        assert tr.speech_start_unix_ns == final.speech_start_unix_ns and tr.emitted_unix_ns > 0
    assert "appointment" in final.text.lower()

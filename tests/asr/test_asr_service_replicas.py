"""Two real ASR service processes sharing calls: both transcribe, one is killed between two
utterances, and the survivor transcribes every call's next utterance, which starts only
0.5 s after the kill (well before the takeover completes: the edge's replay buffer carries
it over). Bad audio on the bus gets a clear error event and the session carries on.
/metrics exposes the ASR metrics."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from phoneagent.devtools.asr_bench import synthesize
from phoneagent.edge.replay import AudioReplay
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Delivery, Lane
from phoneagent.runtime.sessions import claim_session
from phoneagent.v1 import call_pb2, common_pb2, media_pb2, speech_pb2
from support.common import spawn_replica, wait_for, wait_replica_ready, word_errors

pytestmark = pytest.mark.slow

RATE = 16000
FRAME = 320  # 20 ms
FIRST = ("What are your opening hours on Saturday?", "I would like to book an appointment.")
NEXT = ("Please cancel my appointment on Friday.", "Is there parking near the entrance?")
# The caller speaks again this soon after the kill: takeover takes PA_DEAD_AFTER_S (1.0 s in
# tests) plus up to a heartbeat or two, so the utterance starts before anyone listens.
SPEAK_AFTER_KILL_S = 0.5


@pytest.fixture(scope="module")
def speech() -> dict[str, np.ndarray]:
    """Piper speech at 16 kHz as int16, keyed by text."""
    texts = [*FIRST, *NEXT]
    return {u.text: (u.pcm * 32767).astype(np.int16) for u in synthesize(texts, phone=False)}


def started(call_id: str) -> call_pb2.CallStarted:
    return call_pb2.CallStarted(
        meta=common_pb2.EventMeta(call_id=call_id), direction=call_pb2.DIRECTION_INBOUND, sample_rate=RATE
    )


class Caller:
    """One call's caller audio, published as real-time 20 ms frames (silence when idle)."""

    def __init__(self, bus: Bus, call_id: str, owner: str) -> None:
        self.call_id = call_id
        self.replay = AudioReplay(bus, call_id)  # what the edge keeps for a new ASR owner
        self.replay.owner = owner
        self.pending = np.zeros(0, np.int16)
        self.seq = 0
        self.finals: list[speech_pb2.Transcript] = []
        self.errors: list[common_pb2.Error] = []

    def say(self, pcm: np.ndarray, pause_before_s: float = 0.3) -> None:
        silence = np.zeros(int(pause_before_s * RATE), np.int16)
        self.pending = np.concatenate([self.pending, silence, pcm])

    def frame(self, pcm: bytes, rate: int = RATE) -> media_pb2.AudioFrame:
        self.seq += 1
        return media_pb2.AudioFrame(
            meta=common_pb2.EventMeta(call_id=self.call_id),
            sequence=self.seq,
            pcm=pcm,
            sample_rate=rate,
            capture_unix_ns=time.time_ns(),
        )

    def next_frame(self) -> media_pb2.AudioFrame:
        chunk, self.pending = self.pending[:FRAME], self.pending[FRAME:]
        if len(chunk) < FRAME:
            chunk = np.concatenate([chunk, np.zeros(FRAME - len(chunk), np.int16)])
        return self.frame(chunk.astype("<i2").tobytes())

    async def on_final(self, tr: speech_pb2.Transcript, _: Delivery) -> None:
        if tr.final:
            self.finals.append(tr)
            self.replay.transcribed(tr.speech_end_unix_ns)  # as the edge's call flow does

    async def on_asr(self, ev: speech_pb2.AsrEvent, _: Delivery) -> None:
        if ev.WhichOneof("event") == "error":
            self.errors.append(ev.error)


async def pace(bus: Bus, callers: list[Caller], stop: asyncio.Event) -> None:
    """The edge's side: every 20 ms, one frame per call, until ``stop``."""
    t0 = time.perf_counter()
    k = 0
    while not stop.is_set():
        for c in callers:
            frame = c.next_frame()
            await bus.publish(subjects.audio_in(c.call_id), frame)
            c.replay.keep(frame)
        k += 1
        await asyncio.sleep(max(0.0, t0 + k * FRAME / RATE - time.perf_counter()))


def assert_heard(text: str, final: speech_pb2.Transcript) -> None:
    errors, words = word_errors(text, final.text)
    assert errors <= max(1, words // 4), f"expected {text!r}, got {final.text!r}"


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


async def claim_spread(bus: Bus, replicas: tuple[str, str], per_replica: int) -> dict[str, str]:
    """Claim calls until each replica owns ``per_replica``; calls beyond that are ended again."""
    owners: dict[str, str] = {}
    for i in range(24):
        call_id = f"asr-rep-{i}"
        owners[call_id] = (await claim_session(bus, "asr", started(call_id))).replica_id
        counts = [sum(1 for o in owners.values() if o == r) for r in replicas]
        if min(counts) >= per_replica:
            break
    keep: dict[str, str] = {}
    for call_id, owner in owners.items():
        if sum(1 for o in keep.values() if o == owner) < per_replica:
            keep[call_id] = owner
        else:
            ended = call_pb2.CallEvent(ended=call_pb2.CallEnded(meta=common_pb2.EventMeta(call_id=call_id)))
            await bus.publish(subjects.lifecycle(call_id), ended, lane=Lane.CONTROL)
    return keep


async def test_a_killed_replica_loses_no_caller_utterance_and_bad_audio_is_reported(
    fresh_nats: str, service_env: dict[str, str], tmp_path: Path, speech: dict[str, np.ndarray]
) -> None:
    replicas = ("asr-a", "asr-b")
    procs = {
        r: spawn_replica(
            ["-m", "phoneagent.cli", "serve", "asr"], service_env, fresh_nats, r, tmp_path, PA_ASR_THREADS="1"
        )
        for r in replicas
    }
    bus = Bus("edge-test")
    stop = asyncio.Event()
    pacer: asyncio.Task[None] | None = None
    try:
        ports = {r: await wait_replica_ready(st, p) for r, (p, st) in procs.items()}
        await bus.connect(fresh_nats)
        owners = await claim_spread(bus, replicas, per_replica=2)
        assert sorted(owners.values()) == ["asr-a", "asr-a", "asr-b", "asr-b"], owners
        callers = [Caller(bus, c, owner) for c, owner in owners.items()]
        for c in callers:
            await c.replay.watch()
            await bus.subscribe(subjects.transcript(c.call_id), speech_pb2.Transcript, c.on_final)
            await bus.subscribe(subjects.asr_events(c.call_id), speech_pb2.AsrEvent, c.on_asr)
        pacer = asyncio.create_task(pace(bus, callers, stop))

        # Every call is transcribed by the replica that owns it.
        for i, c in enumerate(callers):
            c.say(speech[FIRST[i % 2]], pause_before_s=0.3 + 0.4 * i)
        await wait_for(lambda: all(c.finals for c in callers), timeout=45, interval=0.05)
        for i, c in enumerate(callers):
            assert len(c.finals) == 1 and c.finals[0].meta.producer == f"asr/{owners[c.call_id]}"
            assert_heard(FIRST[i % 2], c.finals[0])

        # Kill one replica between two utterances; the callers speak again 0.5 s later, before
        # the survivor has taken the dead replica's calls over.
        os.kill(procs["asr-a"][0].pid, signal.SIGKILL)
        for i, c in enumerate(callers):
            c.say(speech[NEXT[i % 2]], pause_before_s=SPEAK_AFTER_KILL_S)
        await wait_for(lambda: all(len(c.finals) >= 2 for c in callers), timeout=60, interval=0.05)
        for i, c in enumerate(callers):
            assert len(c.finals) == 2, [f.text for f in c.finals]
            nxt = c.finals[1]
            assert nxt.meta.producer == "asr/asr-b"
            assert nxt.meta.turn_id > c.finals[0].meta.turn_id, "turn ids must go on after a takeover"
            assert_heard(NEXT[i % 2], nxt)
            # The dead replica's calls got the edge's replay; the survivor's own calls did not.
            assert c.replay.replays == (1 if owners[c.call_id] == "asr-a" else 0), c.replay.replays

        # Bad audio gets a clear error on the call's asr subject; the session keeps working.
        c = callers[0]
        subject = subjects.audio_in(c.call_id)
        await bus.publish(subject, c.frame(b"\x00\x01" * 160, rate=8000))
        await bus.publish(subject, c.frame(b""))
        await bus.publish(subject, c.frame(b"\x00" * 641))
        await wait_for(lambda: len(c.errors) >= 3, timeout=10, interval=0.05)
        messages = [e.message for e in c.errors]
        assert any("sample rate must be 16000 Hz, got 8000" in m for m in messages), messages
        assert any("empty" in m for m in messages), messages
        assert any("even number of bytes" in m for m in messages), messages
        assert all(e.kind == common_pb2.ERROR_KIND_INVALID_ARGUMENT and e.source == "asr" for e in c.errors)
        c.say(speech[FIRST[1]], pause_before_s=0.3)
        await wait_for(lambda: len(c.finals) >= 3, timeout=30, interval=0.05)
        assert_heard(FIRST[1], c.finals[2])

        text = metrics_text(ports["asr-b"])
        for name in (
            'pa_asr_final_latency_seconds_count{engine="faster-whisper"}',
            'pa_asr_real_time_factor_count{engine="faster-whisper"}',
            'pa_active_sessions{stage="asr"} 4.0',
            'pa_queue_depth{queue="asr:decode"} 0.0',  # every utterance decoded: nothing waits
        ):
            assert name in text, name
    finally:
        stop.set()
        if pacer is not None:
            await asyncio.wait_for(pacer, 5)
        await bus.close()
        for p, _ in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p, _ in procs.values():
            p.wait(20)

"""The operator console under test: a records service (real nats-server, real records worker)
holding the sample call, with a real stereo recording and policy decisions in PA_AUDIT."""

from __future__ import annotations

import asyncio
import time
import wave
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
from phoneagent.records.builder import CallRecord
from phoneagent.records.service import RecordsService
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus
from phoneagent.v1 import media_pb2, policy_pb2

from support.policy_stack import running_records
from support.records_sample_call import MS, meta, publish_call

TOKEN = "console-token-5d1e"
SAMPLE = "cconsole1"
RECORDING_S = 9.0
RATE = 8000


def stereo_wav(path: Path, seconds: float = RECORDING_S) -> Path:
    """A stereo 8 kHz WAV: a tone for the caller (left) and another for the agent (right)."""
    t = np.arange(int(seconds * RATE)) / RATE
    left = (3000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)
    right = (3000 * np.sin(2 * np.pi * 500 * t)).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.column_stack((left, right)).astype("<i2").tobytes())
    return path


def decision(
    call_id: str, subject: str, rule: str, allow: bool, ts: int, reason: str
) -> policy_pb2.PolicyDecision:
    return policy_pb2.PolicyDecision(
        meta=meta(call_id, ts=ts),
        decision_id=f"{call_id}-{rule}",
        decision=policy_pb2.DECISION_ALLOW if allow else policy_pb2.DECISION_DENY,
        subject=subject,
        rule=rule,
        reason=reason,
        decided_unix_ns=ts,
    )


async def publish_sample(bus: Bus, tmp: Path, call_id: str = SAMPLE) -> int:
    """The sample call, its recording (allowed at t0 + 100 ms) and its policy decisions, plus a
    dial denied by the DNC list; returns the call's t0."""
    t0 = time.time_ns() - 120 * 10**9
    js = bus.jetstream()
    for d in (
        decision(call_id, "disclosure", "ai_disclosure", True, t0 + 150 * MS, "disclosure spoken"),
        decision(
            call_id, "recording", "one_party_notice", True, t0 + 100 * MS, "one-party state, notice given"
        ),
        decision("none", "dial", "internal_dnc", False, t0 + 50 * MS, "number is on the do-not-call list"),
    ):
        subject = subjects.audit(d.meta.call_id)
        await js.publish(subject, d.SerializeToString(), stream=subjects.AUDIT_STREAM)
    await publish_call(bus, call_id, t0)
    wav = stereo_wav(tmp / f"{call_id}.wav")
    await bus.publish(
        subjects.recording(call_id),
        media_pb2.RecordingStored(
            meta=meta(call_id),
            uri=str(wav),
            format="wav",
            sample_rate=RATE,
            duration_ms=int(RECORDING_S * 1000),
            size_bytes=wav.stat().st_size,
        ),
    )
    return t0


async def record_where(
    svc: RecordsService, call_id: str, check: Callable[[CallRecord], bool], timeout: float = 30.0
) -> CallRecord:
    """The call's stored record once ``check`` holds (the worker folds events as they come)."""
    assert svc.records is not None
    deadline = time.monotonic() + timeout
    while True:
        rec = await asyncio.to_thread(svc.records.get, call_id)
        if rec is not None and check(rec):
            return rec
        assert time.monotonic() < deadline, f"record of {call_id} never got there"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def console_service(nats_url: str, tmp: Path, token: str = TOKEN) -> AsyncIterator[RecordsService]:
    """The records service with its console on a free loopback port."""
    async with running_records(nats_url, tmp / "records.sqlite3", api_token=token, console_port=0) as svc:
        assert svc.console_url.startswith("http://127.0.0.1:"), svc.console_url
        yield svc

"""The per-call recorder on a real bus: permission from policy's signed decisions, what is kept,
bad disks."""

from __future__ import annotations

import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from phoneagent.edge.recorder import CallRecording, RecordingConfig, upload_s3
from phoneagent.edge.settings import EdgeSettings
from phoneagent.runtime import metrics, subjects
from phoneagent.runtime.bus import Bus
from phoneagent.runtime.errors import ErrorKind
from phoneagent.runtime.settings import load
from phoneagent.v1 import policy_pb2
from support.common import repeat_until_seen, wait_for
from support.recording import CALL, VERIFIER, decide, decide_until, decision


def frames(value: int, n: int) -> list[np.ndarray]:
    return [np.full(160, value, np.int16) for _ in range(n)]


async def test_stop_keeps_only_what_was_allowed(bus: Bus, tmp_path: Path) -> None:
    rec = CallRecording(bus, CALL, 8000, RecordingConfig(tmp_path), VERIFIER)
    await rec.start()
    for f in frames(1, 5):
        rec.add(f, f)  # before any decision: not recorded
    await decide(bus, policy_pb2.DECISION_ALLOW, "disclosure", subject="disclosure")
    await decide_until(bus, lambda: rec.allowed, policy_pb2.DECISION_ALLOW, "one_party_notice")
    for f in frames(100, 10):
        rec.add(f, -f)
    await decide_until(bus, lambda: rec.refused, policy_pb2.DECISION_DENY, "caller_stopped")
    assert rec._sub is not None
    before = rec._sub.received
    await decide(bus, policy_pb2.DECISION_ALLOW, "consent_given")  # does not resume
    await decide(bus, policy_pb2.DECISION_DENY, "caller_stopped")
    await wait_for(lambda: rec._sub is not None and rec._sub.received >= before + 2, timeout=5)
    assert not rec.allowed
    for f in frames(7, 10):
        rec.add(f, f)

    stored = await rec.finish()
    assert stored is not None and stored.duration_ms == 200
    with wave.open(stored.uri, "rb") as wav:
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(-1, 2)
    assert (pcm[:, 0] == 100).all() and (pcm[:, 1] == -100).all() and len(pcm) == 1600
    assert [p.name for p in tmp_path.iterdir()] == [f"{CALL}.wav"]


async def test_short_frames_are_padded_and_silence_fills_a_missing_caller(bus: Bus, tmp_path: Path) -> None:
    rec = CallRecording(bus, CALL, 8000, RecordingConfig(tmp_path), VERIFIER)
    await rec.start()
    await decide_until(bus, lambda: rec.allowed, policy_pb2.DECISION_ALLOW, "consent_given")
    rec.add(None, np.full(100, 5, np.int16))
    rec.add(np.full(400, 3, np.int16), np.zeros(0, np.int16))
    stored = await rec.finish()
    assert stored is not None and stored.duration_ms == 40
    with wave.open(stored.uri, "rb") as wav:
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(-1, 2)
    assert (pcm[:160, 0] == 0).all() and (pcm[:100, 1] == 5).all() and (pcm[100:160, 1] == 0).all()
    assert (pcm[160:, 0] == 3).all() and (pcm[160:, 1] == 0).all()


async def test_nothing_stored_without_permission_or_with_a_bad_volume(bus: Bus, tmp_path: Path) -> None:
    rec = CallRecording(bus, CALL, 8000, RecordingConfig(tmp_path / "none"), VERIFIER)
    await rec.start()
    for f in frames(1, 5):
        rec.add(f, f)
    assert await rec.finish() is None
    assert not (tmp_path / "none").exists()

    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    rec = CallRecording(bus, CALL, 8000, RecordingConfig(blocked), VERIFIER)
    await rec.start()
    await decide_until(
        bus,
        lambda: rec._sub is not None and rec._sub.received > 0,
        policy_pb2.DECISION_ALLOW,
        "one_party_notice",
    )
    rec.add(*frames(1, 2))
    assert not rec.allowed and await rec.finish() is None


async def test_an_altered_or_unsigned_decision_is_ignored(bus: Bus, tmp_path: Path) -> None:
    """A DENY turned into an ALLOW after signing, or an ALLOW without a signature, starts nothing."""
    rec = CallRecording(bus, CALL, 8000, RecordingConfig(tmp_path), VERIFIER)
    await rec.start()

    def refused(reason: str) -> float:
        return float(metrics.APPROVALS_REFUSED.labels(action="recording", reason=reason)._value.get())

    flipped = decision(policy_pb2.DECISION_DENY, "consent_refused")
    flipped.decision, flipped.rule = policy_pb2.DECISION_ALLOW, "consent_given"
    unsigned = decision(policy_pb2.DECISION_ALLOW, "one_party_notice")
    unsigned.ClearField("approval")
    for record, reason in ((flipped, "mismatch"), (unsigned, "unsigned")):
        before = refused(reason)
        await repeat_until_seen(
            lambda r=record: bus.publish(subjects.audit(CALL), r),
            lambda why=reason, n=before: refused(why) > n,
            reason,
        )
    rec.add(*frames(1, 2))
    assert not rec.allowed and not rec.refused and await rec.finish() is None
    assert not list(tmp_path.iterdir())


def test_s3_needs_the_s3_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # as without the extra: the import fails
    with pytest.raises(Exception, match=r"PA_RECORDING_S3_URL: needs boto3.*phone-agent\[s3\]"):
        load(EdgeSettings, recording_s3_url="s3://bucket/calls")
    with pytest.raises(Exception) as err:
        upload_s3(tmp_path / "x.wav", "s3://bucket/calls")
    assert getattr(err.value, "kind", None) is ErrorKind.MODEL_UNAVAILABLE and "[s3]" in str(err.value)


def test_s3_url_must_name_a_bucket() -> None:
    with pytest.raises(Exception, match="PA_RECORDING_S3_URL"):
        load(EdgeSettings, recording_s3_url="https://bucket")

"""The edge's recording volume: retention deletes expired recordings where they are (files on
the edge's volume; objects in an S3-compatible store, a real moto server on loopback), and the
free-space guard stops recording, never the call, before the volume fills, and says so in the
recording event the call record is built from. Real nats-server for the recorder."""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from moto.server import ThreadedMotoServer
from phoneagent.edge.recorder import CallRecording, RecordingConfig, upload_s3
from phoneagent.edge.recording_volume import (
    LOW_DISK,
    RecordingRetention,
    VolumeGuard,
    parse_quantity,
    purge_local,
    purge_s3,
)
from phoneagent.edge.settings import EdgeSettings
from phoneagent.records.builder import CallRecord, apply_recording
from phoneagent.runtime import metrics, subjects
from phoneagent.runtime.bus import Bus, Delivery
from phoneagent.runtime.settings import load
from phoneagent.v1 import media_pb2, policy_pb2
from support.common import wait_for
from support.recording import CALL, VERIFIER, decide_until

DAY = 86400.0
BUCKET = "recordings"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A moto S3 server on a free loopback port; boto3 clients of this test reach it."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    # moto keeps its buckets in the process: each test starts from none
    urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST"))
    for var, value in {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(var, value)
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    try:
        yield client
    finally:
        server.stop()


def wav(path: Path, age_days: float = 0.0) -> Path:
    path.write_bytes(b"RIFF....WAVE")
    then = time.time() - age_days * DAY
    os.utime(path, (then, then))
    return path


def keys(client: Any) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def test_local_purge_deletes_expired_recordings_and_a_crashs_leftovers(tmp_path: Path) -> None:
    old = wav(tmp_path / "c-old.wav", age_days=31)
    new = wav(tmp_path / "c-new.wav", age_days=29)
    stale_part = wav(tmp_path / ".c-crashed.wav.part", age_days=2)
    live_part = wav(tmp_path / ".c-live.wav.part")
    other = wav(tmp_path / "notes.txt", age_days=400)
    before = metrics.RECORDINGS_PURGED.labels(store="local")._value.get()
    assert purge_local(tmp_path, time.time() - 30 * DAY) == 2
    assert not old.exists() and not stale_part.exists()
    assert new.exists() and live_part.exists() and other.exists()
    assert metrics.RECORDINGS_PURGED.labels(store="local")._value.get() == before + 2
    assert purge_local(tmp_path / "missing", time.time()) == 0


def test_s3_purge_deletes_expired_objects_under_the_prefix(s3: Any, tmp_path: Path) -> None:
    for name in ("c1.wav", "c2.wav"):
        upload_s3(wav(tmp_path / name), f"s3://{BUCKET}/calls")
    s3.put_object(Bucket=BUCKET, Key="calls/readme.txt", Body=b"not a recording")
    s3.put_object(Bucket=BUCKET, Key="other/c3.wav", Body=b"another prefix")
    url = f"s3://{BUCKET}/calls"
    assert purge_s3(url, time.time() - DAY) == 0  # nothing that old yet
    assert keys(s3) == ["calls/c1.wav", "calls/c2.wav", "calls/readme.txt", "other/c3.wav"]
    assert purge_s3(url, time.time() + 60) == 2  # once past the cutoff: the recordings go
    assert keys(s3) == ["calls/readme.txt", "other/c3.wav"]


async def test_the_edges_retention_task_purges_both_stores_and_survives_failures(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = wav(tmp_path / "c-old.wav", age_days=10)
    kept = wav(tmp_path / "c-kept.wav", age_days=1)
    upload_s3(wav(tmp_path / "up.wav"), f"s3://{BUCKET}/calls")
    (tmp_path / "up.wav").unlink()
    guard = VolumeGuard(tmp_path, 0)
    retention = RecordingRetention(guard, 5.0, f"s3://{BUCKET}/calls", every_s=3600)
    await retention.purge_once()
    assert not old.exists() and kept.exists()
    assert keys(s3) == ["calls/up.wav"]  # uploaded now: within the five days
    assert metrics.RECORDING_VOLUME_FREE._value.get() > 0

    failures = metrics.RECORDING_PURGE_FAILURES.labels(store="s3")
    before = failures._value.get()
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    await retention.purge_once()
    assert failures._value.get() == before + 1 and retention.rounds == 2


def test_retention_and_free_space_settings() -> None:
    s = load(EdgeSettings, {})
    assert (s.recording_retention_days, s.recording_min_free_mb) == (30.0, 1024)
    with pytest.raises(Exception, match="PA_RECORDING_RETENTION_DAYS"):
        load(EdgeSettings, {"PA_RECORDING_RETENTION_DAYS": "-1"})


@dataclass(frozen=True)
class SwitchableVolume(VolumeGuard):
    """A volume whose free space the test sets."""

    free: list[int] = field(default_factory=lambda: [1 << 40])

    def free_bytes(self) -> int | None:
        return self.free[0]


async def stored_events(bus: Bus) -> list[media_pb2.RecordingStored]:
    events: list[media_pb2.RecordingStored] = []

    async def on(msg: media_pb2.RecordingStored, _: Delivery) -> None:
        events.append(msg)

    await bus.subscribe(subjects.recording(CALL), media_pb2.RecordingStored, on)
    return events


def frames(n: int) -> list[np.ndarray]:
    return [np.full(160, 100, np.int16) for _ in range(n)]


async def test_a_full_volume_starts_no_recording_and_the_record_says_why(bus: Bus, tmp_path: Path) -> None:
    events = await stored_events(bus)
    volume = SwitchableVolume(tmp_path, 1 << 30, free=[1 << 20])  # 1 MiB free, 1 GiB wanted
    rec = CallRecording(bus, CALL, 8000, RecordingConfig(tmp_path, guard=volume), VERIFIER)
    incomplete = metrics.RECORDINGS_INCOMPLETE.labels(reason=LOW_DISK)
    before = incomplete._value.get()
    await rec.start()
    await decide_until(bus, lambda: rec.incomplete == LOW_DISK, policy_pb2.DECISION_ALLOW, "consent_given")
    for f in frames(10):
        rec.add(f, f)  # the call goes on; nothing is written
    assert not rec.allowed and await rec.finish() is None
    assert not list(tmp_path.iterdir())
    await wait_for(lambda: events, timeout=5)
    assert (events[0].uri, events[0].incomplete_reason) == ("", LOW_DISK)
    assert incomplete._value.get() == before + 1
    record = CallRecord(call_id=CALL)
    apply_recording(record, events[0])
    assert record.recording["incomplete_reason"] == LOW_DISK


async def test_a_recording_stops_when_the_volume_fills_and_keeps_what_it_has(
    bus: Bus, tmp_path: Path
) -> None:
    events = await stored_events(bus)
    volume = SwitchableVolume(tmp_path, 1 << 30)
    rec = CallRecording(bus, CALL, 8000, RecordingConfig(tmp_path, guard=volume), VERIFIER)
    await rec.start()
    await decide_until(bus, lambda: rec.allowed, policy_pb2.DECISION_ALLOW, "consent_given")
    volume.free[0] = 1 << 20  # the volume fills during the call
    for f in frames(400):  # 8 s: the writer checks every 5 s of audio
        rec.add(f, f)
    stored = await rec.finish()
    assert stored is not None and stored.incomplete_reason == LOW_DISK
    assert stored.duration_ms == 249 * 20  # up to the check that found the volume full
    assert Path(stored.uri).is_file()
    await wait_for(lambda: events, timeout=5)
    assert events[0].incomplete_reason == LOW_DISK and events[0].duration_ms == 249 * 20


def test_a_volume_limit_the_filesystem_does_not_show_counts_what_the_recordings_hold(tmp_path: Path) -> None:
    """An emptyDir's sizeLimit: the node's disk may be empty while the pod is about to be evicted."""
    (tmp_path / "c1.wav").write_bytes(b"\0" * 600_000)
    (tmp_path / ".c2.wav.part").write_bytes(b"\0" * 300_000)
    guard = VolumeGuard(tmp_path, min_free_bytes=200_000, limit_bytes=1_000_000)
    assert guard.free_bytes() == 100_000 and not guard.has_room()
    (tmp_path / "c1.wav").unlink()  # uploaded, or purged
    assert guard.free_bytes() == 700_000 and guard.has_room()
    assert (parse_quantity("2Gi"), parse_quantity("500M"), parse_quantity("1024")) == (
        2 << 30,
        500_000_000,
        1024,
    )
    with pytest.raises(ValueError):
        parse_quantity("2 gigs")
    with pytest.raises(Exception, match="PA_RECORDING_VOLUME_LIMIT"):
        load(EdgeSettings, {"PA_RECORDING_VOLUME_LIMIT": "lots"})

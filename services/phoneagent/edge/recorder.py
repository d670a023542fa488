"""Call recordings at the edge: a stereo WAV per call, only with policy's permission.

The caller is on the left channel, the agent on the right, 16-bit PCM at the call's media rate
(8 kHz for SIP). :class:`RecordingTransport` wraps a call's transport and hands each 20 ms pair of
frames (the caller frame pulled, the agent frame sent) to :class:`CallRecording`; the media loop
only converts and enqueues, while a worker thread writes to a hidden ``.part`` file in the
recording directory. The queue is bounded (about ten seconds of audio); when the disk stalls
past that, frames are dropped and counted instead of growing memory or blocking the call.

Permission comes from policy: the call's audit subject carries ``PolicyDecision`` records, and
recording starts only at an ALLOW with subject ``recording`` and rule ``one_party_notice`` or
``consent_given`` that carries policy's signature for this call, decision and rule
(:mod:`phoneagent.runtime.approvals`); a recording decision without one is ignored and counted.
Without such a decision nothing is written (fail closed). A DENY for
``recording`` (``consent_refused`` or ``caller_stopped``) stops recording from that moment for the
rest of the call, and a later ALLOW does not resume it; what was recorded while it was allowed is
kept, since the caller was told of it or agreed to it when it was captured.

At call end the file is closed, renamed to ``<call_id>.wav`` in one step (readers never see a
partial file), hashed, optionally uploaded to an S3-compatible store (``PA_RECORDING_S3_URL``,
extra ``s3``; endpoint and credentials from the usual ``AWS_*`` variables), and announced with
``RecordingStored`` on ``subjects.recording(call_id)``.

The volume's free space is checked before a recording starts and every few seconds while it
runs (:class:`~phoneagent.edge.recording_volume.VolumeGuard`): below the threshold the recording
does not start, or stops keeping what it has, and ``RecordingStored.incomplete_reason`` says so
in the call's record. The call is never affected.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from phoneagent.edge.call_transport import CallTransport
from phoneagent.edge.recording_volume import LOW_DISK, VolumeGuard, s3_client
from phoneagent.runtime import approvals, subjects
from phoneagent.runtime.approvals import NotApproved, Verifier
from phoneagent.runtime.bus import Bus, Delivery, Lane, Subscription
from phoneagent.runtime.errors import PhoneAgentError, Unavailable
from phoneagent.runtime.meta import new_meta
from phoneagent.runtime.metrics import APPROVALS_REFUSED, RECORDINGS_INCOMPLETE
from phoneagent.runtime.modelfiles import sha256_file
from phoneagent.v1 import media_pb2, policy_pb2

log = logging.getLogger(__name__)
ALLOW_RULES = frozenset({"one_party_notice", "consent_given"})
QUEUE_FRAMES = 500  # 10 s of 20 ms frames
GUARD_EVERY_FRAMES = 250  # the writer checks the volume's free space every 5 s of audio


@dataclass(frozen=True)
class RecordingConfig:
    directory: Path
    s3_url: str = ""  # s3://bucket/prefix; empty = keep on local disk
    guard: VolumeGuard | None = None  # free-space threshold; None = no check


@dataclass(frozen=True)
class StoredRecording:
    uri: str
    sample_rate: int
    duration_ms: int
    size_bytes: int
    sha256: str
    incomplete_reason: str = ""  # stopped before the call ended (e.g. low_disk)


class _WavWriter:
    """A worker thread appending interleaved stereo frames to a WAV file from a bounded queue."""

    def __init__(self, path: Path, rate: int, guard: VolumeGuard | None = None) -> None:
        self.path = path
        self.rate = rate
        self.guard = guard
        self.frames = 0
        self.dropped = 0
        self.failed = False
        self.stopped = ""  # why writing stopped before the end (the rest of the call is not kept)
        self._queue: queue.Queue[bytes | None] = queue.Queue(QUEUE_FRAMES)
        self._thread = threading.Thread(target=self._run, name="recording-writer", daemon=True)
        self._thread.start()

    def put(self, data: bytes) -> None:
        try:
            self._queue.put_nowait(data)
        except queue.Full:
            self.dropped += 1

    def close(self) -> None:
        """Write what is queued and close the file (blocking: call from a thread)."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        try:
            with wave.open(str(self.path), "wb") as wav:
                wav.setnchannels(2)
                wav.setsampwidth(2)
                wav.setframerate(self.rate)
                written = 0
                while (data := self._queue.get()) is not None:
                    if self.stopped:
                        continue  # drained, not written
                    written += 1
                    if (
                        self.guard is not None
                        and written % GUARD_EVERY_FRAMES == 0
                        and not self.guard.has_room()
                    ):
                        self.stopped = LOW_DISK
                        log.warning("recording stopped: volume nearly full", extra={"frames": self.frames})
                        continue
                    wav.writeframesraw(data)
                    self.frames += len(data) // 4
            with open(self.path, "rb+") as f:
                os.fsync(f.fileno())
        except OSError as exc:
            self.failed = True
            log.warning("recording write failed", extra={"errno": exc.errno})
            while self._queue.get() is not None:
                pass  # drain so that close() returns


class CallRecording:
    """One call's recording: permission from the audit subject, frames in, a stored file out."""

    def __init__(
        self, bus: Bus, call_id: str, rate: int, config: RecordingConfig, verifier: Verifier
    ) -> None:
        self.bus = bus
        self.verifier = verifier
        self.call_id = call_id
        self.rate = rate
        self.frame = rate // 50
        self.config = config
        self.allowed = False
        self.refused = False  # a DENY arrived: never record again in this call
        self.writer: _WavWriter | None = None
        self.incomplete = ""  # why a recording policy allowed did not start (e.g. low_disk)
        self._sub: Subscription[Any] | None = None
        self._part = config.directory / f".{call_id}.wav.part"

    def transport(self, inner: CallTransport) -> RecordingTransport:
        return RecordingTransport(inner, self)

    async def start(self) -> None:
        """Listen for policy's recording decisions on the call's audit subject."""
        self._sub = await self.bus.subscribe(
            subjects.audit(self.call_id), policy_pb2.PolicyDecision, self.on_decision, lane=Lane.CONTROL
        )

    async def on_decision(self, d: policy_pb2.PolicyDecision, _: Delivery) -> None:
        if d.subject != "recording" or not self._signed(d):
            return
        if d.decision == policy_pb2.DECISION_ALLOW and d.rule in ALLOW_RULES and not self.refused:
            if self.writer is None:
                self.writer = await self._open_writer()
            self.allowed = self.writer is not None
        elif d.decision == policy_pb2.DECISION_DENY:
            self.allowed, self.refused = False, True
        else:
            return
        log.info(
            "recording permission",
            extra={"call_id": self.call_id, "rule": d.rule, "recording": self.allowed},
        )

    def _signed(self, d: policy_pb2.PolicyDecision) -> bool:
        """Whether ``d`` carries policy's signature for this call, its decision and its rule."""
        try:
            self.verifier.check(
                d.approval if d.HasField("approval") else None,
                action=approvals.RECORDING,
                call_id=self.call_id,
                decision=approvals.recording_decision(d),
            )
            if d.approval.decision_id != d.decision_id:
                raise NotApproved(approvals.RECORDING, "mismatch", "approval is for another decision")
        except NotApproved as exc:
            APPROVALS_REFUSED.labels(action=exc.action, reason=exc.reason).inc()
            log.warning("recording decision refused", extra={"call_id": self.call_id, "reason": exc.reason})
            return False
        return True

    async def _open_writer(self) -> _WavWriter | None:
        guard = self.config.guard
        if guard is not None and not await asyncio.to_thread(guard.has_room):
            if not self.incomplete:
                RECORDINGS_INCOMPLETE.labels(reason=LOW_DISK).inc()
            self.incomplete = LOW_DISK
            log.warning("recording not started: volume nearly full", extra={"call_id": self.call_id})
            return None
        try:
            self.config.directory.mkdir(parents=True, exist_ok=True)
            writer = _WavWriter(self._part, self.rate, guard)
            self.incomplete = ""
            return writer
        except OSError as exc:
            log.warning("recording not started", extra={"call_id": self.call_id, "errno": exc.errno})
            return None

    def add(self, caller: np.ndarray | None, agent: np.ndarray) -> None:
        """One 20 ms pair from the media loop; cheap and never blocking."""
        if not self.allowed or self.writer is None:
            return
        left = self._fit(caller)
        right = self._fit(agent)
        self.writer.put(np.column_stack((left, right)).astype("<i2").tobytes())

    def _fit(self, pcm: np.ndarray | None) -> np.ndarray:
        if pcm is None or len(pcm) == 0:
            return np.zeros(self.frame, np.int16)
        if len(pcm) >= self.frame:
            return pcm[: self.frame]
        return np.pad(pcm, (0, self.frame - len(pcm)))

    async def finish(self) -> StoredRecording | None:
        """Stop listening, store the file and publish RecordingStored; None when nothing was recorded."""
        self.allowed = False
        if self._sub is not None:
            await self.bus.unsubscribe(self._sub)
            self._sub = None
        if self.writer is None:
            if self.incomplete:  # allowed, never started: the record says why
                await self._publish(StoredRecording("", self.rate, 0, 0, "", self.incomplete))
            return None
        writer, self.writer = self.writer, None
        try:
            stored = await asyncio.to_thread(self._store, writer)
        except PhoneAgentError as exc:
            log.warning("recording not stored", extra={"call_id": self.call_id, "error_kind": exc.kind.name})
            return None
        except OSError as exc:
            log.warning("recording not stored", extra={"call_id": self.call_id, "errno": exc.errno})
            return None
        if stored is not None:
            await self._publish(stored)
        return stored

    def _store(self, writer: _WavWriter) -> StoredRecording | None:
        writer.close()
        if writer.dropped:
            log.warning("recording frames dropped", extra={"call_id": self.call_id, "frames": writer.dropped})
        if writer.stopped:
            RECORDINGS_INCOMPLETE.labels(reason=writer.stopped).inc()
        if writer.failed or writer.frames == 0:
            self._part.unlink(missing_ok=True)
            if writer.stopped:
                return StoredRecording("", self.rate, 0, 0, "", writer.stopped)
            return None
        final = self.config.directory / f"{self.call_id}.wav"
        os.replace(self._part, final)
        size, digest = final.stat().st_size, sha256_file(final)
        uri = str(final.resolve())
        if self.config.s3_url:
            uri = upload_s3(final, self.config.s3_url)
            final.unlink()
        duration = writer.frames * 1000 // self.rate
        return StoredRecording(uri, self.rate, duration, size, digest, writer.stopped)

    async def _publish(self, stored: StoredRecording) -> None:
        msg = media_pb2.RecordingStored(
            meta=new_meta(self.call_id, "edge"),
            uri=stored.uri,
            format="wav",
            sample_rate=stored.sample_rate,
            duration_ms=stored.duration_ms,
            size_bytes=stored.size_bytes,
            sha256=stored.sha256,
            incomplete_reason=stored.incomplete_reason,
        )
        try:
            await self.bus.publish(subjects.recording(self.call_id), msg, lane=Lane.CONTROL)
        except PhoneAgentError as exc:
            log.warning(
                "recording event not published", extra={"call_id": self.call_id, "error_kind": exc.kind.name}
            )
            return
        log.info(
            "recording stored",
            extra={"call_id": self.call_id, "duration_ms": stored.duration_ms, "size": stored.size_bytes},
        )


def upload_s3(path: Path, url: str) -> str:
    """Upload ``path`` under the bucket and prefix of an ``s3://bucket/prefix`` URL; its s3:// URI."""
    client = s3_client()
    from botocore.exceptions import BotoCoreError, ClientError

    parsed = urlparse(url)
    key = "/".join(p for p in (parsed.path.strip("/"), path.name) if p)
    try:
        client.upload_file(str(path), parsed.netloc, key)
    except (BotoCoreError, ClientError):
        raise Unavailable("recording upload to the object store failed") from None
    return f"s3://{parsed.netloc}/{key}"


class RecordingTransport:
    """A CallTransport that hands each tick's caller and agent frames to a recording."""

    def __init__(self, inner: CallTransport, recording: CallRecording) -> None:
        self.inner = inner
        self.recording = recording
        self.name = inner.name
        self.sample_rate = inner.sample_rate
        self._caller: np.ndarray | None = None

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)

    def pull_caller_frame(self) -> np.ndarray | None:
        frame = self.inner.pull_caller_frame()
        self._caller = frame
        return frame

    async def send_agent_frame(self, pcm: np.ndarray, speech: bool) -> None:
        caller, self._caller = self._caller, None
        self.recording.add(caller, pcm)
        await self.inner.send_agent_frame(pcm, speech)

    async def send_dtmf(self, digit: str) -> None:
        await self.inner.send_dtmf(digit)

    async def hangup(self, reason: str) -> None:
        await self.inner.hangup(reason)

    async def transfer(self, target: str, warm: bool, summary: str) -> tuple[bool, str]:
        return await self.inner.transfer(target, warm, summary)

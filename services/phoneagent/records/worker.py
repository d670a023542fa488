"""The records worker: durable JetStream pull consumers on PA_CALLS and PA_AUDIT.

PA_CALLS holds the call's lifecycle, recording and playout events and the redacted copies of its
transcripts, spoken sentences and tool records that policy publishes on ``record.*`` (the live
subjects carry raw text and are not stored); a message is decoded by its subject's last token,
so a stream from an older release, which stored the live subjects, is still read. The builder
redacts again before anything is stored.

Each message is folded into its call's record and stored before it is acknowledged, so a
restart neither loses nor misses anything: the durable consumer resumes where it stopped.
A redelivered message is recognised by its stream sequence and not applied twice. The two
consumers (and other replicas) change the same records concurrently, so each change is one
read-modify-write transaction (:meth:`RecordStore.update`).

A message that fails is never lost silently and never kills its consumer: a retryable error
(the database is away) is redelivered until it succeeds; any other failure is redelivered
up to ``MAX_DELIVERIES`` times and then terminated with an error log, so one poison message
cannot loop forever. :attr:`RecordsWorker.healthy` turns false when a consumer task ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from google.protobuf.message import DecodeError, Message
from nats.js.api import ConsumerConfig

from phoneagent.records import builder
from phoneagent.records.builder import CallRecord
from phoneagent.records.store import DEFAULT_DB, RecordStore
from phoneagent.runtime import subjects
from phoneagent.runtime.errors import PhoneAgentError
from phoneagent.runtime.settings import env, non_negative, positive
from phoneagent.runtime.tasks import TaskOwner
from phoneagent.v1 import call_pb2, media_pb2, policy_pb2, speech_pb2, tools_pb2

log = logging.getLogger(__name__)
ACK_WAIT_S = 5.0
NAK_DELAY_S = 2.0  # before a failed message comes again
MAX_DELIVERIES = 5  # a message failing for a non-retryable reason this often is terminated
Listener = Callable[[CallRecord, list[str]], Awaitable[None]]


def fan_out(*listeners: Listener) -> Listener:
    """One listener calling each of ``listeners`` in turn; a failing one does not stop the rest."""

    async def call_all(rec: CallRecord, events: list[str]) -> None:
        for listener in listeners:
            try:
                await listener(rec, events)
            except Exception:
                log.exception("records listener failed", extra={"call_id": rec.call_id})

    return call_all


@dataclasses.dataclass(frozen=True)
class RecordsSettings:
    db: str = env("PA_RECORDS_DB", DEFAULT_DB, doc="SQLite path or postgresql:// URL of call records")
    retention_days: float = env(
        "PA_RECORD_RETENTION_DAYS", 90.0, check=non_negative, doc="Days records are kept; 0 keeps forever"
    )
    purge_every_s: float = env("PA_RECORDS_PURGE_EVERY_S", 3600.0, check=positive, doc="Purge interval")
    durable: str = env("PA_RECORDS_CONSUMER", "records", doc="Durable consumer name prefix")


def _decode(leaf: str, data: bytes, headers: dict[str, str]) -> Message | None:
    types: dict[str, type[Message]] = {
        "lifecycle": call_pb2.CallEvent,
        "transcript": speech_pb2.Transcript,
        "say": speech_pb2.AgentText,
        "recording": media_pb2.RecordingStored,
        "playout": media_pb2.Playout,
        "audit": policy_pb2.PolicyDecision,
    }
    if leaf == "tool":
        kind = headers.get(subjects.TOOL_TYPE_HEADER, "")
        types["tool"] = {"ToolCall": tools_pb2.ToolCall, "ToolResult": tools_pb2.ToolResult}.get(kind)  # type: ignore[assignment]
    msg_type = types.get(leaf)
    if msg_type is None:
        return None
    msg = msg_type()
    try:
        msg.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError):
        return None
    return msg


def fold(rec: CallRecord, leaf: str, msg: Message, public: Sequence[str] = ()) -> list[str]:
    """Apply one event; returns the webhook events it raised. The parties' numbers are kept
    masked (the edge stores them so; a stream from an older release is masked here).
    ``public``: the business's own words, never masked in what is said."""
    before_transfers = len(rec.transfers)
    events: list[str] = []
    if isinstance(msg, call_pb2.CallEvent):
        builder.apply_lifecycle(rec, msg)
        kind = msg.WhichOneof("event")
        events += {"started": ["call.started"], "ended": ["call.ended"]}.get(kind or "", [])
    elif isinstance(msg, speech_pb2.Transcript):
        builder.apply_transcript(rec, msg, public)
    elif isinstance(msg, speech_pb2.AgentText):
        builder.apply_say(rec, msg, public)
    elif isinstance(msg, tools_pb2.ToolCall):
        builder.apply_tool_call(rec, msg)
    elif isinstance(msg, tools_pb2.ToolResult):
        builder.apply_tool_result(rec, msg)
    elif isinstance(msg, media_pb2.RecordingStored):
        builder.apply_recording(rec, msg)
    elif isinstance(msg, media_pb2.Playout):
        builder.apply_playout(rec, msg)
    elif isinstance(msg, policy_pb2.PolicyDecision):
        builder.apply_decision(rec, msg)
        if msg.subject == "opt_out":
            events.append("opt_out")
    if len(rec.transfers) > before_transfers:
        events.insert(0, "transfer")
    return events


class RecordsWorker:
    def __init__(
        self,
        js: Any,
        store: RecordStore,
        settings: RecordsSettings,
        listener: Listener | None = None,
        public: Sequence[str] = (),
    ) -> None:
        self.js = js
        self.public = tuple(public)  # the business's own words, never masked
        self.store = store
        self.settings = settings
        self.listener = listener
        self._tasks = TaskOwner("records")
        self._consumers: list[asyncio.Task[None]] = []
        self._psubs: list[Any] = []
        self._stopping = asyncio.Event()
        self.applied = 0
        self.terminated = 0  # poison messages given up on
        self.nak_delay_s = NAK_DELAY_S
        self.max_deliveries = MAX_DELIVERIES
        self.changed = asyncio.Event()  # set after each stored change (tests and status wait on it)

    @property
    def healthy(self) -> bool:
        """False once a consumer task has ended while the worker was not stopping."""
        return self._stopping.is_set() or all(not t.done() for t in self._consumers)

    async def start(self) -> None:
        for stream, subject in (
            (subjects.CALLS_STREAM, subjects.ALL_CALL_EVENTS),
            (subjects.AUDIT_STREAM, subjects.ALL_AUDIT),
        ):
            durable = f"{self.settings.durable}-{stream.lower()}"
            # A short ack wait: a message handed to a fetch that a stopping worker abandoned is
            # redelivered in seconds, not after the 30 s default.
            psub = await self.js.pull_subscribe(
                subject, durable=durable, stream=stream, config=ConsumerConfig(ack_wait=ACK_WAIT_S)
            )
            self._psubs.append(psub)
            self._consumers.append(self._tasks.spawn(self._consume(stream, psub), stream))
        self._tasks.spawn(self._purge_loop(), "purge")

    async def stop(self, timeout: float = 5.0) -> None:
        """Let each consumer finish its fetch (a cancelled fetch would strand the messages it
        was sent until their ack wait expires), then cancel what is left."""
        self._stopping.set()
        if self._consumers:
            await asyncio.wait(self._consumers, timeout=timeout)
        await self._tasks.close(timeout=timeout)
        self._consumers.clear()
        for psub in self._psubs:  # the durable consumer stays; only this worker's inbox goes
            try:
                await psub.unsubscribe()
            except Exception as exc:
                log.warning("records unsubscribe failed", extra={"error": type(exc).__name__})
        self._psubs.clear()

    async def _consume(self, stream: str, psub: Any) -> None:
        while not self._stopping.is_set():
            try:
                msgs = await psub.fetch(64, timeout=1.0)
            except TimeoutError:  # nothing new: nats' own TimeoutError, or the plain one a batch fetch raises
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # reconnecting: try again shortly
                log.warning("records fetch failed", extra={"stream": stream, "error": type(exc).__name__})
                await asyncio.sleep(1.0)
                continue
            for msg in msgs:
                await self._handle(stream, msg)

    async def _handle(self, stream: str, msg: Any) -> None:
        """Store one message and ack it; on failure nak it (or term a poison one). Never raises."""
        try:
            events, rec = await asyncio.to_thread(
                self.apply,
                stream,
                msg.subject,
                msg.data,
                dict(msg.headers or {}),
                msg.metadata.sequence.stream,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._failed(stream, msg, exc)
            return
        try:
            await msg.ack()
        except Exception as exc:  # redelivered after the ack wait; the sequence check skips it then
            log.warning("record ack failed", extra={"stream": stream, "error": type(exc).__name__})
        if rec is not None:
            self.applied += 1
            self.changed.set()
            if self.listener is not None and events:
                try:
                    await self.listener(rec, events)
                except Exception:
                    log.exception("records listener failed", extra={"call_id": rec.call_id})

    async def _failed(self, stream: str, msg: Any, exc: Exception) -> None:
        retryable = isinstance(exc, PhoneAgentError) and exc.retryable
        kind = exc.kind.name if isinstance(exc, PhoneAgentError) else "INTERNAL"
        try:
            delivered = int(msg.metadata.num_delivered)
        except Exception:
            delivered = 1
        try:
            if retryable or delivered < self.max_deliveries:
                log.warning(
                    "record not stored; will retry",
                    extra={"stream": stream, "error_kind": kind, "deliveries": delivered},
                )
                await msg.nak(delay=self.nak_delay_s)
            else:
                self.terminated += 1
                log.error(
                    "record event dropped after repeated failures",
                    exc_info=exc,
                    extra={"stream": stream, "error_kind": kind, "deliveries": delivered},
                )
                await msg.term()
        except Exception as ack_exc:  # the server redelivers after the ack wait anyway
            log.warning("record nak failed", extra={"stream": stream, "error": type(ack_exc).__name__})

    def apply(
        self, stream: str, subject: str, data: bytes, headers: dict[str, str], seq: int
    ) -> tuple[list[str], CallRecord | None]:
        call_id = subjects.call_id_of(subject)
        leaf = "audit" if subject.startswith(subjects.AUDIT_PREFIX) else subject.rsplit(".", 1)[-1]
        if call_id is None or call_id == "none":
            return [], None
        msg = _decode(leaf, data, headers)
        if msg is None:
            log.warning(
                "record event skipped", extra={"call_id": call_id, "reason": "undecodable", "leaf": leaf}
            )
            return [], None
        if isinstance(msg, policy_pb2.PolicyDecision) and msg.subject == builder.API_AUDIT_SUBJECT:
            # The API's audit of its own calls stays in PA_AUDIT: reading a call must not change
            # its record, nor may a call id asked about create one.
            return [], None
        event: Message = msg
        events: list[str] = []

        def change(rec: CallRecord) -> bool:
            if builder.already_applied(rec, stream, seq):
                return False  # a redelivery of a message stored before a restart
            events[:] = fold(rec, leaf, event, self.public)  # a retried change starts over
            builder.mark_applied(rec, stream, seq)
            return True

        rec = self.store.update(call_id, change)
        return events, rec

    async def _purge_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await asyncio.to_thread(self.store.purge, self.settings.retention_days, time.time_ns())
            except Exception as exc:  # the next round tries again; the loop must not end
                kind = exc.kind.name if isinstance(exc, PhoneAgentError) else type(exc).__name__
                log.warning("records purge failed", extra={"error": kind})
            try:
                await asyncio.wait_for(self._stopping.wait(), self.settings.purge_every_s)
            except TimeoutError:
                pass

"""The stored copy of a call's conversation: redacted, on the ``record.*`` subjects.

The live subjects (``transcript``, ``say``, ``tool``) carry raw text because the services
need it (the model must hear a callback number). What PA_CALLS keeps for call records and the
ASR takeover is a copy that policy publishes after the live message has gone on (``say`` by
the call's session, once a sentence is approved; ``transcript`` and ``tool`` by the replica's
:class:`RecordCopier`, whose subscriptions outlive the call's session):
the same protobuf type and EventMeta ids, the tool subject's type header, and every free-text
field passed through :func:`redact_transcript` (cards, national ids, codes, dates of birth,
phone numbers, e-mail). In tool arguments and results each JSON value is redacted on its own,
so the JSON stays valid (the records builder reads a result's ``status``).

A copy is stored, not just sent: the live path only puts it in the replica's outbox (never
waiting on the stream), and one owned task redacts and publishes the copies in the order they
were queued, each a JetStream publish whose ack (the stream has stored it) it awaits before the
next, with a ``Nats-Msg-Id`` so a retry after a lost ack is not stored twice. While PA_CALLS
cannot store (a leader election, an outage) the head copy is retried with backoff for
``give_up_after_s``; only then, or when the outbox is full, is a copy counted as failed and
logged: a record has a gap then, never silently. A record that reached policy before its call
ended is therefore in PA_CALLS however late the stream acknowledges it, and on shutdown the
service empties the outbox (:meth:`RecordCopies.flush`) before it closes the bus. Redaction
(Presidio and spaCy, milliseconds a text) runs in a worker thread, so neither the call's session
nor the copier's subscriptions wait for it. The agent's last sentence of each call is kept (raw,
in memory, for the last ``ENDED_KEPT`` calls) as the context of the caller's next transcript, so
an answer to "what is your date of birth?" is masked even when it is only a date.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf.message import DecodeError, Message

from phoneagent.runtime import metrics, subjects
from phoneagent.runtime.bus import Bus, Delivery, Subscription
from phoneagent.runtime.queues import DropPolicy
from phoneagent.runtime.redact import redact_json, redact_transcript
from phoneagent.runtime.tasks import TaskOwner
from phoneagent.v1 import speech_pb2, tools_pb2

log = logging.getLogger(__name__)
ENDED_KEPT = 4096  # calls that ended on this replica whose late records are still copied
OUTBOX_MAX = 20_000  # copies waiting for the stream (small text records: a few MB at most)
ACK_TIMEOUT_S = 5.0  # one publish's wait for the stream's ack
GIVE_UP_AFTER_S = 300.0  # a copy the stream has not stored after this long is counted as failed
RETRY_MAX_DELAY_S = 2.0
MSG_ID = "Nats-Msg-Id"
_TOOL_TYPES: dict[str, type[tools_pb2.ToolCall] | type[tools_pb2.ToolResult]] = {
    "ToolCall": tools_pb2.ToolCall,
    "ToolResult": tools_pb2.ToolResult,
}


def transcript_copy(
    tr: speech_pb2.Transcript, asked: str = "", public: Sequence[str] = ()
) -> speech_pb2.Transcript:
    """``asked``: the agent's last sentence to the caller, the question this transcript may answer;
    ``public``: the business's own words, never masked (see ``redact_transcript``)."""
    out = speech_pb2.Transcript()
    out.CopyFrom(tr)
    out.text = redact_transcript(tr.text, context=asked, public=public)
    return out


def say_copy(msg: speech_pb2.AgentText, public: Sequence[str] = ()) -> speech_pb2.AgentText:
    out = speech_pb2.AgentText()
    out.CopyFrom(msg)
    out.text = redact_transcript(msg.text, public=public)
    return out


def tool_copy(raw: bytes, kind: str) -> tools_pb2.ToolCall | tools_pb2.ToolResult | None:
    """The redacted copy of a tool record of type ``kind`` (the type header), or None when the
    header names no tool type or the bytes are not that type."""
    msg_type = _TOOL_TYPES.get(kind)
    if msg_type is None:
        return None
    try:
        msg = msg_type.FromString(raw)
    except (DecodeError, ValueError, RuntimeError):
        return None
    if isinstance(msg, tools_pb2.ToolCall):
        msg.arguments_json = redact_json(msg.arguments_json)
    else:
        msg.result_json = redact_json(msg.result_json)
        msg.spoken_summary = redact_transcript(msg.spoken_summary)
        if msg.HasField("error"):
            msg.error.message = redact_transcript(msg.error.message)
    return msg


class _Copy:
    __slots__ = ("call_id", "kind", "build", "headers", "msg_id")

    def __init__(
        self, call_id: str, kind: str, build: Callable[[], Message], headers: dict[str, str] | None
    ) -> None:
        self.call_id = call_id
        self.kind = kind
        self.build = build
        self.headers = dict(headers or {})
        self.msg_id = f"copy-{uuid.uuid4().hex}"  # the same on every retry of this copy


class RecordCopies:
    """The ordered outbox of one policy replica's record copies; counts what was stored
    (``published``: acknowledged by PA_CALLS) and what failed."""

    def __init__(
        self,
        bus: Bus,
        *,
        max_queued: int = OUTBOX_MAX,
        give_up_after_s: float = GIVE_UP_AFTER_S,
        ack_timeout_s: float = ACK_TIMEOUT_S,
        public: Sequence[str] = (),
    ) -> None:
        self.bus = bus
        self.public = tuple(public)  # the business's own words: never masked in a copy
        self.give_up_after_s = give_up_after_s
        self.ack_timeout_s = ack_timeout_s
        self.published = 0
        self.failed = 0
        self.retries = 0  # publishes the stream did not acknowledge (each retried)
        self.skipped = 0  # tool records without a known type header (nothing a record could use)
        self._queue: asyncio.Queue[_Copy] = asyncio.Queue(max_queued)
        self._tasks = TaskOwner("record-copies")
        self._writer: asyncio.Task[None] | None = None
        self._busy = False  # the writer holds a copy it has not stored yet
        self._asked: OrderedDict[str, str] = OrderedDict()  # call -> the agent's last sentence

    @property
    def pending(self) -> int:
        """Copies queued or being stored."""
        return self._queue.qsize() + (1 if self._busy else 0)

    async def transcript(self, call_id: str, tr: speech_pb2.Transcript) -> None:
        asked = self._asked.get(call_id, "")
        self._put(_Copy(call_id, "transcript", lambda: transcript_copy(tr, asked, self.public), None))

    async def say(self, call_id: str, msg: speech_pb2.AgentText) -> None:
        if msg.text.strip():
            self._asked[call_id] = msg.text
            self._asked.move_to_end(call_id)
            while len(self._asked) > ENDED_KEPT:
                self._asked.popitem(last=False)
        self._put(_Copy(call_id, "say", lambda: say_copy(msg, self.public), None))

    def forget(self, call_id: str) -> None:
        """Drop the call's question context (the call went on on another replica)."""
        self._asked.pop(call_id, None)

    async def tool(self, call_id: str, msg: tools_pb2.ToolCall, headers: dict[str, str]) -> None:
        """``msg`` was decoded as a ToolCall whatever it is; protobuf keeps the fields it did not
        know, so its bytes re-parse as the type its header names."""
        kind = headers.get(subjects.TOOL_TYPE_HEADER, "")
        if kind not in _TOOL_TYPES:
            self.skipped += 1
            log.warning("tool record not copied", extra={"call_id": call_id, "reason": "unknown_type"})
            return
        raw = msg.SerializeToString()

        def build() -> Message:
            copy = tool_copy(raw, kind)
            if copy is None:
                raise ValueError("tool record does not parse as its type")
            return copy

        self._put(_Copy(call_id, "tool", build, {subjects.TOOL_TYPE_HEADER: kind}))

    def _put(self, copy: _Copy) -> None:
        """Queue a copy for the writer (started on first use); a full outbox drops it, counted."""
        if self._writer is None and not self._tasks.closed:
            self._writer = self._tasks.spawn(self._write(), "writer")
        try:
            self._queue.put_nowait(copy)
        except asyncio.QueueFull:
            self._fail(copy, "outbox_full")

    async def flush(self, timeout: float) -> bool:
        """Wait until every queued copy is stored or given up on; False after ``timeout``."""
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self, timeout: float = 5.0) -> None:
        """Store what is queued (up to ``timeout``), then stop the writer."""
        if not await self.flush(timeout) and self.pending:
            log.warning("record copies not stored at shutdown", extra={"count": self.pending})
        await self._tasks.close(timeout=1.0)

    async def _write(self) -> None:
        while True:
            copy = await self._queue.get()
            self._busy = True
            try:
                await self._store(copy)
            finally:
                self._busy = False
                self._queue.task_done()

    async def _store(self, copy: _Copy) -> None:
        try:
            data = (await asyncio.to_thread(copy.build)).SerializeToString()
        except Exception:  # a copy that cannot be built would fail every retry
            self._fail(copy, "unbuildable")
            return
        subject = subjects.record(copy.call_id, copy.kind)
        headers = {**copy.headers, MSG_ID: copy.msg_id}
        deadline = time.monotonic() + self.give_up_after_s
        delay = 0.05
        while True:
            try:
                await self.bus.jetstream().publish(
                    subject,
                    data,
                    headers=headers,
                    timeout=self.ack_timeout_s,
                    stream=subjects.CALLS_STREAM,
                )
            except Exception as exc:  # no ack: the stream is away, or the bus is reconnecting
                left = deadline - time.monotonic()
                if left <= 0:
                    self._fail(copy, type(exc).__name__)
                    return
                self.retries += 1
                if self.retries == 1 or self.retries % 100 == 0:
                    log.warning(
                        "record copy not stored yet; retrying",
                        extra={"call_id": copy.call_id, "kind": copy.kind, "error": type(exc).__name__},
                    )
                await asyncio.sleep(min(delay, left))
                delay = min(delay * 2, RETRY_MAX_DELAY_S)
                continue
            self.published += 1
            return

    def _fail(self, copy: _Copy, reason: str) -> None:
        """The record has a gap: counted and logged (the live path went on long ago)."""
        self.failed += 1
        metrics.ERRORS.labels(kind="unavailable").inc()
        log.warning(
            "record copy not stored", extra={"call_id": copy.call_id, "kind": copy.kind, "reason": reason}
        )


class RecordCopier:
    """Copies the transcripts and tool records of the calls this replica owns, from one
    subscription per subject kind that lives as long as the service.

    A call's session registers the call (:meth:`own`) and, when it closes, says whether the
    call ended (:meth:`release`). The copies do not depend on the session's lifetime: a
    record published before ``CallEnded`` may reach this replica after it, since the end of
    a call comes on the control lane, which overtakes the data lane; it is still copied,
    whatever the delay, because a call that ended here stays on the list (the last
    ``ENDED_KEPT`` of them). A call handed to another replica (drain, takeover) is copied
    there from then on, so each record is copied once, by one replica, in the order this
    replica received it (what the records builder folds in order: turns, tool call then
    result). Every replica receives every message and copies only its own calls; the queue
    never drops (small text records, a loss would be a gap in a call record).
    """

    def __init__(self, bus: Bus, copies: RecordCopies) -> None:
        self.bus = bus
        self.copies = copies
        self._live: set[str] = set()
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._subs: list[Subscription[Any]] = []

    async def start(self) -> None:
        self._subs.append(
            await self.bus.subscribe(
                subjects.ALL_TRANSCRIPTS, speech_pb2.Transcript, self._on_transcript, drop=DropPolicy.NEVER
            )
        )
        # Both tool types come as ToolCall (same leading fields); the header says which it is.
        self._subs.append(
            await self.bus.subscribe(
                subjects.ALL_TOOLS, tools_pb2.ToolCall, self._on_tool, drop=DropPolicy.NEVER
            )
        )

    async def stop(self, drain_timeout: float = 2.0) -> None:
        """Stop receiving; what was received is still handed to the outbox (up to the timeout)."""
        for sub in self._subs:
            await self.bus.unsubscribe(sub, drain_timeout=drain_timeout)
        self._subs.clear()

    def own(self, call_id: str) -> None:
        self._live.add(call_id)
        self._ended.pop(call_id, None)

    def release(self, call_id: str, *, ended: bool) -> None:
        """The call's session closed: its late records are still copied when the call
        ``ended``; not when it went to another replica (that one copies them)."""
        self._live.discard(call_id)
        if ended:
            self._ended[call_id] = None
            self._ended.move_to_end(call_id)
            while len(self._ended) > ENDED_KEPT:
                self._ended.popitem(last=False)
        else:
            self.copies.forget(call_id)

    def copies_call(self, call_id: str) -> bool:
        return call_id in self._live or call_id in self._ended

    async def _on_transcript(self, tr: speech_pb2.Transcript, d: Delivery) -> None:
        call_id = subjects.call_id_of(d.subject) or ""
        if self.copies_call(call_id):
            await self.copies.transcript(call_id, tr)

    async def _on_tool(self, msg: tools_pb2.ToolCall, d: Delivery) -> None:
        call_id = subjects.call_id_of(d.subject) or ""
        if self.copies_call(call_id):
            await self.copies.tool(call_id, msg, d.headers)

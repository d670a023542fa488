"""The stored copy of a call's conversation: redacted, on the ``record.*`` subjects.

The live subjects (``transcript``, ``say``, ``tool``) carry raw text because the services
need it (the model must hear a callback number). What PA_CALLS keeps for call records and the
ASR takeover is a copy that policy publishes after the live message has gone on (``say`` by
the call's session, once a sentence is approved; ``transcript`` and ``tool`` by the replica's
:class:`RecordCopier`, whose subscriptions outlive the call's session):
the same protobuf type and EventMeta ids, the tool subject's type header, and every free-text
field passed through :func:`redact_transcript` (cards, national ids, codes, dates of birth,
phone numbers, e-mail, names and places; a transcript with the agent's previous sentence as
context, so the answer to its question is masked). In tool arguments and results each JSON value
is redacted on its own (:func:`redact_json`), so the JSON stays valid (the records builder reads
a result's ``status``).

Redaction and publishing happen on :class:`RecordCopies`' worker (redaction in a thread), in
the order the copies were handed over. Publishing is core NATS (a buffered write, no round
trip): it never waits on the stream, and a failure is logged and counted, never raised into
the live path.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError, Message

from phoneagent.runtime import metrics, subjects
from phoneagent.runtime.bus import Bus, Delivery, Subscription
from phoneagent.runtime.errors import PhoneAgentError
from phoneagent.runtime.queues import DropPolicy
from phoneagent.runtime.redact import redact_json, redact_transcript
from phoneagent.runtime.tasks import TaskOwner
from phoneagent.v1 import speech_pb2, tools_pb2

log = logging.getLogger(__name__)
ENDED_KEPT = 4096  # calls that ended on this replica whose late records are still copied
_TOOL_TYPES: dict[str, type[tools_pb2.ToolCall] | type[tools_pb2.ToolResult]] = {
    "ToolCall": tools_pb2.ToolCall,
    "ToolResult": tools_pb2.ToolResult,
}


def transcript_copy(tr: speech_pb2.Transcript, asked: str = "") -> speech_pb2.Transcript:
    """``asked``: the agent's last sentence to the caller, the question this transcript may answer."""
    out = speech_pb2.Transcript()
    out.CopyFrom(tr)
    out.text = redact_transcript(tr.text, context=asked)
    return out


def say_copy(msg: speech_pb2.AgentText) -> speech_pb2.AgentText:
    out = speech_pb2.AgentText()
    out.CopyFrom(msg)
    out.text = redact_transcript(msg.text)
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


QUEUE_SIZE = 10_000  # copies waiting for the redaction worker; when full, the caller waits


@dataclass
class _Job:
    call_id: str
    kind: str
    build: Callable[[], Message | None]  # None: a tool record of no known type
    headers: dict[str, str] | None = None


class RecordCopies:
    """Publishes the redacted copies of one policy replica's calls; counts what failed.

    Redaction (Presidio and spaCy, milliseconds per text) runs in a worker thread, fed in
    arrival order by one worker task once :meth:`start` ran, so neither the call's session (an
    approved sentence goes on to TTS at once) nor the copier's subscriptions wait for it; the
    queue never drops (a loss would be a gap in a call record) and :meth:`stop` publishes what
    is queued before it ends. The agent's last sentence of each call is kept (raw, in memory,
    for the last ``ENDED_KEPT`` calls) as the context of the caller's next transcript, so an
    answer to "what is your date of birth?" is masked even when it is only a date.
    """

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.published = 0
        self.failed = 0
        self.skipped = 0  # tool records without a known type header (nothing a record could use)
        self._asked: OrderedDict[str, str] = OrderedDict()
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(QUEUE_SIZE)
        self._owner = TaskOwner("record-copies")
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._worker is None:
            self._owner = TaskOwner("record-copies")
            self._worker = self._owner.spawn(self._run(), "worker")

    async def drain(self, timeout: float) -> bool:
        """Wait until every queued copy is published (or failed); False after ``timeout``."""
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self, timeout: float = 10.0) -> None:
        if self._worker is None:
            return
        if not await self.drain(timeout):
            log.warning("record copies not published before stop", extra={"count": self._queue.qsize()})
        await self._owner.close()
        self._worker = None

    async def transcript(self, call_id: str, tr: speech_pb2.Transcript) -> None:
        asked = self._asked.get(call_id, "")
        await self._submit(_Job(call_id, "transcript", lambda: transcript_copy(tr, asked)))

    async def say(self, call_id: str, msg: speech_pb2.AgentText) -> None:
        if msg.text.strip():
            self._asked[call_id] = msg.text
            self._asked.move_to_end(call_id)
            while len(self._asked) > ENDED_KEPT:
                self._asked.popitem(last=False)
        await self._submit(_Job(call_id, "say", lambda: say_copy(msg)))

    def forget(self, call_id: str) -> None:
        self._asked.pop(call_id, None)

    async def tool(self, call_id: str, msg: tools_pb2.ToolCall, headers: dict[str, str]) -> None:
        """``msg`` was decoded as a ToolCall whatever it is; protobuf keeps the fields it did not
        know, so its bytes re-parse as the type its header names."""
        kind = headers.get(subjects.TOOL_TYPE_HEADER, "")
        raw = msg.SerializeToString()
        await self._submit(
            _Job(call_id, "tool", lambda: tool_copy(raw, kind), {subjects.TOOL_TYPE_HEADER: kind})
        )

    async def _submit(self, job: _Job) -> None:
        if self._worker is None:  # not started (or stopped): copied here and now
            await self._publish(job)
        else:
            await self._queue.put(job)

    async def _run(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await self._publish(job)
            finally:
                self._queue.task_done()

    async def _publish(self, job: _Job) -> None:
        try:
            copy = await asyncio.to_thread(job.build)
            if copy is None:
                self.skipped += 1
                log.warning(
                    "tool record not copied", extra={"call_id": job.call_id, "reason": "unknown_type"}
                )
                return
            await self.bus.publish(subjects.record(job.call_id, job.kind), copy, headers=job.headers)
        except Exception as exc:  # the live path has gone on already; the record has a gap
            self.failed += 1
            kind_label = exc.kind.name.lower() if isinstance(exc, PhoneAgentError) else "internal"
            metrics.ERRORS.labels(kind=kind_label).inc()
            log.warning(
                "record copy not published",
                extra={"call_id": job.call_id, "kind": job.kind, "error": type(exc).__name__},
            )
            return
        self.published += 1


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
        self.copies.start()
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

    async def stop(self) -> None:
        for sub in self._subs:
            await self.bus.unsubscribe(sub)
        self._subs.clear()
        await self.copies.stop()  # what is queued is published first

    def own(self, call_id: str) -> None:
        self._live.add(call_id)
        self._ended.pop(call_id, None)

    def release(self, call_id: str, *, ended: bool) -> None:
        """The call's session closed: its late records are still copied when the call
        ``ended``; not when it went to another replica (that one copies them)."""
        self._live.discard(call_id)
        if not ended:
            self.copies.forget(call_id)
        if ended:
            self._ended[call_id] = None
            self._ended.move_to_end(call_id)
            while len(self._ended) > ENDED_KEPT:
                self._ended.popitem(last=False)

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

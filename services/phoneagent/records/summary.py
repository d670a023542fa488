"""Post-call summaries through the ``PA_WORK`` JetStream work queue.

After ``call.ended`` the :class:`SummaryRequester` (records side) publishes the call's (already
redacted) transcript as a job on ``pa.v1.work.llm.summarize``, with ``Nats-Msg-Id
summary-<call id>`` so a second publish (another replica, a redelivered event) is dropped. An
llm replica takes the job from the durable consumer ``llm-summaries`` when its engine is free
(:mod:`phoneagent.llm.summaries`) and publishes the answer on ``pa.v1.work.records.summary``;
the requester's consumer task (durable consumer ``records-summaries``) stores it in the record's
summary column and acknowledges it. Jobs and results stay in the stream until acknowledged, so
they survive restarts of either side, and the jobs waiting are the backlog KEDA scales on.

On the llm side :func:`summarize` runs one short JSON-schema-constrained generation.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from google.protobuf.message import DecodeError

from phoneagent.records.builder import CallRecord
from phoneagent.records.store import RecordStore
from phoneagent.runtime import streams, subjects
from phoneagent.runtime.errors import ErrorKind, InvalidArgument, PhoneAgentError, Unavailable
from phoneagent.runtime.tasks import TaskOwner, retry, with_timeout
from phoneagent.v1 import common_pb2, records_pb2

log = logging.getLogger(__name__)
_Work = TypeVar("_Work", records_pb2.SummaryRequest, records_pb2.CallSummary)
MSG_ID = "Nats-Msg-Id"
FIELDS = ("name", "callback_number", "appointment")
MAX_TRANSCRIPT_CHARS = 6000
SUMMARY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "summary": {"type": "string", "maxLength": 400},
        "intent": {"type": "string", "maxLength": 60},
        "outcome": {"type": "string", "maxLength": 60},
        "fields": {
            "type": "object",
            "properties": {k: {"type": "string", "maxLength": 80} for k in FIELDS},
            "required": list(FIELDS),
            "additionalProperties": False,
        },
    },
    "required": ["summary", "intent", "outcome", "fields"],
    "additionalProperties": False,
}
_INSTRUCTIONS = (
    "You summarize phone calls for a business. Read the transcript and answer with JSON only: "
    "summary (one or two sentences), intent (a few words: why the caller called), outcome (a few words: "
    "what was achieved), fields.name, fields.callback_number and fields.appointment (empty string when "
    "not stated in the transcript). Never invent facts."
)


def transcript_text(rec: CallRecord) -> str:
    """One ``role: text`` line per turn (the record's turns are stored redacted)."""
    lines = [f"{t.role}: {t.text.strip()}" for t in rec.turns if t.text.strip()]
    return "\n".join(lines)[-MAX_TRANSCRIPT_CHARS:]


def parse_summary(text: str) -> dict[str, Any]:
    """Validate the model's JSON answer into {summary, intent, outcome, fields}."""
    try:
        raw = json.loads(text)
    except ValueError:
        raise InvalidArgument("summary is not valid JSON") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("summary"), str) or not raw["summary"].strip():
        raise InvalidArgument("summary has no summary text")
    fields: dict[str, Any] = raw["fields"] if isinstance(raw.get("fields"), dict) else {}
    return {
        "summary": raw["summary"].strip(),
        "intent": str(raw.get("intent", "")).strip(),
        "outcome": str(raw.get("outcome", "")).strip(),
        "fields": {k: str(fields.get(k, "")).strip() for k in FIELDS},
    }


def to_message(call_id: str, summary: dict[str, Any]) -> records_pb2.CallSummary:
    return records_pb2.CallSummary(
        call_id=call_id,
        summary=summary["summary"],
        intent=summary["intent"],
        outcome=summary["outcome"],
        fields=summary["fields"],
    )


def error_reply(call_id: str, exc: PhoneAgentError) -> records_pb2.CallSummary:
    err = common_pb2.Error(
        kind=exc.kind.wire,  # type: ignore[arg-type]
        retryable=exc.retryable,
        message=exc.message,
        source="llm",
    )
    return records_pb2.CallSummary(call_id=call_id, error=err)


async def summarize(
    engine: Any, req: records_pb2.SummaryRequest, max_tokens: int = 256
) -> records_pb2.CallSummary:
    """Answer one summary request with a JSON-schema-constrained generation (llm side)."""
    if not req.transcript.strip():
        return error_reply(req.call_id, InvalidArgument("transcript is empty"))
    messages = [
        {"role": "system", "content": _INSTRUCTIONS},
        {"role": "user", "content": f"Transcript:\n{req.transcript[-MAX_TRANSCRIPT_CHARS:]}"},
    ]
    parts: list[str] = []
    try:
        async for delta in engine.stream(
            messages,
            request_id=f"summary-{req.call_id}",
            max_tokens=max_tokens,
            temperature=0.0,
            json_schema=SUMMARY_SCHEMA,
        ):
            parts.append(delta.text)
        return to_message(req.call_id, parse_summary("".join(parts)))
    except PhoneAgentError as exc:
        if not getattr(engine, "preempted", False):  # cut short for a live turn: it runs again
            log.warning("summary failed", extra={"call_id": req.call_id, "error": exc.kind.name})
        return error_reply(req.call_id, exc)


def from_message(msg: records_pb2.CallSummary) -> dict[str, Any]:
    return {
        "summary": msg.summary,
        "intent": msg.intent,
        "outcome": msg.outcome,
        "fields": {k: msg.fields.get(k, "") for k in FIELDS},
    }


def _decode_work(msg: _Work, data: bytes, what: str) -> _Work:
    try:
        msg.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError):
        raise InvalidArgument(f"{what} is not a {type(msg).__name__}") from None
    subjects.check_id(msg.call_id)
    return msg


def decode_job(data: bytes) -> records_pb2.SummaryRequest:
    """A summary job from the work queue; InvalidArgument when it is not one."""
    return _decode_work(records_pb2.SummaryRequest(), data, "summary job")


def decode_result(data: bytes) -> records_pb2.CallSummary:
    """A summary result from the work queue; InvalidArgument when it is not one."""
    return _decode_work(records_pb2.CallSummary(), data, "summary result")


async def settle(msg: Any, how: str, **kwargs: Any) -> None:
    """ack / nak / term a JetStream message; a failure only logs (the ack wait redelivers it)."""
    try:
        await getattr(msg, how)(**kwargs)
    except Exception as exc:
        log.warning("work message not settled", extra={"how": how, "error": type(exc).__name__})


def deliveries(msg: Any) -> int:
    try:
        return int(msg.metadata.num_delivered)
    except Exception:
        return 1


async def fetch(psub: Any, batch: int, timeout: float) -> list[Any]:
    """One pull; [] when nothing came within ``timeout``. Raises only for a broken connection."""
    try:
        return list(await psub.fetch(batch, timeout=timeout))
    except TimeoutError:  # nats.errors.TimeoutError, and the plain one nats-py's batch fetch raises
        return []


def bus_closed(bus: Any) -> bool:
    """The bus was closed (shutdown): a consumer loop ends instead of retrying."""
    nc = getattr(bus, "data", None)
    return nc is None or bool(nc.is_closed)


async def pulled(
    bus: Any, psub: Any, batch: int, timeout_s: float, stopping: asyncio.Event, what: str
) -> AsyncIterator[list[Any]]:
    """Batches from a durable pull consumer until ``stopping`` is set or the bus is closed. A
    failed fetch (reconnecting) is logged and tried again a second later."""
    while not stopping.is_set():
        try:
            msgs = await fetch(psub, batch, timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if bus_closed(bus):
                log.info(f"{what} ends: bus closed")
                return
            log.warning(f"{what} fetch failed", extra={"error": type(exc).__name__})
            try:
                await asyncio.wait_for(stopping.wait(), 1.0)
            except TimeoutError:
                pass
            continue
        yield msgs


class SummaryRequester:
    """Records side: queue a summary job on ``call.ended``, store the results (owned task)."""

    def __init__(
        self,
        bus: Any,
        store: RecordStore,
        *,
        publish_timeout_s: float = 5.0,
        fetch_timeout_s: float = 1.0,
        retry_delay_s: float = 2.0,
        max_deliveries: int = 5,  # a result that cannot be stored this often is terminated
    ) -> None:
        self.bus = bus
        self.store = store
        self.publish_timeout_s = publish_timeout_s
        self.fetch_timeout_s = fetch_timeout_s
        self.retry_delay_s = retry_delay_s
        self.max_deliveries = max_deliveries
        self.queued = 0  # jobs published (a duplicate the stream dropped is not counted)
        self.stored = 0  # summaries stored on their records
        self.failed = 0  # error results: the llm could not summarize the call
        self.rejected = 0  # malformed results, terminated
        self.finished = asyncio.Event()  # set when a call's result is handled (stored or failed)
        self._tasks = TaskOwner("records:summaries")
        self._consumer: asyncio.Task[None] | None = None
        self._psub: Any = None
        self._stopping = asyncio.Event()

    @property
    def healthy(self) -> bool:
        """False once the result consumer has ended while not stopping."""
        return self._stopping.is_set() or (self._consumer is not None and not self._consumer.done())

    async def start(self) -> None:
        js = self.bus.jetstream()
        self._psub = await streams.work_subscription(js, subjects.RECORDS_SUMMARIES_CONSUMER)
        self._consumer = self._tasks.spawn(self._consume(), "results")

    async def stop(self, timeout: float = 2.0) -> None:
        """Let the consumer finish its fetch and the result in hand, then cancel what is left."""
        self._stopping.set()
        if self._consumer is not None:
            await asyncio.wait({self._consumer}, timeout=timeout)
        await self._tasks.close(timeout=timeout)
        psub, self._psub = self._psub, None
        if psub is not None and not bus_closed(self.bus):  # the durable consumer stays
            try:
                await psub.unsubscribe()
            except Exception as exc:
                log.warning("summary results unsubscribe failed", extra={"error": type(exc).__name__})

    # --- jobs ----------------------------------------------------------------------------------
    async def on_events(self, rec: CallRecord, events: list[str]) -> None:
        if "call.ended" not in events:
            return
        text = transcript_text(rec)
        if not text:
            return
        job = records_pb2.SummaryRequest(call_id=rec.call_id, transcript=text)
        try:
            ack = await retry(lambda: self._publish_job(job), what="summary job", attempts=3, base_delay=0.2)
        except PhoneAgentError as exc:
            log.warning("call summary not queued", extra={"call_id": rec.call_id, "error": exc.kind.name})
            return
        if not getattr(ack, "duplicate", False):
            self.queued += 1
            log.info("call summary queued", extra={"call_id": rec.call_id})

    async def _publish_job(self, job: records_pb2.SummaryRequest) -> Any:
        js = self.bus.jetstream()
        try:
            return await with_timeout(
                js.publish(
                    subjects.WORK_SUMMARIZE,
                    job.SerializeToString(),
                    stream=subjects.WORK_STREAM,
                    headers={MSG_ID: subjects.summary_job_id(job.call_id)},
                    timeout=self.publish_timeout_s,
                ),
                self.publish_timeout_s + 1.0,
                "summary job publish",
            )
        except PhoneAgentError:
            raise
        except Exception as exc:  # no JetStream (reconnecting, stream missing): retried, then logged
            raise Unavailable(f"summary job publish failed ({type(exc).__name__})") from None

    # --- results -------------------------------------------------------------------------------
    async def _consume(self) -> None:
        async for msgs in pulled(
            self.bus, self._psub, 16, self.fetch_timeout_s, self._stopping, "summary results consumer"
        ):
            for msg in msgs:
                await self._handle(msg)

    async def _handle(self, msg: Any) -> None:
        """Store one result and ack it; never raises (a bad result must not stop the consumer)."""
        try:
            result = decode_result(msg.data)
        except PhoneAgentError:
            self.rejected += 1
            log.warning("summary result rejected", extra={"reason": "malformed", "size": len(msg.data)})
            await settle(msg, "term")
            return
        call_id = result.call_id
        if result.HasField("error"):
            self.failed += 1
            failure = ErrorKind.from_wire(result.error.kind).name
            log.warning("call summary failed", extra={"call_id": call_id, "error": failure})
            await settle(msg, "ack")
            self.finished.set()
            return
        try:
            found = await asyncio.to_thread(self.store.set_summary, call_id, from_message(result))
        except Exception as exc:  # the database is away: again later, up to max_deliveries times
            kind = exc.kind.name if isinstance(exc, PhoneAgentError) else "INTERNAL"
            if deliveries(msg) < self.max_deliveries:
                log.warning("call summary not stored; will retry", extra={"call_id": call_id, "error": kind})
                await settle(msg, "nak", delay=self.retry_delay_s)
            else:
                log.error(
                    "call summary dropped after repeated failures", extra={"call_id": call_id, "error": kind}
                )
                await settle(msg, "term")
            return
        await settle(msg, "ack")
        if found:
            self.stored += 1
            log.info("call summary stored", extra={"call_id": call_id})
        else:  # purged (retention) before its summary came
            log.warning("call summary for an unknown call", extra={"call_id": call_id})
        self.finished.set()

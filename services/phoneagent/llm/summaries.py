"""LLM side of post-call summaries: a worker on the ``PA_WORK`` work queue.

The worker pulls one job at a time from the durable consumer ``llm-summaries`` and runs it
through the engine's background lane (:class:`~phoneagent.llm.priority.LiveFirst`: live turns
first). While live calls keep the engine busy the job is nak'ed with a growing delay, so it
stays in the stream: the backlog other replicas (and KEDA's nats-jetstream trigger) see. A
finished summary is published on ``pa.v1.work.records.summary`` (``Nats-Msg-Id
summary-result-<call id>``) before the job is acknowledged; a job that cannot succeed gets an
error result and is acknowledged; a malformed job is terminated. On shutdown the worker stops
fetching, and the job in hand finishes or is nak'ed for another replica within the timeout.
:func:`summarize` answers one job with a short JSON-schema-constrained generation.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from phoneagent.runtime import streams, subjects
from phoneagent.runtime.errors import ErrorKind, InvalidArgument, PhoneAgentError
from phoneagent.runtime.summary_work import (
    FIELDS,
    MAX_TRANSCRIPT_CHARS,
    MSG_ID,
    bus_closed,
    decode_job,
    deliveries,
    error_reply,
    pulled,
    settle,
    to_message,
)
from phoneagent.runtime.tasks import TaskOwner, with_timeout
from phoneagent.v1 import records_pb2

log = logging.getLogger(__name__)
SUMMARY_MAX_TOKENS = 256
SUMMARY_WAIT_S = 45.0  # how long one delivery waits for a quiet engine before it is nak'ed
JOB_TIMEOUT_S = 150.0  # a whole delivery (wait + generation), below the consumer's 180 s ack wait
BACKOFF_S = (5.0, 10.0, 20.0, 40.0, 60.0)  # nak delay after the 1st, 2nd, ... busy delivery
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


class SummaryWorker:
    """Takes summary jobs from ``llm-summaries`` one at a time (owned tasks, bounded waits)."""

    def __init__(
        self,
        bus: Any,
        engine: Any,  # a LiveFirst: ``background(work, max_wait_s)`` raises Unavailable when busy
        *,
        wait_s: float = SUMMARY_WAIT_S,
        job_timeout_s: float = JOB_TIMEOUT_S,
        max_tokens: int = SUMMARY_MAX_TOKENS,
        backoff_s: tuple[float, ...] = BACKOFF_S,
        fetch_timeout_s: float = 1.0,
        publish_timeout_s: float = 5.0,
    ) -> None:
        self.bus = bus
        self.engine = engine
        self.wait_s = wait_s
        self.job_timeout_s = job_timeout_s
        self.max_tokens = max_tokens
        self.backoff_s = backoff_s
        self.fetch_timeout_s = fetch_timeout_s
        self.publish_timeout_s = publish_timeout_s
        self.max_deliver = streams.SUMMARY_JOB_MAX_DELIVER
        self.done = 0  # results published (summaries and error results)
        self.deferred = 0  # deliveries nak'ed because the engine was busy (or failed retryably)
        self.rejected = 0  # malformed jobs, terminated
        self._tasks = TaskOwner("llm:summaries")
        self._loop: asyncio.Task[None] | None = None
        self._job: asyncio.Task[None] | None = None
        self._psub: Any = None
        self._stopping = asyncio.Event()

    @property
    def healthy(self) -> bool:
        return self._stopping.is_set() or (self._loop is not None and not self._loop.done())

    async def start(self) -> None:
        self._psub = await streams.work_subscription(self.bus.jetstream(), subjects.LLM_SUMMARIES_CONSUMER)
        self._loop = self._tasks.spawn(self._run(), "jobs")

    async def stop(self, timeout: float) -> None:
        """Fetch no more jobs; the job in hand gets ``timeout`` seconds to finish, then it is
        cancelled and nak'ed (redelivered at once to another replica)."""
        self._stopping.set()
        if self._loop is not None:
            done, _ = await asyncio.wait({self._loop}, timeout=max(0.0, timeout))
            job = self._job
            if not done and job is not None:
                log.info("summary job handed back on shutdown")
                job.cancel()
                await asyncio.wait({job}, timeout=2.0)
        await self._tasks.close(timeout=2.0)
        psub, self._psub = self._psub, None
        if psub is not None and not bus_closed(self.bus):  # the durable consumer stays
            try:
                await psub.unsubscribe()
            except Exception as exc:
                log.warning("summary jobs unsubscribe failed", extra={"error": type(exc).__name__})

    async def _run(self) -> None:
        async for msgs in pulled(
            self.bus, self._psub, 1, self.fetch_timeout_s, self._stopping, "summary worker"
        ):
            for msg in msgs:
                if self._stopping.is_set():  # fetched as shutdown began: straight back to the queue
                    await settle(msg, "nak")
                    continue
                self._job = self._tasks.spawn(self._handle(msg), "job")
                await asyncio.wait({self._job})
                self._job = None

    async def _handle(self, msg: Any) -> None:
        """One delivery of one job: result published then ack, nak (busy), or term (malformed)."""
        try:
            job = decode_job(msg.data)
        except PhoneAgentError:
            self.rejected += 1
            log.warning("summary job rejected", extra={"reason": "malformed", "size": len(msg.data)})
            await settle(msg, "term")
            return
        delivered = deliveries(msg)
        try:
            result = await self._summarize(job)
        except asyncio.CancelledError:  # shutdown: another replica takes it from the start
            await settle(msg, "nak")
            raise
        error = result.error if result.HasField("error") else None
        if error is not None and error.retryable and delivered < self.max_deliver:
            delay = self.backoff_s[min(delivered, len(self.backoff_s)) - 1] if self.backoff_s else 0.0
            self.deferred += 1
            log.info(
                "summary job deferred",
                extra={
                    "call_id": job.call_id,
                    "error": ErrorKind.from_wire(error.kind).name,
                    "deliveries": delivered,
                    "retry_in_s": delay,
                },
            )
            await settle(msg, "nak", delay=delay)
            return
        try:
            await self._publish(result)
        except PhoneAgentError as exc:  # no result stored: the job comes again
            log.warning(
                "summary result not published", extra={"call_id": job.call_id, "error": exc.kind.name}
            )
            await settle(msg, "nak", delay=self.backoff_s[0] if self.backoff_s else 0.0)
            return
        await settle(msg, "ack")
        self.done += 1
        log.info(
            "summary job done",
            extra={"call_id": job.call_id, "ok": error is None, "deliveries": delivered},
        )

    async def _summarize(self, job: records_pb2.SummaryRequest) -> records_pb2.CallSummary:
        """The summary, or an error reply (retryable when the engine was busy or timed out)."""
        try:
            return await with_timeout(
                self.engine.background(
                    lambda engine: summarize(engine, job, max_tokens=self.max_tokens), self.wait_s
                ),
                self.job_timeout_s,
                "summary",
            )
        except PhoneAgentError as exc:
            return error_reply(job.call_id, exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an engine bug: an error result, not a dead worker
            log.error("summary crashed", exc_info=exc, extra={"call_id": job.call_id})
            return error_reply(job.call_id, PhoneAgentError(ErrorKind.INTERNAL, "summary failed"))

    async def _publish(self, result: records_pb2.CallSummary) -> None:
        js = self.bus.jetstream()
        try:
            await with_timeout(
                js.publish(
                    subjects.WORK_SUMMARY_RESULTS,
                    result.SerializeToString(),
                    stream=subjects.WORK_STREAM,
                    headers={MSG_ID: subjects.summary_result_id(result.call_id)},
                    timeout=self.publish_timeout_s,
                ),
                self.publish_timeout_s + 1.0,
                "summary result publish",
            )
        except PhoneAgentError:
            raise
        except Exception as exc:
            raise PhoneAgentError(
                ErrorKind.UNAVAILABLE, f"summary result publish failed ({type(exc).__name__})"
            ) from None

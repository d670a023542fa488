"""Post-call summaries: the records side asks, the llm service answers.

After ``call.ended`` the :class:`SummaryRequester` sends the call's (already redacted)
transcript to ``pa.v1.llm.summarize`` and stores the answer in the record's summary column.
It runs on its own tasks, retries a few times with back-off, and only logs when it gives up.

On the llm side :func:`summarize` runs one short JSON-schema-constrained generation.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from phoneagent.records.builder import CallRecord
from phoneagent.records.store import RecordStore
from phoneagent.runtime import subjects
from phoneagent.runtime.errors import ErrorKind, InvalidArgument, PhoneAgentError
from phoneagent.v1 import common_pb2, records_pb2

log = logging.getLogger(__name__)
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
        log.warning("summary failed", extra={"call_id": req.call_id, "error": exc.kind.name})
        return error_reply(req.call_id, exc)


def from_message(msg: records_pb2.CallSummary) -> dict[str, Any]:
    return {
        "summary": msg.summary,
        "intent": msg.intent,
        "outcome": msg.outcome,
        "fields": {k: msg.fields.get(k, "") for k in FIELDS},
    }


class SummaryRequester:
    """Records side: on ``call.ended`` ask the llm for a summary and store it (owned tasks)."""

    def __init__(
        self,
        bus: Any,
        store: RecordStore,
        *,
        attempts: int = 8,  # the llm answers "busy" while calls keep it occupied: wait minutes
        timeout_s: float = 60.0,
        base_delay_s: float = 2.0,
    ) -> None:
        self.bus = bus
        self.store = store
        self.attempts = attempts
        self.timeout_s = timeout_s
        self.base_delay_s = base_delay_s
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.stored = 0
        self.finished = asyncio.Event()  # set when a call's summary is stored or given up

    async def on_events(self, rec: CallRecord, events: list[str]) -> None:
        if "call.ended" not in events or rec.call_id in self._tasks:
            return
        text = transcript_text(rec)
        if not text:
            return
        task = asyncio.create_task(self._run(rec.call_id, text), name="records:summary")
        self._tasks[rec.call_id] = task
        task.add_done_callback(lambda _: self._done(rec.call_id))

    def _done(self, call_id: str) -> None:
        self._tasks.pop(call_id, None)
        self.finished.set()

    async def stop(self, timeout: float = 2.0) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def _run(self, call_id: str, text: str) -> None:
        req = records_pb2.SummaryRequest(call_id=call_id, transcript=text)
        for attempt in range(1, self.attempts + 1):
            try:
                reply = await self.bus.request(
                    subjects.llm_summarize(), req, records_pb2.CallSummary, timeout=self.timeout_s
                )
                if reply.HasField("error"):
                    kind = ErrorKind.from_wire(reply.error.kind)
                    raise PhoneAgentError(kind, reply.error.message or "summary failed")
                await asyncio.to_thread(self.store.set_summary, call_id, from_message(reply))
                self.stored += 1
                log.info("call summary stored", extra={"call_id": call_id, "attempt": attempt})
                return
            except PhoneAgentError as exc:
                log.warning(
                    "call summary attempt failed",
                    extra={"call_id": call_id, "attempt": attempt, "error": exc.kind.name},
                )
                if not exc.retryable and exc.kind is not ErrorKind.INTERNAL:
                    return
            if attempt < self.attempts:
                await asyncio.sleep(self.base_delay_s * 2 ** (attempt - 1))
        log.warning("call summary given up", extra={"call_id": call_id})

"""Structured logging with the call id on every record and personal data redacted.

Use the standard library: ``log.info("session claimed", extra={"stage": "asr"})``.
Messages are fixed strings; variable data goes in ``extra`` fields. Fields named in
:data:`SENSITIVE_FIELDS` (transcripts, numbers, digits) are shown only when
``PA_LOG_SENSITIVE`` is on and the level is DEBUG; every other string is passed through
:func:`phoneagent.runtime.redact.redact_text`.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

from phoneagent.runtime.redact import redact_text

call_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("call_id", default="")

SENSITIVE_FIELDS = frozenset(
    {"text", "transcript", "number", "from_uri", "to_uri", "digits", "digit", "caller", "callee", "utterance"}
)
# Identifiers we generate: never personal data, and masking digit runs in them would make
# logs impossible to correlate.
ID_FIELDS = frozenset({"call_id", "request_id", "decision_id", "replica", "producer", "task"})
_STD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "taskName"}


class _State:
    service = ""
    replica = ""
    sensitive = False


def _clean(key: str, value: Any) -> Any:
    if key in ID_FIELDS:
        return value if isinstance(value, str | int) else str(value)
    if key in SENSITIVE_FIELDS:
        if _State.sensitive:
            return value
        return "[REDACTED]" if value else value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact_text(str(value))


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in vars(record).items():
        if key not in _STD_ATTRS and not key.startswith("_"):
            fields[key] = _clean(key, value)
    call_id = fields.get("call_id") or call_id_var.get()
    if call_id:
        fields["call_id"] = call_id
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": _State.service,
            "replica": _State.replica,
            "logger": record.name,
            "msg": redact_text(record.getMessage()),
        }
        out.update(record_fields(record))
        if record.exc_info and record.exc_info[0] is not None:
            # Type and a redacted message only: stack traces go to DEBUG text logs.
            exc = record.exc_info[1]
            out["exc_type"] = type(exc).__name__
            out["exc"] = redact_text(str(exc))[:300]
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}"
        fields = record_fields(record)
        extra = " ".join(f"{k}={v}" for k, v in fields.items())
        line = (
            f"{ts} {record.levelname[0]} {_State.service or record.name}: {redact_text(record.getMessage())}"
        )
        if extra:
            line += "  " + extra
        if record.exc_info and record.exc_info[0] is not None:
            exc = record.exc_info[1]
            line += f"  exc={type(exc).__name__}: {redact_text(str(exc))[:300]}"
        return line


def setup(
    service: str, replica: str, level: str = "INFO", fmt: str = "json", sensitive: bool = False
) -> None:
    """Configure the root logger once per process."""
    _State.service = service
    _State.replica = replica
    _State.sensitive = sensitive and level.upper() == "DEBUG"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # nats-py logs reconnect chatter at INFO/ERROR with server URLs; keep it at WARNING.
    logging.getLogger("nats").setLevel(logging.WARNING)

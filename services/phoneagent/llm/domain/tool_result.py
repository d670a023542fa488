"""What a tool call returns, and what it knows about the call it runs in."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from phoneagent.llm.domain.verification import CallerVerification
from phoneagent.runtime.errors import ErrorKind


@dataclass(frozen=True)
class CallContext:
    call_id: str
    caller_number: str | None = None  # caller ID, when the edge has one
    # Bookings the caller proved in this call and failed attempts (the one mutable part: the
    # tools update it, the dialog's tool adapter saves it with the dialog state).
    verification: CallerVerification = field(default_factory=CallerVerification, compare=False)


@dataclass(frozen=True)
class ToolResult:
    tool: str
    status: str  # "ok", "needs_input" (ask the caller) or "error" (apologise)
    say: str  # a short speakable summary
    data: dict[str, Any] = field(default_factory=dict)
    error_kind: ErrorKind | None = None
    action: str | None = None  # "transfer" or "end_call": the service acts on it

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def content(self) -> str:
        """The JSON text returned to the model as the tool message."""
        body: dict[str, Any] = {"status": self.status, "summary": self.say, **self.data}
        if self.error_kind is not None:
            body["error"] = self.error_kind.name.lower()
        return json.dumps(body, ensure_ascii=False)

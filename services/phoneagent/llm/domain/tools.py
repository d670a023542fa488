"""Running the model's tool calls: validate, resolve dates in code, act, summarise.

:meth:`ToolExecutor.execute` never raises for bad arguments or failed actions: the
result says what went wrong in safe words (``status="error"``) so the dialog can
apologise and carry on, or asks for what is missing (``status="needs_input"``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from phoneagent.agents.agent import Agent
from phoneagent.llm.domain.knowledge import KnowledgeBase
from phoneagent.llm.domain.scheduling import SchedulingStore
from phoneagent.llm.domain.schema_check import validate
from phoneagent.llm.domain.tool_handlers import Handlers
from phoneagent.llm.domain.tool_result import CallContext, ToolResult
from phoneagent.llm.domain.tool_schemas import TOOL_SCHEMAS, tool_definitions
from phoneagent.runtime.errors import ErrorKind, PhoneAgentError

log = logging.getLogger(__name__)

# Said instead of the schema check's own words ("question: is required"), which are for the log.
ASK_AGAIN = "Sorry, I didn't quite catch that. Could you say it again?"
NOT_HERE = "Sorry, I can't do that on this call."


class ToolExecutor:
    """Executes the tools an agent enables, against its appointment book and documents."""

    def __init__(
        self,
        agent: Agent,
        store: SchedulingStore | None = None,
        knowledge: KnowledgeBase | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.agent = agent
        clock = clock or (store.now if store else (lambda: datetime.now(UTC)))
        self._handlers = Handlers(agent, store, knowledge, clock)

    def definitions(self) -> list[dict[str, Any]]:
        return tool_definitions(self.agent.tools, date_of_birth=self.agent.collect_date_of_birth)

    async def execute(
        self, name: str, arguments: str | dict[str, Any] | None, ctx: CallContext
    ) -> ToolResult:
        if name not in TOOL_SCHEMAS or not self.agent.tool_enabled(name):
            log.info("tool not available", extra={"tool": name[:40], "call_id": ctx.call_id})
            return ToolResult(
                name,
                "error",
                NOT_HERE,
                {"problems": "that tool is not available"},
                ErrorKind.INVALID_ARGUMENT,
            )
        try:
            args = self._check(name, arguments)
        except PhoneAgentError as exc:
            # Field names and schema words only (no values): safe to log, never spoken.
            log.info(
                "tool call rejected", extra={"tool": name, "call_id": ctx.call_id, "problems": exc.message}
            )
            return ToolResult(name, "error", ASK_AGAIN, {"problems": exc.message}, error_kind=exc.kind)
        try:
            return await asyncio.to_thread(self._handlers.run, name, args, ctx)
        except PhoneAgentError as exc:
            log.info("tool failed", extra={"tool": name, "kind": exc.kind.name, "call_id": ctx.call_id})
            return ToolResult(
                name, "error", f"Sorry, I could not do that: {exc.message}.", error_kind=exc.kind
            )
        except Exception as exc:  # a bug or an unexpected library error must not end the call
            log.error(
                "tool crashed", extra={"tool": name, "error": type(exc).__name__, "call_id": ctx.call_id}
            )
            return ToolResult(
                name, "error", "Sorry, something went wrong on my side.", error_kind=ErrorKind.INTERNAL
            )

    def _check(self, name: str, arguments: str | dict[str, Any] | None) -> dict[str, Any]:
        if arguments is None or arguments == "":
            args: Any = {}
        elif isinstance(arguments, str):
            try:
                args = json.loads(arguments)
            except json.JSONDecodeError:
                raise PhoneAgentError(
                    ErrorKind.INVALID_ARGUMENT, "the arguments are not valid JSON"
                ) from None
        else:
            args = arguments
        problems = validate(args, TOOL_SCHEMAS[name]["parameters"])
        if problems:
            raise PhoneAgentError(ErrorKind.INVALID_ARGUMENT, "; ".join(problems[:3]))
        return dict(args)

"""Running the model's tool calls: validate, resolve dates in code, act, summarise.

:meth:`ToolExecutor.execute` never raises for bad arguments or failed actions: the
result says what went wrong in safe words (``status="error"``) so the dialog can
apologise and carry on, or asks for what is missing (``status="needs_input"``).

A tool's database work runs in a worker thread, never on the event loop (heartbeats and the
other calls go on while it waits), and within ``timeout_s``: a stalled or unreachable
database is tried once more while time is left, then the caller hears :data:`UNAVAILABLE`.
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
# Said when the appointment book or the documents cannot be reached in time.
UNAVAILABLE = "I'm sorry, I can't reach our appointment book just now. Could you ask me again in a moment?"
DEFAULT_TIMEOUT_S = 4.0
RETRY_AFTER_S = 0.2


class ToolExecutor:
    """Executes the tools an agent enables, against its appointment book and documents."""

    def __init__(
        self,
        agent: Agent,
        store: SchedulingStore | None = None,
        knowledge: KnowledgeBase | None = None,
        clock: Callable[[], datetime] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.agent = agent
        self.timeout_s = timeout_s
        clock = clock or (store.now if store else (lambda: datetime.now(UTC)))
        self._handlers = Handlers(agent, store, knowledge, clock)

    @property
    def knowledge(self) -> KnowledgeBase | None:
        """The agent's documents, searchable (None where they are not loaded)."""
        return self._handlers.knowledge

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
            return await self._run(name, args, ctx)
        except TimeoutError:
            log.warning(
                "tool timed out", extra={"tool": name, "call_id": ctx.call_id, "timeout_s": self.timeout_s}
            )
            return ToolResult(name, "error", UNAVAILABLE, error_kind=ErrorKind.TIMEOUT)
        except PhoneAgentError as exc:
            log.info("tool failed", extra={"tool": name, "kind": exc.kind.name, "call_id": ctx.call_id})
            say = UNAVAILABLE if exc.kind.retryable else f"Sorry, I could not do that: {exc.message}."
            return ToolResult(name, "error", say, error_kind=exc.kind)
        except Exception as exc:  # a bug or an unexpected library error must not end the call
            log.error(
                "tool crashed", extra={"tool": name, "error": type(exc).__name__, "call_id": ctx.call_id}
            )
            return ToolResult(
                name, "error", "Sorry, something went wrong on my side.", error_kind=ErrorKind.INTERNAL
            )

    async def _run(self, name: str, args: dict[str, Any], ctx: CallContext) -> ToolResult:
        """The handler in a worker thread, within ``timeout_s``; a retryable failure (the
        database busy or unreachable, its transaction rolled back) is tried once more."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        for attempt in (1, 2):
            try:
                return await asyncio.wait_for(
                    asyncio.to_thread(self._handlers.run, name, args, ctx), deadline - loop.time()
                )
            except PhoneAgentError as exc:
                if attempt == 2 or not exc.kind.retryable or deadline - loop.time() < 2 * RETRY_AFTER_S:
                    raise
                log.info("tool retried", extra={"tool": name, "kind": exc.kind.name, "call_id": ctx.call_id})
                await asyncio.sleep(RETRY_AFTER_S)
        raise AssertionError("unreachable")

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

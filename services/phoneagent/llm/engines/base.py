"""The interface every LLM engine implements, their base class, request validation, and the registry.

An engine turns a chat (OpenAI-style message dicts) into a stream of :class:`Delta`
pieces. The service owns request ids and calls :meth:`LlmEngine.abort` on barge-in; an
aborted stream ends promptly with ``finish_reason == "abort"``.

Continuing a reply: a request's ``assistant_prefix`` is the start of the assistant's reply, already
generated (a tool call's opener, ``<tool_call>\n``). An engine that ``continues_reply`` builds the
prompt as the rendered conversation, the generation prompt and that prefix, and generates (under
``json_schema`` when given) only what follows it; the deltas carry the new text alone. An engine
without it refuses a prefix, and the dialog generates the call again from the start of the reply.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from phoneagent.runtime.engines import CallMeter, EngineRegistry
from phoneagent.runtime.errors import InvalidArgument, PhoneAgentError
from phoneagent.runtime.retry import DEFAULT_RETRY, Interrupted, OnRetry, RetryPolicy, aiterate

if TYPE_CHECKING:
    from phoneagent.llm.settings import LlmSettings

log = logging.getLogger(__name__)

FINISH_STOP = "stop"  # the model ended its reply
FINISH_LENGTH = "length"  # max_tokens (or the context) ran out
FINISH_ABORT = "abort"  # abort() was called for the request

_ROLES = frozenset({"system", "user", "assistant", "tool"})
MAX_TOKENS_LIMIT = 8192


@dataclass(frozen=True, slots=True)
class Delta:
    """One piece of a streamed reply.

    Every piece but the last carries ``text``; the last carries ``finish_reason`` and the
    token counts, which are ``None`` when the engine cannot tell (an HTTP server that does
    not report usage). ``completion_tokens`` counts sampled tokens, end-of-turn token included.
    ``prompt_evaluated_tokens`` counts the prompt tokens the engine actually evaluated: the
    prompt less the prefix it already held from an earlier request (``prompt_tokens`` is the
    whole prompt). An engine that knows it before the first piece sets it on text pieces too,
    so a consumer that stops early (a tool call opening) still learns it.
    """

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt_evaluated_tokens: int | None = None

    @property
    def final(self) -> bool:
        return self.finish_reason is not None


@runtime_checkable
class LlmEngine(Protocol):
    """A streaming chat-completion engine.

    ``load()`` blocks (it may read hundreds of MB): call it from a worker thread at start-up.
    ``close()`` aborts what is running and frees the engine's resources.
    ``stream()`` is an async generator; an engine may run one generation at a time and then
    queues further calls (each engine documents this). ``abort()`` returns once the stream
    for ``request_id`` will yield nothing more but its final delta; aborting an unknown or
    finished request is a no-op.
    """

    name: str
    # Whether ``json_schema`` constrains what is sampled (a grammar, structured outputs): the
    # dialog then finishes every tool call under the tools' schemas. Engines without it (test
    # doubles) get the free-text call read back with repairs.
    structured_output: bool
    # Whether ``assistant_prefix`` is honoured (see the module doc): the dialog then finishes a
    # tool call the free reply opened in the same generation instead of generating it again.
    continues_reply: bool

    def load(self) -> None: ...

    async def close(self) -> None: ...

    def stream(
        self,
        messages: list[dict[str, Any]],
        *,
        request_id: str,
        max_tokens: int,
        temperature: float,
        tools: list[dict[str, Any]] | None = None,
        json_schema: dict[str, Any] | None = None,
        assistant_prefix: str = "",
    ) -> AsyncIterator[Delta]: ...

    async def abort(self, request_id: str) -> None: ...

    async def warm_up(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> None:
        """Evaluate the prompt prefix that every conversation shares (persona, tool schemas) once,
        before the first call, so that the first turn does not pay for it."""
        ...


async def warm_up_by_streaming(
    engine: LlmEngine, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
) -> None:
    """A one-token completion of ``messages``: the engine's own prefix cache keeps the rest."""
    async for _ in engine.stream(
        messages, request_id=f"warm-up-{time.monotonic_ns()}", max_tokens=1, temperature=0.0, tools=tools
    ):
        pass


@dataclass(frozen=True, slots=True)
class LlmRequest:
    """One validated request, as an engine's :meth:`BaseLlmEngine._stream` receives it."""

    request_id: str
    messages: list[dict[str, Any]]
    max_tokens: int
    temperature: float
    tools: list[dict[str, Any]] | None = None
    json_schema: dict[str, Any] | None = None
    assistant_prefix: str = ""  # the reply's start, already generated (see the module doc)


class BaseLlmEngine(abc.ABC):
    """What every LLM engine shares (the template of :meth:`stream`).

    :meth:`stream` validates the request, refuses an engine that is not ready and a request
    id already running, then yields the deltas of the engine's own :meth:`_stream`, opened
    again under the runtime's retry policy while nothing has been yielded; an :meth:`abort`
    during a back-off wait ends the stream with ``finish_reason == "abort"``. Outcomes and
    retries are counted. An engine implements :meth:`load`, :meth:`close`, :meth:`_stream`,
    :meth:`_abort`, :meth:`_check_ready` and :meth:`options_from`.
    """

    name: str
    structured_output: bool = True
    continues_reply: bool = False  # an engine that honours ``assistant_prefix`` says so
    retry: RetryPolicy = DEFAULT_RETRY

    def __init__(self) -> None:
        self._requests: dict[str, asyncio.Event] = {}  # running request id -> its abort signal

    @classmethod
    def options_from(cls, settings: LlmSettings) -> dict[str, Any]:
        """Constructor options from the LLM service's settings."""
        return {"model": settings.model}

    @abc.abstractmethod
    def load(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    def _check_ready(self) -> None:
        """Raise :class:`~phoneagent.runtime.errors.Unavailable` when a request cannot start now."""

    async def stream(
        self,
        messages: list[dict[str, Any]],
        *,
        request_id: str,
        max_tokens: int,
        temperature: float,
        tools: list[dict[str, Any]] | None = None,
        json_schema: dict[str, Any] | None = None,
        assistant_prefix: str = "",
    ) -> AsyncIterator[Delta]:
        validate_request(
            messages,
            request_id=request_id,
            max_tokens=max_tokens,
            temperature=temperature,
            tools=tools,
            json_schema=json_schema,
            assistant_prefix=assistant_prefix,
        )
        if assistant_prefix and not self.continues_reply:
            raise InvalidArgument(f"the {self.name} engine cannot continue a reply (assistant_prefix)")
        self._check_ready()
        if request_id in self._requests:
            raise InvalidArgument("a request with this id is already running")
        request = LlmRequest(
            request_id, messages, max_tokens, float(temperature), tools, json_schema, assistant_prefix
        )
        aborted = self._requests[request_id] = asyncio.Event()
        meter = CallMeter("llm", self.name)
        deltas = aiterate(
            lambda: self._stream(request), self.retry, interrupt=aborted, on_retry=self._retried(meter)
        )
        try:
            async with contextlib.aclosing(deltas):  # a consumer that stops early stops the engine now
                async for delta in deltas:
                    yield delta
        except Interrupted:
            meter.ok()
            yield Delta(finish_reason=FINISH_ABORT)
        except Exception as exc:
            meter.failed(exc)
            raise
        else:
            meter.ok()
        finally:
            self._requests.pop(request_id, None)

    def _retried(self, meter: CallMeter) -> OnRetry:
        def note(attempt: int, error: PhoneAgentError) -> None:
            meter.retried(attempt, error)
            log.warning(
                "llm request retried",
                extra={"engine": self.name, "attempt": attempt, "kind": error.kind.name.lower()},
            )

        return note

    @abc.abstractmethod
    def _stream(self, request: LlmRequest) -> AsyncIterator[Delta]:
        """The deltas of one validated request (an async generator), ending with a final delta."""

    async def abort(self, request_id: str) -> None:
        aborted = self._requests.get(request_id)
        if aborted is not None:
            aborted.set()
        await self._abort(request_id)

    @abc.abstractmethod
    async def _abort(self, request_id: str) -> None:
        """End the engine's stream for ``request_id`` promptly (no-op when unknown)."""

    async def warm_up(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> None:
        """One token of ``messages``: the engine's prefix cache keeps the shared prefix."""
        await warm_up_by_streaming(self, messages, tools)


def validate_request(
    messages: list[dict[str, Any]],
    *,
    request_id: str,
    max_tokens: int,
    temperature: float,
    tools: list[dict[str, Any]] | None = None,
    json_schema: dict[str, Any] | None = None,
    assistant_prefix: str = "",
) -> None:
    """Reject malformed requests with :class:`InvalidArgument` before any engine sees them."""
    if not isinstance(request_id, str) or not request_id:
        raise InvalidArgument("request_id must be a non-empty string")
    if not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
        raise InvalidArgument(f"max_tokens must be an integer from 1 to {MAX_TOKENS_LIMIT}")
    if not isinstance(temperature, int | float) or not 0.0 <= temperature <= 2.0:
        raise InvalidArgument("temperature must be between 0 and 2")
    if not isinstance(messages, list) or not messages:
        raise InvalidArgument("messages must be a non-empty list")
    for i, msg in enumerate(messages):
        _validate_message(i, msg)
    if tools is not None:
        _validate_tools(tools)
    if json_schema is not None and (not isinstance(json_schema, dict) or not json_schema):
        raise InvalidArgument("json_schema must be a non-empty JSON Schema object")
    if not isinstance(assistant_prefix, str):
        raise InvalidArgument("assistant_prefix must be a string")


def template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` as a chat template renders them in process (llama.cpp, vLLM): each tool call's
    ``arguments`` as the JSON object it holds. The dialog keeps them as a JSON string, the
    OpenAI protocol's form, and Qwen's template writes ``arguments | tojson``: from a string that
    is an escaped string (``"arguments": "{\"question\": ...}"``), which is neither what the model
    wrote (its evaluated tokens no longer match, and the whole call is read again on the next
    turn) nor the form its examples show it. Messages are copied, never changed in place; an
    argument string that is not a JSON object stays as it is."""
    out = []
    for msg in messages:
        calls = msg.get("tool_calls") if isinstance(msg, dict) else None
        if not calls:
            out.append(msg)
            continue
        rendered = []
        for call in calls:
            fn = call.get("function") if isinstance(call, dict) else None
            args = fn.get("arguments") if isinstance(fn, dict) else None
            if isinstance(fn, dict) and isinstance(args, str):
                try:
                    parsed = json.loads(args)
                except ValueError:
                    parsed = None
                if isinstance(parsed, dict):
                    call = {**call, "function": {**fn, "arguments": parsed}}
            rendered.append(call)
        out.append({**msg, "tool_calls": rendered})
    return out


def _validate_message(index: int, msg: Any) -> None:
    if not isinstance(msg, dict):
        raise InvalidArgument(f"message {index} is not an object")
    if msg.get("role") not in _ROLES:
        raise InvalidArgument(f"message {index} has an unknown role")
    content = msg.get("content")
    if content is None and msg.get("role") == "assistant" and msg.get("tool_calls"):
        return
    if not isinstance(content, str):
        raise InvalidArgument(f"message {index} content must be a string")


def _validate_tools(tools: Any) -> None:
    if not isinstance(tools, list):
        raise InvalidArgument("tools must be a list")
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise InvalidArgument(f"tool {i} must be {{'type': 'function', 'function': {{'name': ...}}}}")


ENGINES: EngineRegistry[LlmEngine] = EngineRegistry(
    "LLM",
    aliases={
        "llama-cpp": "llama_cpp",
        "llamacpp": "llama_cpp",
        "openai": "openai_http",
        "openai-http": "openai_http",
    },
)
ENGINES.register(
    "llama_cpp", "phoneagent.llm.engines.llama_cpp:LlamaCppEngine", extra="llm", package="llama-cpp-python"
)
ENGINES.register(
    "openai_http", "phoneagent.llm.engines.openai_http:OpenAIHttpEngine", extra="llm", package="aiohttp"
)
ENGINES.register("vllm", "phoneagent.llm.engines.vllm:VllmEngine", extra="llm-gpu", package="vllm")


def engine_names() -> list[str]:
    return list(ENGINES.names())


def create_engine(name: str, **opts: Any) -> LlmEngine:
    """Build the engine called ``name`` with engine-specific options (not yet loaded).

    Raises :class:`InvalidArgument` for an unknown name and
    :class:`~phoneagent.runtime.modelfiles.MissingModelError` (naming the extra to install)
    when the engine's library is missing.
    """
    return ENGINES.create(name, **opts)


def engine_options(name: str, settings: LlmSettings) -> dict[str, Any]:
    """The options engine ``name`` builds from ``settings``."""
    return ENGINES.options(name, settings)

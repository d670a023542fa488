"""Client engine for an external OpenAI-compatible server (vLLM, llama.cpp server, ...).

Streams ``/v1/chat/completions`` over server-sent events. A request is retried (by the
base class, under the runtime's retry policy) only while nothing has been received:
connection refused, timeouts, 429/502/503/504 before the first byte; once text has
streamed a failure ends the stream with an error. ``abort`` closes the HTTP response,
which makes vLLM abort the request on the server as well.

Tools are passed with ``tool_choice: "none"`` so the server renders them into the
prompt but returns the model's text as is, the same as the in-process engines.

It does not continue a reply (``continues_reply`` is False): the chat API has no portable way to
append to the assistant's turn, so a tool call the free reply opens is generated again from the
start of the reply under the tools' schema.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from phoneagent.llm.engines.base import (
    FINISH_ABORT,
    FINISH_LENGTH,
    FINISH_STOP,
    BaseLlmEngine,
    Delta,
    LlmRequest,
)
from phoneagent.llm.engines.sse import SseParser
from phoneagent.runtime.errors import (
    EngineFailure,
    ErrorKind,
    InvalidArgument,
    PhoneAgentError,
    Unavailable,
)
from phoneagent.runtime.modelfiles import MissingModelError
from phoneagent.runtime.retry import DEFAULT_RETRY, RetryPolicy

if TYPE_CHECKING:
    from phoneagent.llm.settings import LlmSettings

log = logging.getLogger(__name__)


def _import_aiohttp() -> Any:
    try:
        import aiohttp
    except ImportError:
        raise MissingModelError(
            "the OpenAI HTTP engine needs aiohttp", extra="llm", package="aiohttp"
        ) from None
    return aiohttp


def status_error(status: int) -> PhoneAgentError:
    """The error kind for an HTTP status from the server (the body is never echoed)."""
    if status in (400, 413, 422):
        return InvalidArgument(f"the LLM server rejected the request (HTTP {status})")
    if status == 404:
        return PhoneAgentError(ErrorKind.MODEL_UNAVAILABLE, "the LLM server does not serve this model")
    if status in (401, 403):
        return PhoneAgentError(ErrorKind.INTERNAL, f"the LLM server refused our credentials (HTTP {status})")
    if status in (429, 503):
        return PhoneAgentError(ErrorKind.OVERLOADED, f"the LLM server is overloaded (HTTP {status})")
    if status in (502, 504):
        return Unavailable(f"the LLM server is unreachable (HTTP {status})")
    return EngineFailure(f"the LLM server failed (HTTP {status})")


@dataclass
class _Live:
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    response: Any = None


async def _first_of(task: asyncio.Future[Any], cancelled: asyncio.Event) -> bool:
    """Wait for ``task`` unless ``cancelled`` is set first (then cancel it); True if the task finished."""
    waiter = asyncio.ensure_future(cancelled.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if task.done() and not cancelled.is_set():
        return True
    task.cancel()
    if task.done() and not task.cancelled() and task.exception() is None:
        task.result().close()
    return False


class OpenAIHttpEngine(BaseLlmEngine):
    """Streaming chat completions from ``base_url`` (e.g. ``http://vllm:8000/v1``)."""

    name = "openai_http"
    structured_output = True  # json_schema constrains the output (tool calls, summaries)

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        connect_timeout: float = 3.0,
        read_timeout: float = 30.0,
        retries: int = DEFAULT_RETRY.retries,
        retry_backoff: float = DEFAULT_RETRY.backoff_s,
        schema_style: str = "openai",
        include_usage: bool = True,
    ) -> None:
        super().__init__()
        self._aiohttp = _import_aiohttp()
        if not base_url.startswith(("http://", "https://")):
            raise InvalidArgument("base_url must start with http:// or https://")
        if schema_style not in ("openai", "llama_cpp"):
            raise InvalidArgument("schema_style must be 'openai' or 'llama_cpp'")
        if retries < 0 or connect_timeout <= 0 or read_timeout <= 0:
            raise InvalidArgument("timeouts must be positive and retries not negative")
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._model = model
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = self._aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self.retry = RetryPolicy(retries=retries, backoff_s=retry_backoff)
        self._schema_style = schema_style
        self._include_usage = include_usage
        self._session: Any = None
        self._live: dict[str, _Live] = {}

    @classmethod
    def options_from(cls, settings: LlmSettings) -> dict[str, Any]:
        return {
            **super().options_from(settings),
            "base_url": settings.base_url,
            "api_key": settings.api_key or None,
        }

    def load(self) -> None:
        """Nothing to load: the session opens with the first request."""

    def _check_ready(self) -> None:
        """Always ready: whether the server answers shows when the request is sent."""

    async def close(self) -> None:
        for request_id in list(self._live):
            await self.abort(request_id)
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def _abort(self, request_id: str) -> None:
        live = self._live.get(request_id)
        if live is None:
            return
        live.cancelled.set()
        if live.response is not None:
            live.response.close()

    def request_body(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int,
        temperature: float,
        tools: list[dict[str, Any]] | None,
        json_schema: dict[str, Any] | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
        }
        if self._include_usage:
            body["stream_options"] = {"include_usage": True}
        if tools:
            body["tools"] = tools
            body["tool_choice"] = "none"
        if json_schema is not None:
            if self._schema_style == "llama_cpp":
                body["response_format"] = {"type": "json_object", "schema": json_schema}
            else:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "reply", "schema": json_schema},
                }
        return body

    async def _stream(self, request: LlmRequest) -> AsyncIterator[Delta]:
        body = self.request_body(
            request.messages,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            tools=request.tools,
            json_schema=request.json_schema,
        )
        live = _Live()
        self._live[request.request_id] = live
        try:
            response = await self._open(body, live)
            if response is None:
                yield Delta(finish_reason=FINISH_ABORT)
                return
            async for delta in self._read(response, live):
                yield delta
        finally:
            self._live.pop(request.request_id, None)
            if live.response is not None:
                live.response.close()

    async def _open(self, body: dict[str, Any], live: _Live) -> Any:
        """POST the request: the response, None when aborted, or the error (retryable or not).

        An abort while waiting for the response headers drops the connection.
        """
        if self._session is None or self._session.closed:
            self._session = self._aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        post = asyncio.ensure_future(self._session.post(self._url, json=body))
        if not await _first_of(post, live.cancelled):
            return None
        try:
            response = post.result()
        except TimeoutError:
            raise PhoneAgentError(ErrorKind.TIMEOUT, "the LLM server did not answer in time") from None
        except self._aiohttp.ClientError:
            raise Unavailable("cannot connect to the LLM server") from None
        if live.cancelled.is_set():
            response.close()
            return None
        if response.status != 200:
            response.release()
            raise status_error(response.status)
        live.response = response
        return response

    async def _read(self, response: Any, live: _Live) -> AsyncIterator[Delta]:
        parser = SseParser()
        usage: dict[str, Any] = {}
        finish: str | None = None
        while (line := await self._readline(response, live)) is not None:
            data = parser.feed(line)
            if data is None:
                continue
            if data.strip() == "[DONE]":
                finish = finish or FINISH_STOP
                break
            text, reason = self._parse_event(data, usage)
            if reason is not None:
                finish = FINISH_LENGTH if reason == "length" else FINISH_STOP
            if live.cancelled.is_set():
                break
            if text:
                yield Delta(text=text)
        if live.cancelled.is_set():
            finish = FINISH_ABORT
        elif finish is None:
            raise Unavailable("the LLM server ended the stream early")
        yield Delta(
            finish_reason=finish,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            prompt_evaluated_tokens=prompt_evaluated(usage),
        )

    async def _readline(self, response: Any, live: _Live) -> str | None:
        """The next line of the body, or None at its end or after an abort."""
        if live.cancelled.is_set():
            return None
        try:
            raw = await response.content.readline()
        except TimeoutError:
            raise PhoneAgentError(ErrorKind.TIMEOUT, "the LLM server stopped sending") from None
        except self._aiohttp.ClientError:
            if live.cancelled.is_set():
                return None
            raise Unavailable("the connection to the LLM server broke") from None
        if not raw:
            return None
        return raw.decode("utf-8", "replace").rstrip("\r\n")

    @staticmethod
    def _parse_event(data: str, usage: dict[str, Any]) -> tuple[str, str | None]:
        try:
            event = json.loads(data)
        except json.JSONDecodeError:
            raise EngineFailure("the LLM server sent a malformed event") from None
        if not isinstance(event, dict):
            raise EngineFailure("the LLM server sent a malformed event")
        if "error" in event:
            raise EngineFailure("the LLM server reported an error during generation")
        if isinstance(event.get("usage"), dict):
            usage.update(event["usage"])
        choices = event.get("choices") or []
        if not choices:
            return "", None
        choice = choices[0]
        delta = choice.get("delta") or {}
        return delta.get("content") or "", choice.get("finish_reason")


def prompt_evaluated(usage: dict[str, Any]) -> int | None:
    """The prompt tokens the server evaluated: its prompt less the cached prefix it reports
    (``usage.prompt_tokens_details.cached_tokens``); None when it reports no cache figure."""
    total, details = usage.get("prompt_tokens"), usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    if not isinstance(total, int) or not isinstance(cached, int):
        return None
    return max(total - cached, 0)

"""An LLM engine made of several: a reply comes from the first engine that does not fail over.

A replica can list ``openai_http`` (a shared vLLM server) then ``llama_cpp``: when the server
is unreachable, overloaded or times out before the reply's first token, the local model
answers instead (counted in ``pa_engine_fallbacks_total``). Once a delta has gone out the
reply stays with its engine. ``abort`` reaches every engine (a no-op where the request is
not running); the adapter constrains output, and continues a reply, only when every engine does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from phoneagent.llm.engines.base import Delta, LlmEngine
from phoneagent.runtime.fallback import Fallback


class FallbackLlmEngine:
    """:class:`LlmEngine` over ``engines`` in order of preference."""

    def __init__(self, engines: Sequence[LlmEngine]) -> None:
        self._chain = Fallback("llm", engines)
        self.name = self._chain.engines[0].name
        self.structured_output = all(e.structured_output for e in self._chain.engines)
        self.continues_reply = all(getattr(e, "continues_reply", False) for e in self._chain.engines)

    @property
    def engines(self) -> tuple[LlmEngine, ...]:
        return self._chain.engines

    def load(self) -> None:
        for engine in self._chain.engines:
            engine.load()

    async def close(self) -> None:
        for engine in self._chain.engines:
            await engine.close()

    def stream(self, messages: list[dict[str, Any]], **kwargs: Any) -> AsyncIterator[Delta]:
        return self._chain.aiterate(lambda engine: engine.stream(messages, **kwargs))

    async def abort(self, request_id: str) -> None:
        for engine in self._chain.engines:
            await engine.abort(request_id)

    async def warm_up(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> None:
        for engine in self._chain.engines:
            await engine.warm_up(messages, tools)

"""A small stand-in for vLLM's ``AsyncLLM`` and the ``vllm`` modules the engine imports: the same
call shapes (``generate(prompt, sampling_params, request_id)`` as an async generator of
``RequestOutput`` deltas, ``async abort(request_id)``, ``get_tokenizer()``), so the vLLM engine
runs without a GPU or vllm installed. The ``fake_vllm`` fixture (tests/llm/conftest.py) installs
the modules; :func:`engine_with` builds an engine as if ``load()`` had started ``fake``."""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import pytest


class RequestOutputKind(Enum):
    CUMULATIVE = 0
    DELTA = 1
    FINAL_ONLY = 2


@dataclass
class SamplingParams:
    max_tokens: int = 16
    temperature: float = 1.0
    output_kind: RequestOutputKind = RequestOutputKind.CUMULATIVE
    structured_outputs: Any = None


@dataclass
class StructuredOutputsParams:
    json: Any = None


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None = None
    logprobs: Any = None
    finish_reason: str | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool
    num_cached_tokens: int | None = None


class Tokenizer:
    def apply_chat_template(self, messages: list[dict[str, Any]], **kw: Any) -> str:
        assert kw == {"tools": kw.get("tools"), "tokenize": False, "add_generation_prompt": True}
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"


@dataclass
class FakeAsyncLLM:
    """vLLM v1 ``AsyncLLM`` as the engine uses it. ``pieces`` are the DELTA texts to emit; a None
    piece waits until the request is aborted (vLLM then ends the generator)."""

    pieces: list[str | None] = field(default_factory=list)
    finish_reason: str = "stop"
    fail: Exception | None = None
    cached: int | None = None  # prompt tokens reported as a prefix-cache hit (None: not reported)
    aborted: list[str] = field(default_factory=list)
    calls: list[tuple[str, SamplingParams, str]] = field(default_factory=list)
    running: set[str] = field(default_factory=set)
    _stops: dict[str, asyncio.Event] = field(default_factory=dict)

    async def get_tokenizer(self) -> Tokenizer:
        return Tokenizer()

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)
        if request_id in self._stops:
            self._stops[request_id].set()

    def shutdown(self) -> None: ...

    async def generate(
        self, prompt: str, sampling_params: SamplingParams, request_id: str
    ) -> AsyncIterator[RequestOutput]:
        self.calls.append((prompt, sampling_params, request_id))
        stop = self._stops.setdefault(request_id, asyncio.Event())
        self.running.add(request_id)
        try:
            if self.fail is not None:
                raise self.fail
            for i, piece in enumerate(self.pieces):
                if piece is None:
                    await stop.wait()
                    return  # an aborted request's generator just ends
                last = i == len(self.pieces) - 1
                out = CompletionOutput(0, piece, [i], finish_reason=self.finish_reason if last else None)
                yield RequestOutput(
                    request_id, prompt, [1, 2, 3], [out], finished=last, num_cached_tokens=self.cached
                )
                await asyncio.sleep(0)
        finally:
            self.running.discard(request_id)


def engine_with(fake: FakeAsyncLLM) -> Any:
    from phoneagent.llm.engines.vllm import VllmEngine

    engine = VllmEngine(model="/models/qwen")
    engine._engine = fake  # what load() would start
    return engine


def install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Put the ``vllm`` stand-in modules in ``sys.modules``."""
    vllm = types.ModuleType("vllm")
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.RequestOutputKind = RequestOutputKind  # type: ignore[attr-defined]
    sampling.StructuredOutputsParams = StructuredOutputsParams  # type: ignore[attr-defined]
    vllm.SamplingParams = SamplingParams  # type: ignore[attr-defined]
    vllm.sampling_params = sampling  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling)

"""The vLLM engine's stream and abort logic (``_pump``, ``_consume``, ``abort``) against a small
stand-in for vLLM's ``AsyncLLM``: the same call shapes (``generate(prompt, sampling_params,
request_id)`` as an async generator of ``RequestOutput`` deltas, ``async abort(request_id)``,
``get_tokenizer()``), so the engine runs here without a GPU or vllm installed."""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import pytest
from phoneagent.llm.engines.base import FINISH_ABORT, FINISH_LENGTH, FINISH_STOP, Delta
from phoneagent.runtime.errors import EngineFailure, InvalidArgument

MESSAGES = [{"role": "user", "content": "When are you open?"}]


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
                yield RequestOutput(request_id, prompt, [1, 2, 3], [out], finished=last)
                await asyncio.sleep(0)
        finally:
            self.running.discard(request_id)


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    vllm = types.ModuleType("vllm")
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.RequestOutputKind = RequestOutputKind  # type: ignore[attr-defined]
    sampling.StructuredOutputsParams = StructuredOutputsParams  # type: ignore[attr-defined]
    vllm.SamplingParams = SamplingParams  # type: ignore[attr-defined]
    vllm.sampling_params = sampling  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling)
    yield


def engine_with(fake: FakeAsyncLLM) -> Any:
    from phoneagent.llm.engines.vllm import VllmEngine

    engine = VllmEngine(model="/models/qwen")
    engine._engine = fake  # what load() would start
    return engine


async def collect(stream: AsyncIterator[Delta]) -> list[Delta]:
    return [d async for d in stream]


async def test_stream_yields_deltas_then_stop_with_token_counts(fake_vllm: None) -> None:
    fake = FakeAsyncLLM(pieces=["We are ", "open nine ", "to five."])
    engine = engine_with(fake)
    out = await collect(engine.stream(MESSAGES, request_id="r1", max_tokens=32, temperature=0.2))
    assert "".join(d.text for d in out) == "We are open nine to five."
    assert out[-1] == Delta(finish_reason=FINISH_STOP, prompt_tokens=3, completion_tokens=3)
    prompt, params, request_id = fake.calls[0]
    assert request_id == "r1" and prompt == "<user>When are you open?<assistant>"
    assert (params.max_tokens, params.temperature, params.output_kind) == (32, 0.2, RequestOutputKind.DELTA)
    assert params.structured_outputs is None and not engine._live


async def test_json_schema_becomes_structured_outputs_and_length_is_reported(fake_vllm: None) -> None:
    schema = {"type": "object", "properties": {"name": {"const": "end_call"}}}
    fake = FakeAsyncLLM(pieces=['{"name": ', '"end_call"'], finish_reason="length")
    engine = engine_with(fake)
    out = await collect(
        engine.stream(MESSAGES, request_id="r2", max_tokens=4, temperature=0.0, json_schema=schema)
    )
    assert out[-1].finish_reason == FINISH_LENGTH
    assert fake.calls[0][1].structured_outputs == StructuredOutputsParams(json=schema)


async def test_abort_ends_the_stream_at_once_and_aborts_inside_vllm(fake_vllm: None) -> None:
    fake = FakeAsyncLLM(pieces=["Let me check ", None, "never sent"])
    engine = engine_with(fake)
    got: list[Delta] = []
    started = asyncio.Event()

    async def consume() -> None:
        async for d in engine.stream(MESSAGES, request_id="r3", max_tokens=32, temperature=0.2):
            got.append(d)
            started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 1.0)
    await engine.abort("r3")
    await asyncio.wait_for(task, 1.0)
    assert [d.text for d in got[:-1]] == ["Let me check "] and got[-1].finish_reason == FINISH_ABORT
    assert "r3" in fake.aborted and not fake.running and not engine._live
    aborts = len(fake.aborted)
    await engine.abort("r3")  # aborting a finished request is a no-op
    await engine.abort("unknown")
    assert len(fake.aborted) == aborts


async def test_a_consumer_that_stops_early_aborts_the_request_in_vllm(fake_vllm: None) -> None:
    fake = FakeAsyncLLM(pieces=["One ", None])
    engine = engine_with(fake)
    stream = engine.stream(MESSAGES, request_id="r4", max_tokens=32, temperature=0.2)
    first = await anext(stream)
    assert first.text == "One "
    await asyncio.wait_for(stream.aclose(), 1.0)
    assert fake.aborted == ["r4"] and not fake.running and not engine._live


async def test_engine_errors_surface_as_engine_failure_and_duplicate_ids_are_refused(fake_vllm: None) -> None:
    fake = FakeAsyncLLM(fail=RuntimeError("EngineDeadError"))
    engine = engine_with(fake)
    with pytest.raises(EngineFailure):
        await collect(engine.stream(MESSAGES, request_id="r5", max_tokens=8, temperature=0.2))
    assert not engine._live
    fake.fail, fake.pieces = None, ["a", None]
    first = engine.stream(MESSAGES, request_id="r6", max_tokens=8, temperature=0.2)
    await anext(first)
    with pytest.raises(InvalidArgument):
        await collect(engine.stream(MESSAGES, request_id="r6", max_tokens=8, temperature=0.2))
    await engine.close()  # aborts what is running
    assert "r6" in fake.aborted
    await first.aclose()

"""The vLLM engine's stream and abort logic (``_pump``, ``_consume``, ``abort``) against a small
stand-in for vLLM's ``AsyncLLM``: the same call shapes (``generate(prompt, sampling_params,
request_id)`` as an async generator of ``RequestOutput`` deltas, ``async abort(request_id)``,
``get_tokenizer()``), so the engine runs here without a GPU or vllm installed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from phoneagent.llm.engines.base import FINISH_ABORT, FINISH_LENGTH, FINISH_STOP, Delta
from phoneagent.runtime.errors import EngineFailure, InvalidArgument
from support.vllm_standin import FakeAsyncLLM, RequestOutputKind, StructuredOutputsParams, engine_with

MESSAGES = [{"role": "user", "content": "When are you open?"}]


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


async def test_the_prompt_less_its_cached_prefix_is_reported_as_evaluated(fake_vllm: None) -> None:
    fake = FakeAsyncLLM(pieces=["Yes, ", "we do."], cached=2)
    out = await collect(engine_with(fake).stream(MESSAGES, request_id="r9", max_tokens=8, temperature=0.0))
    assert [d.prompt_evaluated_tokens for d in out] == [1, 1, 1]  # on the text pieces and the end
    assert out[-1].prompt_tokens == 3


async def test_a_continued_reply_follows_the_generation_prompt(fake_vllm: None) -> None:
    """``assistant_prefix`` goes after the generation prompt, and the schema constrains only
    what follows it: a tool call the free reply opened goes on in the same sequence."""
    schema = {"type": "object", "properties": {"name": {"const": "end_call"}}}
    fake = FakeAsyncLLM(pieces=['{"name": "end_call"}'])
    engine = engine_with(fake)
    assert engine.continues_reply
    out = await collect(
        engine.stream(
            MESSAGES,
            request_id="r8",
            max_tokens=16,
            temperature=0.0,
            json_schema=schema,
            assistant_prefix="<tool_call>\n",
        )
    )
    assert "".join(d.text for d in out) == '{"name": "end_call"}'
    prompt, params, _ = fake.calls[0]
    assert prompt == "<user>When are you open?<assistant><tool_call>\n"
    assert params.structured_outputs == StructuredOutputsParams(json=schema)


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

"""Every registered LLM engine through the same behaviour checks (the base class's contract).

llama.cpp runs for real with qwen-0.5b (slow: the model loads once for the module);
openai_http runs against a small OpenAI-compatible server (openai_standin) and vLLM against
the stand-in of its ``AsyncLLM`` (vllm_standin), so neither needs a model or a GPU. A new
engine registered in ``phoneagent.llm.engines.base.ENGINES`` fails
``test_every_registered_engine_is_checked`` until it is added here.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from phoneagent.llm.engines.base import (
    ENGINES,
    FINISH_ABORT,
    FINISH_LENGTH,
    FINISH_STOP,
    BaseLlmEngine,
    Delta,
    LlmEngine,
    LlmRequest,
    create_engine,
    engine_options,
)
from phoneagent.llm.engines.fallback import FallbackLlmEngine
from phoneagent.llm.settings import LlmSettings
from phoneagent.runtime.errors import ErrorKind, InvalidArgument, PhoneAgentError, Unavailable
from phoneagent.runtime.retry import RetryPolicy
from phoneagent.runtime.settings import load
from prometheus_client import REGISTRY
from support.llm import needs
from support.openai_standin import OpenAIStandIn
from support.vllm_standin import FakeAsyncLLM, engine_with

ASK = [{"role": "user", "content": "When do you open? Answer in one short sentence."}]
COUNT = [{"role": "user", "content": "Count from one to one hundred in words, separated by commas."}]
NAMES = ["llama_cpp", "openai_http", "vllm"]


@dataclass
class Subject:
    engine: Any  # a loaded BaseLlmEngine
    broken: Callable[[], LlmEngine]  # one of the same kind that is unavailable


class ScriptedAsyncLLM(FakeAsyncLLM):
    """Answers in three pieces; a request to count sends one piece, then waits for the abort."""

    def generate(self, prompt: str, sampling_params: Any, request_id: str) -> AsyncIterator[Any]:
        self.pieces = ["One, ", None] if "Count" in prompt else ["We open ", "at nine ", "on weekdays."]
        return super().generate(prompt, sampling_params, request_id)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings(**env: str) -> LlmSettings:
    return load(LlmSettings, {"PA_LLM_CONTEXT": "2048", **env})


@pytest.fixture(scope="module")
async def llama() -> AsyncIterator[Any]:
    engine = create_engine("llama_cpp", **engine_options("llama_cpp", settings()), seed=7)
    await asyncio.to_thread(engine.load)
    yield engine
    await engine.close()


@pytest.fixture(scope="module")
async def openai_server() -> AsyncIterator[OpenAIStandIn]:
    server = OpenAIStandIn()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="module")
async def openai(openai_server: OpenAIStandIn) -> AsyncIterator[Any]:
    """The openai_http engine, built from the LLM settings, against the stand-in server."""
    env = {"PA_LLM_ENGINE": "openai_http", "PA_LLM_BASE_URL": openai_server.url, "PA_LLM_MODEL": "m"}
    engine = create_engine("openai_http", **engine_options("openai_http", settings(**env)))
    yield engine
    await engine.close()


@pytest.fixture(
    params=[
        pytest.param("llama_cpp", marks=[pytest.mark.slow, needs("llama_cpp", what="llama-cpp-python")]),
        pytest.param("openai_http", marks=needs("aiohttp", what="aiohttp"), id="openai_http-standin"),
        pytest.param("vllm", id="vllm-standin"),
    ]
)
def subject(request: pytest.FixtureRequest) -> Subject:
    name = request.param
    if name == "llama_cpp":
        return Subject(request.getfixturevalue("llama"), lambda: create_engine("llama_cpp", n_ctx=2048))
    if name == "openai_http":
        down = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
        return Subject(
            request.getfixturevalue("openai"),
            lambda: create_engine(name, base_url=down, model="m", retries=0),
        )
    request.getfixturevalue("fake_vllm")
    assert engine_options(name, settings(PA_LLM_MODEL="/models/qwen"))["max_model_len"] == 2048
    shared = engine_options(name, settings(PA_LLM_MODEL="/models/qwen", PA_LLM_GPU_MEMORY="0.5"))
    assert shared["gpu_memory_utilization"] == 0.5  # room for ASR and TTS on the same card
    return Subject(engine_with(ScriptedAsyncLLM()), lambda: create_engine(name, model="/models/qwen"))


def metric(sample: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(sample, labels) or 0.0


async def reply(engine: LlmEngine, request_id: str) -> list[Delta]:
    return [d async for d in engine.stream(ASK, request_id=request_id, max_tokens=12, temperature=0.0)]


def check_reply(deltas: list[Delta]) -> None:
    assert deltas and all(not d.final for d in deltas[:-1]) and deltas[-1].final
    assert "".join(d.text for d in deltas).strip()
    assert deltas[-1].finish_reason in (FINISH_STOP, FINISH_LENGTH)


def test_every_registered_engine_is_checked() -> None:
    assert set(ENGINES.names()) == set(NAMES)


async def test_a_reply_streams_text_then_one_final_delta(subject: Subject) -> None:
    engine = subject.engine
    assert isinstance(engine, BaseLlmEngine) and isinstance(engine, LlmEngine)
    labels = {"stage": "llm", "engine": engine.name, "outcome": "ok"}
    before = metric("pa_engine_calls_total", **labels)
    check_reply(await reply(engine, "c-1"))
    assert metric("pa_engine_calls_total", **labels) == before + 1
    await engine.warm_up(ASK)  # a one-token completion of the shared prefix


async def test_bad_requests_and_running_ids_are_refused(subject: Subject) -> None:
    engine = subject.engine
    with pytest.raises(InvalidArgument):
        await anext(engine.stream(ASK, request_id="c-2", max_tokens=0, temperature=0.0))
    first = engine.stream(COUNT, request_id="c-2", max_tokens=64, temperature=0.0)
    assert (await anext(first)).text
    with pytest.raises(InvalidArgument, match="already running"):
        await anext(engine.stream(ASK, request_id="c-2", max_tokens=4, temperature=0.0))
    await first.aclose()
    check_reply(await reply(engine, "c-2"))  # the id is free again once its stream is closed


async def test_abort_ends_the_stream_promptly(subject: Subject) -> None:
    engine = subject.engine
    stream = engine.stream(COUNT, request_id="c-3", max_tokens=64, temperature=0.0)
    assert (await anext(stream)).text
    await engine.abort("c-3")
    rest = await asyncio.wait_for(_drain(stream), 5.0)
    assert rest[-1].finish_reason == FINISH_ABORT
    await engine.abort("c-3")  # aborting a finished request is a no-op


async def _drain(stream: AsyncIterator[Delta]) -> list[Delta]:
    return [d async for d in stream]


@dataclass
class Calls:
    count: int = 0
    failed: asyncio.Event = field(default_factory=asyncio.Event)


def failing_first(engine: Any, monkeypatch: pytest.MonkeyPatch, errors: list[PhoneAgentError]) -> Calls:
    """The engine's own stream raises ``errors`` (before any delta) on its first calls."""
    real, calls = engine._stream, Calls()

    async def stream(request: LlmRequest) -> AsyncIterator[Delta]:
        calls.count += 1
        if errors:
            calls.failed.set()
            raise errors.pop(0)
        async for delta in real(request):
            yield delta

    monkeypatch.setattr(engine, "_stream", stream)
    return calls


async def test_a_retryable_failure_before_any_text_is_retried(
    subject: Subject, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = subject.engine
    monkeypatch.setattr(engine, "retry", RetryPolicy(retries=1, backoff_s=0.0))
    retries = metric("pa_engine_retries_total", stage="llm", engine=engine.name)
    calls = failing_first(engine, monkeypatch, [Unavailable("server restarting")])
    check_reply(await reply(engine, "c-4"))
    assert (
        calls.count == 2 and metric("pa_engine_retries_total", stage="llm", engine=engine.name) == retries + 1
    )

    calls = failing_first(engine, monkeypatch, [InvalidArgument("template cannot render")])
    with pytest.raises(InvalidArgument):
        await reply(engine, "c-5")
    assert calls.count == 1


async def test_an_abort_during_the_back_off_ends_the_stream(
    subject: Subject, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = subject.engine
    monkeypatch.setattr(engine, "retry", RetryPolicy(retries=1, backoff_s=30.0, max_backoff_s=30.0))
    calls = failing_first(engine, monkeypatch, [Unavailable("server restarting")])
    task = asyncio.create_task(reply(engine, "c-6"))
    await asyncio.wait_for(calls.failed.wait(), 5.0)  # the first try failed: the back-off begins
    await engine.abort("c-6")
    deltas = await asyncio.wait_for(task, 5.0)
    assert [d.finish_reason for d in deltas] == [FINISH_ABORT] and calls.count == 1


async def test_the_fallback_adapter_answers_with_the_next_engine(subject: Subject) -> None:
    engine, broken = subject.engine, subject.broken()
    chain = FallbackLlmEngine([broken, engine])
    labels = {"stage": "llm", "from_engine": broken.name, "to_engine": engine.name}
    before = metric("pa_engine_fallbacks_total", **labels)
    check_reply(await reply(chain, "c-7"))
    assert metric("pa_engine_fallbacks_total", **labels) == before + 1
    with pytest.raises(InvalidArgument):  # a bad request is not handed over
        await anext(chain.stream(ASK, request_id="c-8", max_tokens=0, temperature=0.0))
    assert metric("pa_engine_fallbacks_total", **labels) == before + 1
    await broken.close()


@needs("aiohttp", what="aiohttp")
async def test_openai_http_retries_a_busy_server_before_the_first_byte(
    openai: Any, openai_server: OpenAIStandIn
) -> None:
    """The HTTP engine's own errors go through the same policy: 503 twice, then the reply."""
    server = openai_server
    server.fail_next, sent = 2, len(server.requests)
    check_reply(await reply(openai, "c-9"))
    assert len(server.requests) - sent == 3
    server.fail_next = 3  # more than the two retries: the error reaches the caller, marked retryable
    with pytest.raises(PhoneAgentError) as err:
        await reply(openai, "c-10")
    assert err.value.kind is ErrorKind.OVERLOADED and err.value.retryable
    server.fail_next = 0

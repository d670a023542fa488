"""The OpenAI-protocol client against a real server: llama-cpp-python's own, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from phoneagent.llm.domain.schema_check import validate
from phoneagent.llm.domain.tool_schemas import TOOL_SCHEMAS, tool_definitions
from phoneagent.llm.engines.base import FINISH_ABORT, FINISH_LENGTH, FINISH_STOP, Delta, create_engine
from phoneagent.llm.tool_calls import read_constrained, tool_call_schema
from phoneagent.runtime.errors import ErrorKind, PhoneAgentError
from support.llm import needs

pytestmark = [
    pytest.mark.slow,
    needs("llama_cpp", "uvicorn", "sse_starlette", "aiohttp", what="llama-cpp-python[server] or aiohttp"),
]

SYSTEM = {"role": "system", "content": "You are a dental clinic receptionist on the phone. Be brief."}
LONG_ASK = [
    SYSTEM,
    {"role": "user", "content": "Count from one to one hundred in words, separated by commas."},
]
SERVER_START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(proc: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("llama_cpp.server exited during start-up")
        try:
            with urllib.request.urlopen(url + "/models", timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)  # poll interval while the model loads
    raise RuntimeError("llama_cpp.server did not become ready")


@pytest.fixture(scope="module")
def server_url():
    from phoneagent.llm.models import model_path

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model_path("qwen-0.5b")),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_threads",
            "1",
            "--n_ctx",
            "2048",
            "--model_alias",
            "qwen",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_ready(proc, url)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
async def client(server_url):
    eng = create_engine(
        "openai_http", base_url=server_url, model="qwen", schema_style="llama_cpp", read_timeout=30.0
    )
    eng.load()
    yield eng
    await eng.close()


async def collect(stream) -> list[Delta]:
    return [d async for d in stream]


async def test_streams_a_reply(client) -> None:
    messages = [SYSTEM, {"role": "user", "content": "Hello, are you open on Saturday?"}]
    deltas = await asyncio.wait_for(
        collect(client.stream(messages, request_id="greet", max_tokens=40, temperature=0.0)), 60
    )
    assert len([d for d in deltas if d.text]) >= 3
    assert deltas[-1].finish_reason in (FINISH_STOP, FINISH_LENGTH)


async def test_length_finish(client) -> None:
    deltas = await asyncio.wait_for(
        collect(client.stream(LONG_ASK, request_id="short", max_tokens=4, temperature=0.0)), 60
    )
    assert deltas[-1].finish_reason == FINISH_LENGTH


async def test_abort_closes_the_stream_at_once(client) -> None:
    stream = client.stream(LONG_ASK, request_id="long", max_tokens=300, temperature=0.0)
    received = 0
    async for delta in stream:
        assert delta.text
        received += 1
        if received == 3:
            aborted_at = time.perf_counter()
            await client.abort("long")
            break
    after = await asyncio.wait_for(collect(stream), 5)
    assert [d.finish_reason for d in after] == [FINISH_ABORT]
    assert time.perf_counter() - aborted_at < 0.5
    # The server stopped generating for the closed connection: the next reply is not stuck behind it.
    started = time.perf_counter()
    deltas = await asyncio.wait_for(
        collect(
            client.stream(
                [SYSTEM, {"role": "user", "content": "Say hi."}],
                request_id="next",
                max_tokens=4,
                temperature=0.0,
            )
        ),
        30,
    )
    assert deltas[-1].final
    assert time.perf_counter() - started < 8.0


async def test_json_schema_output(client) -> None:
    schema = {
        "type": "object",
        "properties": {"date": {"type": "string"}, "time": {"type": "string"}},
        "required": ["date", "time"],
    }
    messages = [
        {"role": "system", "content": "Extract the appointment as JSON."},
        {"role": "user", "content": "Book me on 2026-12-03 at 10:30."},
    ]
    deltas = await asyncio.wait_for(
        collect(
            client.stream(messages, request_id="json", max_tokens=60, temperature=0.0, json_schema=schema)
        ),
        60,
    )
    value = json.loads("".join(d.text for d in deltas))
    assert set(value) == {"date", "time"}


async def test_a_tool_call_under_the_tools_schema_with_tools_offered(client) -> None:
    """What the dialog sends once the model starts a tool call: the same tools, and their schema."""
    tools = tool_definitions(frozenset({"book_appointment", "transfer_to_human"}))
    messages = [
        {"role": "system", "content": "You book appointments for a dental clinic by calling tools."},
        {"role": "user", "content": "Book a cleaning next Tuesday at 10, my name is Ann Lee."},
    ]
    deltas = await asyncio.wait_for(
        collect(
            client.stream(
                messages,
                request_id="tool-call",
                max_tokens=120,
                temperature=0.0,
                tools=tools,
                json_schema=tool_call_schema(tools),
            )
        ),
        90,
    )
    call = read_constrained("".join(d.text for d in deltas))
    assert call is not None and call["name"] in ("book_appointment", "transfer_to_human")
    assert validate(call["arguments"], TOOL_SCHEMAS[call["name"]]["parameters"]) == []


async def test_unknown_path_maps_to_model_unavailable(server_url) -> None:
    eng = create_engine("openai_http", base_url=server_url.replace("/v1", "/nope"), model="qwen")
    try:
        with pytest.raises(PhoneAgentError) as info:
            await collect(eng.stream(LONG_ASK, request_id="x", max_tokens=4, temperature=0.0))
        assert info.value.kind is ErrorKind.MODEL_UNAVAILABLE
    finally:
        await eng.close()


async def test_refused_connection_is_retried_then_unavailable() -> None:
    eng = create_engine(
        "openai_http",
        base_url=f"http://127.0.0.1:{free_port()}/v1",
        model="qwen",
        retries=2,
        retry_backoff=0.01,
    )
    try:
        started = time.perf_counter()
        with pytest.raises(PhoneAgentError) as info:
            await collect(eng.stream(LONG_ASK, request_id="x", max_tokens=4, temperature=0.0))
        assert info.value.kind is ErrorKind.UNAVAILABLE and info.value.retryable
        assert time.perf_counter() - started < 5.0
    finally:
        await eng.close()

"""The llama.cpp engine with the real Qwen2.5-Coder-0.5B GGUF (CPU, one thread)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from phoneagent.llm.domain.tool_schemas import tool_definitions
from phoneagent.llm.engines.base import FINISH_ABORT, FINISH_LENGTH, FINISH_STOP, Delta, create_engine
from phoneagent.llm.tool_calls import read_constrained, tool_call_schema
from phoneagent.runtime.errors import InvalidArgument
from support.llm import needs

pytestmark = [
    pytest.mark.slow,
    needs("llama_cpp", what="llama-cpp-python"),  # fails instead in CI
]

SYSTEM = {"role": "system", "content": "You are a dental clinic receptionist on the phone. Be brief."}
LONG_ASK = [
    SYSTEM,
    {"role": "user", "content": "Count from one to one hundred in words, separated by commas."},
]
TOOL_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "enum": ["book_appointment", "cancel_appointment"]},
        "arguments": {
            "type": "object",
            "properties": {"date": {"type": "string"}, "time": {"type": "string"}},
            "required": ["date", "time"],
        },
    },
    "required": ["name", "arguments"],
}


@pytest.fixture(scope="module")
async def engine():
    eng = create_engine("llama_cpp", n_ctx=2048, n_threads=1)
    await asyncio.to_thread(eng.load)
    yield eng
    await eng.close()


async def collect(stream) -> list[Delta]:
    return [d async for d in stream]


async def continued_call(engine, messages: list[dict], request_id: str, tools: list[dict]) -> list[Delta]:
    """A tool call under the grammar of ``tools``, going on after Qwen's marker."""
    stream = engine.stream(
        messages,
        request_id=request_id,
        max_tokens=120,
        temperature=0.0,
        tools=tools,
        json_schema=tool_call_schema(tools),
        assistant_prefix="<tool_call>\n",
    )
    return await asyncio.wait_for(collect(stream), 120)


async def test_reply_streams_in_several_deltas(engine) -> None:
    messages = [SYSTEM, {"role": "user", "content": "Hello, are you open on Saturday?"}]
    deltas = await asyncio.wait_for(
        collect(engine.stream(messages, request_id="greet", max_tokens=40, temperature=0.0)), 60
    )
    texts = [d.text for d in deltas if d.text]
    assert len(texts) >= 3
    assert "".join(texts).strip()
    final = deltas[-1]
    assert final.final and final.finish_reason in (FINISH_STOP, FINISH_LENGTH)
    assert final.prompt_tokens and final.prompt_tokens > 10
    assert 3 <= (final.completion_tokens or 0) <= 40


async def test_a_prompt_the_context_already_holds_is_not_evaluated_again(engine) -> None:
    """The count of prompt tokens evaluated leaves out the prefix the context held: the same
    prompt again evaluates one token (to refresh the logits), and the count rides on the text
    pieces too, for a consumer that stops early."""
    messages = [SYSTEM, {"role": "user", "content": "Do you take Delta Dental insurance, please?"}]
    runs = [
        await asyncio.wait_for(
            collect(engine.stream(messages, request_id=f"again{i}", max_tokens=4, temperature=0.0)), 60
        )
        for i in range(2)
    ]
    first, second = runs[0][-1], runs[1][-1]
    assert first.prompt_tokens == second.prompt_tokens and first.prompt_tokens
    assert first.prompt_evaluated_tokens is not None
    assert 1 <= first.prompt_evaluated_tokens <= first.prompt_tokens
    assert second.prompt_evaluated_tokens == 1
    assert all(d.prompt_evaluated_tokens == 1 for d in runs[1] if d.text)


async def test_max_tokens_ends_with_length(engine) -> None:
    deltas = await asyncio.wait_for(
        collect(engine.stream(LONG_ASK, request_id="short", max_tokens=5, temperature=0.0)), 60
    )
    assert deltas[-1].finish_reason == FINISH_LENGTH
    assert deltas[-1].completion_tokens == 5


async def test_abort_stops_at_once_and_frees_the_engine(engine) -> None:
    stream = engine.stream(LONG_ASK, request_id="long", max_tokens=300, temperature=0.0)
    received = 0
    async for delta in stream:
        assert delta.text
        received += 1
        if received == 3:
            break_at = time.perf_counter()
            await engine.abort("long")
            returned = time.perf_counter()
            break
    after = [d async for d in stream]
    ended = time.perf_counter()
    assert [d.finish_reason for d in after] == [FINISH_ABORT]  # no text after abort returned
    assert ended - break_at < 0.5, f"stream took {ended - break_at:.3f} s to end after abort"
    assert returned - break_at < 0.05
    # The worker stopped too: a new request starts promptly instead of queuing behind 300 tokens.
    started = time.perf_counter()
    first = await asyncio.wait_for(
        anext(
            aiter(
                engine.stream(
                    [SYSTEM, {"role": "user", "content": "Say hi."}],
                    request_id="next",
                    max_tokens=8,
                    temperature=0.0,
                )
            )
        ),
        30,
    )
    assert first.text
    assert time.perf_counter() - started < 5.0


async def test_consumer_that_stops_early_releases_the_worker(engine) -> None:
    stream = engine.stream(LONG_ASK, request_id="dropped", max_tokens=300, temperature=0.0)
    await anext(aiter(stream))
    await stream.aclose()
    deltas = await asyncio.wait_for(
        collect(
            engine.stream(
                [SYSTEM, {"role": "user", "content": "Say hi."}],
                request_id="after-drop",
                max_tokens=4,
                temperature=0.0,
            )
        ),
        10,
    )
    assert deltas[-1].final


async def test_json_schema_constrains_a_tool_call(engine) -> None:
    messages = [
        {"role": "system", "content": "You turn booking requests into a JSON tool call."},
        {"role": "user", "content": "Please book me on 2026-12-03 at 10:30."},
    ]
    deltas = await asyncio.wait_for(
        collect(
            engine.stream(
                messages, request_id="tool", max_tokens=80, temperature=0.0, json_schema=TOOL_SCHEMA
            )
        ),
        60,
    )
    call = json.loads("".join(d.text for d in deltas))
    assert call["name"] in ("book_appointment", "cancel_appointment")
    assert set(call["arguments"]) >= {"date", "time"}
    assert all(isinstance(v, str) for v in call["arguments"].values())
    assert deltas[-1].finish_reason == FINISH_STOP


async def test_a_tool_call_continues_the_reply_that_opened_it(engine) -> None:
    """A free reply (the agent's nine tools in the prompt) stops after its first token, as the
    dialog stops one that opens a tool call; the call then continues that reply, its opener
    given as ``assistant_prefix``, under the grammar of the tools' schema. The JSON after the
    opener is a call to an offered tool, and the continuation evaluates only the tokens the
    prefix adds (the context still holds the free reply's prompt). The grammar is built once for
    the schema: a second continuation reuses it."""
    tools = tool_definitions()
    messages = [SYSTEM, {"role": "user", "content": "Can I book a cleaning on Monday at ten? I'm Ana Diaz."}]
    free = await asyncio.wait_for(
        collect(engine.stream(messages, request_id="free", max_tokens=1, temperature=0.0, tools=tools)), 120
    )
    assert free[-1].prompt_tokens and free[-1].prompt_tokens > 500  # the nine schemas are in the prompt
    built = engine.grammars_built
    for i in range(2):
        deltas = await continued_call(engine, messages, f"call{i}", tools)
        text = "".join(d.text for d in deltas)
        call = read_constrained(text)
        assert call is not None, text
        assert call["name"] in {t["function"]["name"] for t in tools}
        assert not text.lstrip().startswith("<tool_call>")  # only what follows the prefix comes back
        final = deltas[-1]
        assert final.finish_reason == FINISH_STOP
        assert final.prompt_tokens == free[-1].prompt_tokens + 2  # the marker and the line break
        assert final.prompt_evaluated_tokens is not None and final.prompt_evaluated_tokens <= 3, final
    assert engine.grammars_built <= built + 1


async def test_the_next_turn_reads_a_tool_call_from_the_context_not_again(engine) -> None:
    """The dialog keeps a call's arguments as a JSON string (the OpenAI form). Rendered as they
    are, Qwen's template escapes them into a string and the next turn reads the whole call
    again; rendered as the object they hold, the prompt continues the tokens the call left in
    the context, and the next turn evaluates little more than the tool's answer."""
    tools = tool_definitions()
    messages = [SYSTEM, {"role": "user", "content": "Do you take Delta Dental insurance?"}]
    deltas = await continued_call(engine, messages, "lookup", tools)
    call = read_constrained("".join(d.text for d in deltas))
    assert call is not None
    answer = "From the practice's documents: we accept Delta Dental."
    follow = [
        *messages,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "type": "function",
                    "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])},
                }
            ],
        },
        {"role": "tool", "content": answer},
    ]
    final = (
        await asyncio.wait_for(
            collect(engine.stream(follow, request_id="after", max_tokens=1, temperature=0.0, tools=tools)),
            120,
        )
    )[-1]
    assert final.prompt_evaluated_tokens is not None
    # The closer, the tool turn's frame, the answer (~12 tokens) and the generation prompt.
    assert final.prompt_evaluated_tokens <= 35, final


async def test_queued_request_aborted_before_it_runs(engine) -> None:
    first = engine.stream(LONG_ASK, request_id="busy", max_tokens=40, temperature=0.0)
    await anext(aiter(first))
    waiting = asyncio.create_task(
        collect(engine.stream(LONG_ASK, request_id="queued", max_tokens=40, temperature=0.0))
    )
    await asyncio.sleep(0)  # let the queued request register
    await engine.abort("queued")
    queued = await asyncio.wait_for(waiting, 1.0)
    assert [d.finish_reason for d in queued] == [FINISH_ABORT]
    await engine.abort("busy")
    assert [d.finish_reason for d in await collect(first)] == [FINISH_ABORT]


async def test_bad_input_is_rejected_and_engine_keeps_working(engine) -> None:
    with pytest.raises(InvalidArgument):
        await anext(aiter(engine.stream([], request_id="bad", max_tokens=5, temperature=0.0)))
    with pytest.raises(InvalidArgument):
        await anext(
            aiter(
                engine.stream(
                    LONG_ASK,
                    request_id="bad-schema",
                    max_tokens=5,
                    temperature=0.0,
                    json_schema={"type": "object", "properties": 7},
                )
            )
        )
    too_long = [SYSTEM, {"role": "user", "content": "hello " * 3000}]
    with pytest.raises(InvalidArgument, match="context window"):
        await collect(engine.stream(too_long, request_id="too-long", max_tokens=5, temperature=0.0))
    deltas = await asyncio.wait_for(
        collect(
            engine.stream(
                [SYSTEM, {"role": "user", "content": "Say hi."}],
                request_id="ok",
                max_tokens=4,
                temperature=0.0,
            )
        ),
        30,
    )
    assert deltas[-1].final


async def test_warm_up_pins_the_shared_prefix_across_other_prompts() -> None:
    """After an unrelated prompt (a post-call summary) replaced the context, a conversation that
    starts with the warmed-up prefix gets it back from the pinned state instead of reading it
    again, and the reply is the same as without the pin."""
    eng = create_engine("llama_cpp", n_ctx=2048, n_threads=1, n_threads_batch=2, seed=3, state_cache_mb=0)
    await asyncio.to_thread(eng.load)
    try:
        persona = {"role": "system", "content": "You are a dental clinic receptionist. " + "Be kind. " * 120}
        tools = [{"type": "function", "function": {"name": "end_call", "parameters": {"type": "object"}}}]
        ask = [persona, {"role": "user", "content": "Are you open on Saturday?"}]
        other = [
            {"role": "system", "content": "Summarise the call as JSON. " * 30},
            {"role": "user", "content": "x"},
        ]

        async def reply(messages: list[dict[str, str]], rid: str) -> str:
            deltas = await collect(
                eng.stream(messages, request_id=rid, max_tokens=12, temperature=0.0, tools=tools)
            )
            return "".join(d.text for d in deltas if d.text)

        await collect(eng.stream(other, request_id="o0", max_tokens=2, temperature=0.0))
        cold = await reply(ask, "cold")  # reads the whole prompt
        await eng.warm_up([persona, {"role": "user", "content": "Hello"}], tools)
        await collect(eng.stream(other, request_id="o1", max_tokens=2, temperature=0.0))
        assert eng.prefix_restores == 0
        warm = await reply(ask, "warm")
        assert eng.prefix_restores == 1
        assert warm == cold
    finally:
        await eng.close()


async def test_each_conversation_keeps_its_evaluated_tokens_across_other_conversations() -> None:
    """Two calls take turns on one context: each call's next turn loads the state its last turn
    left, evaluates only the new message, and says what it would have said with the context to
    itself. Without kept states (state_cache_mb=0) it reads the whole conversation again."""
    persona = {"role": "system", "content": "You are a dental clinic receptionist. " + "Be kind. " * 20}

    def call(who: str) -> list[dict[str, str]]:
        return [
            persona,
            {"role": "user", "content": f"Hello, this is {who}. " + "I have a long story to tell you. " * 12},
            {"role": "assistant", "content": "I see. How can I help?"},
            {"role": "user", "content": "Are you open on Saturday?"},
        ]

    async def turn(eng, messages: list[dict[str, str]], rid: str) -> tuple[str, int]:
        deltas = await collect(eng.stream(messages, request_id=rid, max_tokens=10, temperature=0.0))
        evaluated = deltas[-1].prompt_evaluated_tokens
        assert evaluated is not None
        return "".join(d.text for d in deltas if d.text), evaluated

    results = {}
    for budget in (64, 0):
        eng = create_engine(
            "llama_cpp", n_ctx=2048, n_threads=1, n_threads_batch=2, seed=3, state_cache_mb=budget
        )
        await asyncio.to_thread(eng.load)
        try:
            a, b = call("Ann"), call("Bob")
            await turn(eng, a[:2], f"a1-{budget}")
            await turn(eng, b[:2], f"b1-{budget}")  # replaces Ann's tokens in the context
            results[budget] = await turn(eng, a, f"a2-{budget}")
            restores = eng.state_restores
        finally:
            await eng.close()
        if budget:
            assert restores == 1
    (kept_text, kept_evaluated), (cold_text, cold_evaluated) = results[64], results[0]
    assert kept_evaluated < 40 < 100 < cold_evaluated
    assert kept_text == cold_text


async def test_a_long_prompt_is_aborted_between_chunks() -> None:
    """An abort while a long prompt is being evaluated ends the request within one chunk, not
    after the whole prompt, and the engine answers the next request."""
    eng = create_engine("llama_cpp", n_ctx=4096, n_threads=1, n_threads_batch=1, state_cache_mb=0)
    await asyncio.to_thread(eng.load)
    try:
        long = [SYSTEM, {"role": "user", "content": "Tell me about teeth. " * 150}]
        whole_started = time.monotonic()
        await collect(eng.stream(long, request_id="whole", max_tokens=1, temperature=0.0))
        whole = time.monotonic() - whole_started
        other = [SYSTEM, {"role": "user", "content": "Tell me about gums. " * 150}]
        started = time.monotonic()
        stream = eng.stream(other, request_id="cut", max_tokens=5, temperature=0.0)
        task = asyncio.ensure_future(collect(stream))
        await asyncio.sleep(whole / 4)  # well inside the prompt's evaluation
        await eng.abort("cut")
        deltas = await asyncio.wait_for(task, 30)
        assert deltas[-1].finish_reason == FINISH_ABORT
        after = await asyncio.wait_for(
            collect(
                eng.stream(
                    [SYSTEM, {"role": "user", "content": "Hi"}],
                    request_id="next",
                    max_tokens=2,
                    temperature=0.0,
                )
            ),
            30,
        )
        # The worker was free again well before the whole prompt would have been evaluated.
        assert time.monotonic() - started < whole * 0.75
        assert after[-1].final
    finally:
        await eng.close()

"""Constrained sampling that checks the likely tokens first, with the real Qwen2.5-Coder-0.5B GGUF."""

from __future__ import annotations

import json

import pytest
from phoneagent.llm.domain.tool_schemas import tool_definitions
from phoneagent.llm.engines.llama_grammar import TopFirstGrammar, install
from phoneagent.llm.models import model_path
from phoneagent.llm.tool_calls import read_constrained, tool_call_schema
from support.llm import needs

pytestmark = [
    pytest.mark.slow,
    needs("llama_cpp", what="llama-cpp-python"),  # fails instead in CI
]

BOOKING = (
    "<|im_start|>system\nYou turn booking requests into a JSON tool call.<|im_end|>\n"
    "<|im_start|>user\nCan I book a cleaning on Monday at ten? My name is Ana Diaz.<|im_end|>\n"
    "<|im_start|>assistant\n<tool_call>\n"
)
# Nothing here asks for JSON: the model's likely first tokens are words, which the grammar forbids.
CHAT = (
    "<|im_start|>system\nYou are a friendly assistant.<|im_end|>\n"
    "<|im_start|>user\nTell me a joke about dentists.<|im_end|>\n<|im_start|>assistant\n"
)


@pytest.fixture(scope="module")
def llm():
    import llama_cpp

    model = llama_cpp.Llama(model_path=str(model_path("qwen-0.5b")), n_ctx=2048, n_threads=1, verbose=False)
    yield model
    model.close()


def complete(llm, prompt: str, grammar, temperature: float = 0.0, seed: int | None = None) -> str:
    out = llm.create_completion(
        prompt, max_tokens=160, temperature=temperature, grammar=grammar, seed=seed, stream=False
    )
    return out["choices"][0]["text"]


def test_greedy_writes_what_the_whole_vocabulary_check_writes(llm) -> None:
    """Llama.cpp's own grammar sampler (every token of the vocabulary checked) and the top-first
    one choose the same tokens when decoding is greedy: the tools' real schema, a booking and
    a prompt that wants no JSON at all. Most tokens are found among the likely ones."""
    import llama_cpp

    grammar = llama_cpp.LlamaGrammar.from_json_schema(json.dumps(tool_call_schema(tool_definitions())))
    own = [complete(llm, p, grammar) for p in (BOOKING, CHAT)]
    made: list[TopFirstGrammar] = []
    install(llama_cpp, llm, on_sampler=made.append)
    try:
        top_first = [complete(llm, p, grammar) for p in (BOOKING, CHAT)]
    finally:
        del llm._init_sampler  # the class's own sampler again, for the other tests
    assert top_first == own
    booking, chat = made
    names = {t["function"]["name"] for t in tool_definitions()}
    assert all((read_constrained(t) or {}).get("name") in names for t in top_first), top_first
    assert booking.top_steps > 3 * booking.full_steps, (booking.top_steps, booking.full_steps)
    # The chat prompt's first token is a word: the whole vocabulary was checked for it.
    assert chat.full_steps >= 1


def test_sampled_tokens_always_satisfy_the_grammar(llm) -> None:
    """Sampled at a high temperature, with two seeds, every call the
    top-first sampler writes is valid JSON for the schema (llama.cpp aborts the process when a
    token the grammar forbids is accepted, so a wrong mask would not even return)."""
    import llama_cpp

    schema = tool_call_schema(tool_definitions())
    grammar = llama_cpp.LlamaGrammar.from_json_schema(json.dumps(schema))
    install(llama_cpp, llm)
    try:
        runs = ((BOOKING, 1), (BOOKING, 2), (CHAT, 1))
        texts = [complete(llm, p, grammar, temperature=0.7, seed=s) for p, s in runs]
    finally:
        del llm._init_sampler
    names = {t["function"]["name"] for t in tool_definitions()}
    for text in texts:
        call = read_constrained(text)
        assert call is not None and call["name"] in names, text


def test_a_request_without_grammar_keeps_the_library_sampler(llm) -> None:
    import llama_cpp

    plain = complete(llm, CHAT, None)
    made: list[TopFirstGrammar] = []
    install(llama_cpp, llm, on_sampler=made.append)
    try:
        again = complete(llm, CHAT, None)
    finally:
        del llm._init_sampler
    assert again == plain and made == []

